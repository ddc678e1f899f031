"""dataset_info on a hand-made log: every number checked by hand."""

from __future__ import annotations

import pytest

from recforge.data.info import dataset_info, gini
from recforge.data.interactions import Interactions


def test_info_numbers_by_hand():
    # users: a has 3 rows (x, y, x again), b has 1 (x); items x: 3 rows, y: 1 row
    day = 86_400
    t0 = 1_500_000_000  # 2017-07-14
    data = Interactions.from_arrays(["a", "a", "a", "b"], ["x", "y", "x", "x"],
                                    time=[t0, t0 + day, t0 + 2 * day, t0 + 10 * day], value=[1, 2, 3, 4])
    info = dataset_info(data, name="hand", partial=True, notes=["made by hand"])
    assert (info["users"], info["items"], info["interactions"]) == (2, 2, 4)
    assert info["density"] == pytest.approx(3 / 4)  # 3 distinct pairs of 2 x 2
    assert info["duplicate_pairs_rows"] == 1
    assert info["time"] == {"kind": "unix", "min": t0, "max": t0 + 10 * day, "first": "2017-07-14",
                            "last": "2017-07-24", "days": 10.0}
    h = info["history_length"]
    assert h["mean"] == 2.0 and h["q0"] == 1.0 and h["q100"] == 3.0 and h["q50"] == 2.0
    # item counts (1, 3): Gini = (|1-3| * 2) / (2 * 2^2 * mean 2) = 0.25
    assert info["item_popularity"] == {"mean": 2.0, "max": 3, "gini": pytest.approx(0.25)}
    assert info["value"] == {"min": 1.0, "max": 4.0, "distinct": 4}
    assert info["partial"] is True and info["notes"] == ["made by hand"] and info["name"] == "hand"


def test_order_clock_is_not_a_date():
    data = Interactions.from_arrays([1, 1, 2], [1, 2, 1], time=[0, 1, 0])
    assert dataset_info(data)["time"] == {"kind": "order", "min": 0, "max": 1}


@pytest.mark.parametrize(
    ("counts", "expected"),
    [([5, 5, 5, 5], 0.0), ([0, 0, 0, 8], 0.75), ([1, 3], 0.25), ([], 0.0), ([0, 0], 0.0)],
)
def test_gini(counts, expected):
    assert gini(counts) == pytest.approx(expected)
