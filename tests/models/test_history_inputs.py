"""Scoring histories never writes to (or fails on) the caller's arrays: read-only inputs (memory-mapped, frozen)
score like writable ones, and unsorted, repeated items are left as given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.data.synthetic import planted_clusters
from recforge.models.ease import EASE
from recforge.models.itemknn import ItemKNN


@pytest.mark.parametrize("make", [ItemKNN, EASE])
def test_read_only_histories_score_like_writable_ones_and_stay_unchanged(make):
    model = make().fit(planted_clusters(n_users=30, n_items=20, events_per_user=6, seed=0))
    items, offsets = np.array([3, 1, 2, 3, 5, 4], np.int64), np.array([0, 4, 6], np.int64)
    expected = model._score_histories(items.copy(), offsets.copy())
    frozen_items, frozen_offsets = items.copy(), offsets.copy()
    frozen_items.flags.writeable = frozen_offsets.flags.writeable = False
    assert torch.equal(model._score_histories(frozen_items, frozen_offsets), expected)
    writable = items.copy()
    model._score_histories(writable, offsets.copy())
    assert writable.tolist() == [3, 1, 2, 3, 5, 4]
