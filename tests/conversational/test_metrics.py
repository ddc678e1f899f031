"""CRS metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recforge.conversational.metrics import (
    average_turns,
    hdcg,
    hdcg_per_episode,
    plot_success_curves,
    success_curve,
    success_rate,
)

TURNS = np.array([1, 3, 0, 15, 0])  # 0 = failure
RANKS = np.array([1, 4, 0, 10, 0])


@pytest.mark.parametrize(("t", "expected"), [(1, 0.2), (2, 0.2), (3, 0.4), (14, 0.4), (15, 0.6)])
def test_success_rate_table(t, expected):
    assert success_rate(TURNS, t) == pytest.approx(expected)


def test_average_turns_counts_failures_as_max():
    assert average_turns(TURNS, 15) == pytest.approx((1 + 3 + 15 + 15 + 15) / 5)


def test_hdcg_hand_computed():
    def gain(t, k):
        return 1 / math.log2(t + 2) + (1 / math.log2(t + 1) - 1 / math.log2(t + 2)) / math.log2(k + 1)

    expected = [gain(1, 1), gain(3, 4), 0.0, gain(15, 10), 0.0]
    assert hdcg_per_episode(TURNS, RANKS) == pytest.approx(expected)
    assert hdcg(TURNS, RANKS) == pytest.approx(np.mean(expected))
    assert gain(1, 1) == pytest.approx(1.0)  # first turn, first rank = a perfect dialogue


def test_hdcg_prefers_earlier_turns_and_better_ranks():
    g = hdcg_per_episode(np.array([2, 2, 3]), np.array([1, 5, 1]))
    assert g[0] > g[1] > g[2]


def test_success_curve_is_monotone_and_ends_at_sr():
    curve = success_curve(TURNS, 15)
    assert curve.shape == (15,)
    assert np.all(np.diff(curve) >= 0)
    assert curve[-1] == pytest.approx(success_rate(TURNS, 15))


def test_empty_inputs_are_nan():
    assert math.isnan(success_rate(np.array([]), 5)) and math.isnan(average_turns(np.array([]), 5))


def test_plot_writes_png(tmp_path):
    out = plot_success_curves({"a": success_curve(TURNS, 15)}, tmp_path / "c.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
