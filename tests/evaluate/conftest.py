"""Fixtures for the evaluation suite: a small planted-signal interaction file and run folders trained on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


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
