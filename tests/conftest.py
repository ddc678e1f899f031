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
