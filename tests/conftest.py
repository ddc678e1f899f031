"""Shared fixtures: the real-data folder (RECFORGE_DATA_DIR) and small synthetic logs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RECFORGE_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """RECFORGE_DATA_DIR (layout of shared/data); tests using it are skipped with a reason when it is absent."""
    value = os.environ.get("RECFORGE_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("RECFORGE_DATA_DIR is not set to a data folder (CI sets it to ../shared/data)")
    return Path(value)


@pytest.fixture()
def tiny_log():
    """A seeded random log: 40 users, 60 items, 800 events with timestamps."""
    from recforge.data.interactions import Interactions

    rng = np.random.default_rng(0)
    n = 800
    users = rng.integers(0, 40, n)
    items = rng.zipf(1.3, n) % 60
    times = rng.integers(1_000, 100_000, n)
    return Interactions.from_arrays([f"u{u}" for u in users], items, times)


def write_cluster_log(path: Path, n_users: int = 80, seed: int = 0) -> Path:
    """CSV user_id,item_id,timestamp: 4 user clusters, each mostly consuming its own 10 of 40 items (planted signal)."""
    rng = np.random.default_rng(seed)
    rows = ["user_id,item_id,timestamp"]
    for u in range(n_users):
        c = u % 4
        items = np.r_[rng.choice(np.arange(c * 10, (c + 1) * 10), 9, replace=False), rng.choice(40, 3, replace=False)]
        items = rng.permutation(items).tolist()  # noise anywhere in the sequence, the held-out last item included
        rows += [f"u{u},i{i},{1000 + t * 10 + u}" for t, i in enumerate(items)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def cluster_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cluster_log(tmp_path_factory.mktemp("data") / "log.csv")


@pytest.fixture(scope="session")
def eval_runs(cluster_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run folders of popular, random and itemknn on the same split (trained through the CLI)."""
    from recforge.cli import main

    root = tmp_path_factory.mktemp("runs")
    out = {}
    for model in ("popular", "random", "itemknn"):
        code = main(["train", model, "--data", str(cluster_csv), "--out", str(root / model), "--set", "eval.n_boot=100"])
        assert code == 0
        out[model] = root / model
    return out
