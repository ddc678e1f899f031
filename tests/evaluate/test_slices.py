"""Slices: segment masks and segment metrics on hand-computed tables, and the full path on an evaluated model."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.data.split import leave_last_out
from recforge.errors import ConfigError
from recforge.evaluate.evaluator import evaluate
from recforge.evaluate.slices import item_segment_values, slice_metrics, user_segments
from recforge.models.popular import MostPopular


def test_user_segments_buckets_and_cold():
    segs = user_segments(np.array([2, 7, 60, 0]), train_len=np.array([2, 7, 60, 0]), cold_max=5)
    assert {k: v.tolist() for k, v in segs.items()} == {
        "hist 0": [False, False, False, True],
        "hist 1-4": [True, False, False, False],
        "hist 5-9": [False, True, False, False],
        "hist 50+": [False, False, True, False],
        "cold (<=5 train)": [True, False, False, True],
    }


@pytest.mark.parametrize("edges", [(), (5, 5), (10, 5), (-1, 3)])
def test_user_segments_bad_edges(edges):
    with pytest.raises(ConfigError, match="edges"):
        user_segments(np.array([1]), edges=edges)


def test_item_segment_values_hand_table():
    top = np.array([[1, 2], [3, 1]])
    hits = np.array([[True, False], [False, False]])
    targets = sp.csr_array(np.array([[0, 1, 0, 1], [0, 0, 1, 0]], dtype=np.float32))  # u0 {1, 3}, u1 {2}
    head = np.array([False, True, False, False])
    keep, vals = item_segment_values(["recall@2", "hit@1"], hits, top, targets, head)
    assert keep.tolist() == [True, False]  # u1 has no head target
    assert vals["recall@2"].tolist() == [1.0] and vals["hit@1"].tolist() == [1.0]
    tail = np.array([False, False, True, True])
    keep, vals = item_segment_values(["recall@2"], hits, top, targets, tail)
    assert keep.tolist() == [True, True]
    assert vals["recall@2"].tolist() == [0.0, 0.0]  # u0's only hit is a head item


def test_slice_metrics_on_an_evaluated_model(tiny_log):
    split = leave_last_out(tiny_log, n=1, valid=False)
    model = MostPopular().fit(split.train)
    rep = evaluate(model, split, metrics=("ndcg@10", "recall@10"), n_boot=50)
    rows = slice_metrics(rep.users, rep.top_items, rep.per_user, split.train, split.test, n_boot=50)
    user_rows = [r for r in rows if r["kind"] == "user" and r["metric"] == "ndcg@10" and r["segment"].startswith("hist")]
    assert sum(r["n_users"] for r in user_rows) == len(rep.users)  # buckets partition the users
    # the user-weighted mean of bucket means is the overall mean
    overall = sum(r["mean"] * r["n_users"] for r in user_rows) / len(rep.users)
    assert overall == pytest.approx(rep.mean("ndcg@10"))
    item_rows = {r["segment"] for r in rows if r["kind"] == "item"}
    assert item_rows <= {"head items", "long-tail items"} and item_rows
    for r in rows:
        assert r["ci_low"] <= r["mean"] + 1e-12 and r["mean"] <= r["ci_high"] + 1e-12
