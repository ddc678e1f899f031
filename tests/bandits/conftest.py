"""Shared helpers for the bandit tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture()
def obd_root(data_dir: Path) -> Path:
    """The Open Bandit Dataset sample folder, or skip the test with the reason."""
    path = data_dir / "open-bandit-dataset-small"
    if not path.exists():
        pytest.skip(f"{path} does not exist")
    return path


@pytest.fixture()
def obd_csv():
    """The writer of small Open-Bandit-style CSV logs."""
    return write_obd_csv


def write_obd_csv(path: Path, n: int = 300, n_items: int = 6, seed: int = 0, **overrides) -> Path:
    """A small log in the Open Bandit Dataset CSV layout (uniform random logging, 3 slots)."""
    rng = np.random.default_rng(seed)
    cols = {
        "": np.arange(n),
        "timestamp": ["2019-11-24 00:00:00+00:00"] * n,
        "item_id": rng.integers(0, n_items, n),
        "position": rng.integers(1, 4, n),
        "click": (rng.random(n) < 0.2).astype(int),
        "propensity_score": np.full(n, 1.0 / n_items),
        "user_feature_0": rng.choice(["a", "b"], n),
    }
    for k in range(n_items):
        cols[f"user-item_affinity_{k}"] = rng.random(n)
    cols.update(overrides)
    header = ",".join(cols)
    lines = [header] + [",".join(str(cols[c][i]) for c in cols) for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
