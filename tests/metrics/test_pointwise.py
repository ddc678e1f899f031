"""Pointwise metrics against hand tables and brute-force references (no sklearn), plus bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.errors import ConfigError, DataError
from recforge.metrics.pointwise import (
    LOG_LOSS_EPS,
    auc,
    brier_score,
    expected_calibration_error,
    log_loss,
    pairwise_accuracy,
    reliability_table,
)


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Every (positive, negative) pair: 1 if the positive scores higher, 1/2 on a tie."""
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


# ------------------------------------------------------------------------------------------------------ AUC
def test_auc_hand_values():
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75  # classic example: 3 of 4 pairs ordered
    assert auc([1, 0], [2.0, 1.0]) == 1.0 and auc([1, 0], [1.0, 2.0]) == 0.0
    assert auc([1, 0, 1, 0], [3.0, 3.0, 3.0, 3.0]) == 0.5  # all tied
    # one positive tied with one of two negatives: (1 + 0.5) / 2
    assert auc([1, 0, 0], [2.0, 2.0, 1.0]) == 0.75


def test_auc_is_invariant_to_monotone_transforms_and_accepts_bools():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    s = rng.normal(size=200)
    assert auc(y, s) == pytest.approx(auc(y.astype(int), np.exp(3 * s)), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-3, 3)), min_size=2, max_size=60))
def test_auc_equals_brute_force_pair_count(rows):
    """Small integer scores force many ties: the rank-average AUC must still equal the pair count."""
    y = np.array([r[0] for r in rows], dtype=int)
    s = np.array([r[1] for r in rows], dtype=float)
    if y.min() == y.max():
        with pytest.raises(DataError, match="both classes"):
            auc(y, s)
        return
    assert auc(y, s) == pytest.approx(brute_auc(y, s), abs=1e-12)


def test_pairwise_accuracy_counts_ties_half():
    assert pairwise_accuracy([1.0, -2.0, 0.0, 3.0]) == pytest.approx(2.5 / 4)


# ------------------------------------------------------------------------------------------- log loss, Brier
def test_log_loss_hand_value_and_clipping():
    y, p = [1, 0, 1], [0.9, 0.2, 0.6]
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3
    assert log_loss(y, p) == pytest.approx(expected, rel=1e-12)
    # a certain wrong prediction is clipped at eps, not infinite
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(LOG_LOSS_EPS), rel=1e-9)
    assert log_loss([1], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3), rel=1e-9)
    assert log_loss([0.5, 0.5], [0.5, 0.5]) == pytest.approx(math.log(2))  # soft labels


def test_brier_hand_value():
    assert brier_score([1, 0, 1, 0], [1.0, 0.0, 0.5, 0.25]) == pytest.approx((0 + 0 + 0.25 + 0.0625) / 4)


# ------------------------------------------------------------------------------------------- calibration
def test_reliability_table_by_hand():
    y = np.array([0, 1, 0, 1, 1, 1])
    p = np.array([0.05, 0.15, 0.45, 0.55, 0.95, 0.85])
    t = reliability_table(y, p, n_bins=2)  # bins [0, .5) and [.5, 1]
    assert t.edges.tolist() == [0.0, 0.5, 1.0]
    assert t.count.tolist() == [3, 3]
    assert t.confidence == pytest.approx([(0.05 + 0.15 + 0.45) / 3, (0.55 + 0.95 + 0.85) / 3])
    assert t.accuracy == pytest.approx([1 / 3, 1.0])
    gap0, gap1 = abs(1 / 3 - 0.65 / 3), abs(1.0 - 2.35 / 3)
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * gap0 + 0.5 * gap1)


def test_reliability_empty_bins_and_probability_one():
    t = reliability_table([1, 0, 1], [1.0, 0.0, 0.97], n_bins=10)
    assert t.count.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]  # 1.0 sits in the last bin
    assert np.isnan(t.confidence[1]) and np.isnan(t.accuracy[1])
    assert t.ece() == pytest.approx((1 / 3) * 0.0 + (2 / 3) * abs(1.0 - 0.985))


def test_ece_is_count_weighted_not_bin_averaged():
    # 9 perfectly calibrated predictions in the top bin, 1 off by 0.05 in the bottom bin
    y = np.array([1] * 9 + [0])
    p = np.array([1.0] * 9 + [0.05])
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.1 * 0.05)  # not (0 + 0.05) / 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=1, max_size=80), st.integers(1, 20))
def test_ece_matches_a_loop_over_bins(rows, n_bins):
    y = np.array([r[0] for r in rows], dtype=float)
    p = np.array([r[1] for r in rows])
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        hi_ok = p <= edges[b + 1] if b == n_bins - 1 else p < edges[b + 1]
        m = (p >= edges[b]) & hi_ok
        if m.any():
            total += m.sum() / len(p) * abs(y[m].mean() - p[m].mean())
    t = reliability_table(y, p, n_bins)
    assert int(t.count.sum()) == len(p)
    assert t.ece() == pytest.approx(total, abs=1e-12)


# ------------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: auc([1, 1], [0.1, 0.2]), "both classes"),
        (lambda: auc([1, 0, 2], [0.1, 0.2, 0.3]), "position 2 has 2.0"),
        (lambda: auc([1, 0], [0.1, np.nan]), "scores must be finite; position 1"),
        (lambda: auc([1, 0], [0.1, 0.2, 0.3]), r"shape \(2,\)"),
        (lambda: auc([], []), "non-empty"),
        (lambda: log_loss([1, 0], [0.5, 1.5]), "probs must be in \\[0, 1\\]; position 1"),
        (lambda: log_loss([1, 0], [0.5, 0.5], eps=0.0), "eps"),
        (lambda: log_loss([1.5], [0.5]), "labels must be in \\[0, 1\\]"),
        (lambda: brier_score([1, 0], [np.inf, 0.1]), "position 0"),
        (lambda: reliability_table([1, 0], [0.2, 0.3], n_bins=0), "n_bins"),
        (lambda: reliability_table([1, 0.5], [0.2, 0.3]), "0 or 1"),
        (lambda: pairwise_accuracy([np.nan]), "margins must be finite"),
    ],
)
def test_bad_inputs_raise_one_clear_error(call, match):
    with pytest.raises((DataError, ConfigError), match=match):
        call()
