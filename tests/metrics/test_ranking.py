"""Ranking metrics against hand-computed tables, plus hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.errors import ConfigError
from recforge.metrics.ranking import METRICS, compute, parse_metric

# One user, 2 relevant items, ranked list hits at positions 1 and 3 (0-based), k = 4.
HITS = np.array([[False, True, False, True]])
NREL = np.array([2])
L2 = math.log2
TABLE = {
    "hit@4": 1.0,
    "recall@4": 1.0,
    "recall@2": 0.5,
    "precision@4": 0.5,
    "precision@2": 0.5,
    "ndcg@4": (1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3)),
    "ndcg@1": 0.0,
    "mrr@4": 0.5,
    "mrr@1": 0.0,
    "map@4": (1 / 2 + 2 / 4) / 2,
    "f1@4": 2 * 0.5 * 1.0 / 1.5,
    "rprec@4": 0.5,  # R = 2: one hit in the top 2
    "rprec@1": 0.0,
}


@pytest.mark.parametrize(("name", "expected"), sorted(TABLE.items()))
def test_hand_computed(name, expected):
    assert compute([name], HITS, NREL)[name][0] == pytest.approx(expected)


def test_more_relevant_than_k_uses_min_in_idcg_and_map():
    hits = np.array([[True, True]])
    n_rel = np.array([5])
    out = compute(["ndcg@2", "map@2", "recall@2", "rprec@2"], hits, n_rel)
    assert out["ndcg@2"][0] == pytest.approx(1.0)
    assert out["map@2"][0] == pytest.approx(1.0)
    assert out["recall@2"][0] == pytest.approx(0.4)
    assert out["rprec@2"][0] == pytest.approx(1.0)


@pytest.mark.parametrize(("name", "message"), [("foo@10", "unknown metric"), ("ndcg", "positive cut-off"),
                                               ("ndcg@0", "positive cut-off"), ("ndcg@x", "positive cut-off")])
def test_bad_metric_names(name, message):
    with pytest.raises(ConfigError, match=message):
        parse_metric(name)


def test_k_larger_than_list_is_an_error():
    with pytest.raises(ConfigError, match="k must be in"):
        compute(["ndcg@5"], HITS, NREL)


@st.composite
def rankings(draw):
    k = draw(st.integers(1, 12))
    rows = draw(st.integers(1, 6))
    hits = np.array(draw(st.lists(st.lists(st.booleans(), min_size=k, max_size=k), min_size=rows, max_size=rows)))
    extra = np.array(draw(st.lists(st.integers(0, 5), min_size=rows, max_size=rows)))
    n_rel = np.maximum(hits.sum(1) + extra, 1)
    return hits, n_rel, k


@settings(max_examples=150, deadline=None)
@given(rankings())
def test_bounds(data):
    hits, n_rel, k = data
    for base in METRICS:
        vals = METRICS[base](hits, n_rel, k)
        assert np.all(vals >= -1e-12) and np.all(vals <= 1 + 1e-12), base


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10), st.integers(1, 10))
def test_perfect_ranking_scores_one(n_rel, k):
    hits = (np.arange(k) < n_rel)[None, :]
    out = compute([f"{m}@{k}" for m in ("ndcg", "map", "hit", "mrr", "rprec")], hits, np.array([n_rel]))
    assert all(v[0] == pytest.approx(1.0) for v in out.values())
    if n_rel <= k:
        assert compute([f"recall@{k}"], hits, np.array([n_rel]))[f"recall@{k}"][0] == pytest.approx(1.0)
