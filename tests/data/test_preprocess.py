"""Preprocessing steps: exact removal counts on hand-made logs, reports in meta, vocab compaction, config errors."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.interactions import Interactions
from recforge.data.preprocess import binarize, deduplicate, k_core, preprocess
from recforge.errors import ConfigError


def _log(rows: list[tuple[str, str, int, float]]) -> Interactions:
    u, i, t, v = zip(*rows)
    return Interactions.from_arrays(list(u), list(i), time=list(t), value=list(v))


def _rows(data: Interactions) -> list[tuple]:
    return sorted(zip(data.user_vocab.decode(data.user), data.item_vocab.decode(data.item), data.time.tolist(),
                      data.value.tolist()))


def test_binarize_counts_and_drops_emptied_entities():
    data = _log([("a", "x", 1, 5.0), ("a", "y", 2, 2.0), ("b", "y", 3, 1.0), ("c", "x", 4, 4.0)])
    out, counts = binarize(data, 4.0)
    assert counts == {"rows_removed": 2, "users_removed": 1, "items_removed": 1}
    assert _rows(out) == [("a", "x", 1, 1.0), ("c", "x", 4, 1.0)]
    assert out.user_vocab.ids == ["a", "c"] and out.item_vocab.ids == ["x"]
    assert out.meta["preprocess"] == [{"step": "binarize", "threshold": 4.0, **counts}]
    assert data.n_users == 3  # the input is untouched


DUPS = [("a", "x", 1, 1.0), ("a", "y", 2, 2.0), ("a", "x", 3, 3.0), ("b", "x", 4, 4.0), ("a", "x", 5, 5.0)]


@pytest.mark.parametrize(
    ("policy", "expected", "removed"),
    [
        ("first", [("a", "x", 1, 1.0), ("a", "y", 2, 2.0), ("b", "x", 4, 4.0)], 2),
        ("last", [("a", "x", 5, 5.0), ("a", "y", 2, 2.0), ("b", "x", 4, 4.0)], 2),
        ("all", sorted(DUPS), 0),
        ("sum", [("a", "x", 1, 9.0), ("a", "y", 2, 2.0), ("b", "x", 4, 4.0)], 2),
    ],
)
def test_duplicate_policies(policy, expected, removed):
    out, counts = deduplicate(_log(DUPS), policy)
    assert _rows(out) == expected
    assert counts == {"rows_removed": removed, "duplicate_pairs": 1}
    assert out.meta["preprocess"][-1]["policy"] == policy


def test_k_core_is_iterative():
    # round 1 removes user c (2 rows); then item z has 1 row; then user b has 2; then item v has 1 -> 4 removal rounds
    rows = [("a", "x", 1, 1.0), ("a", "y", 2, 1.0), ("a", "w", 3, 1.0), ("a", "v", 4, 1.0),
            ("b", "x", 5, 1.0), ("b", "z", 6, 1.0), ("b", "v", 7, 1.0),
            ("c", "z", 8, 1.0), ("c", "w", 9, 1.0),
            ("d", "x", 10, 1.0), ("d", "y", 11, 1.0), ("d", "w", 12, 1.0)]
    out, counts = k_core(_log(rows), user_k=3, item_k=2)
    assert counts == {"rows_removed": 6, "iterations": 5, "converged": 1, "users_removed": 2, "items_removed": 2}
    assert out.user_vocab.ids == ["a", "d"] and sorted(out.item_vocab.ids) == ["w", "x", "y"]
    assert out.user_counts()[1:].min() >= 3 and out.item_counts()[1:].min() >= 2
    capped, c2 = k_core(_log(rows), user_k=3, item_k=2, max_iter=2)
    assert c2["converged"] == 0 and c2["iterations"] == 2 and len(capped) == len(rows) - 3


def test_k_core_property_on_random_log(tiny_log):
    out, counts = k_core(tiny_log, 5, 5)
    assert len(out) + counts["rows_removed"] == len(tiny_log)
    assert out.user_counts()[1:].min() >= 5 and out.item_counts()[1:].min() >= 5
    # every surviving row is an original row
    orig = set(zip(tiny_log.user_vocab.decode(tiny_log.user), tiny_log.item_vocab.decode(tiny_log.item),
                   tiny_log.time.tolist()))
    assert set(zip(out.user_vocab.decode(out.user), out.item_vocab.decode(out.item), out.time.tolist())) <= orig


def test_preprocess_order_and_report():
    data = _log([("a", "x", 1, 5.0), ("a", "x", 2, 5.0), ("a", "y", 3, 1.0), ("b", "x", 4, 4.0)])
    out, steps = preprocess(data, rating_threshold=4, duplicates="first", min_user_interactions=1)
    assert [s["step"] for s in steps] == ["binarize", "deduplicate", "k_core"]
    assert steps[0]["rows_removed"] == 1 and steps[1]["rows_removed"] == 1 and steps[2]["rows_removed"] == 0
    assert len(out) == 2 and out.meta["preprocess"] == steps


@pytest.mark.parametrize(
    ("fn", "args", "match"),
    [
        (binarize, (float("nan"),), "finite"),
        (deduplicate, ("median",), "duplicates must be one of"),
        (k_core, (-1, 5), "user_k must be"),
        (k_core, (5, 2.5), "item_k must be"),
        (k_core, (5, 5, 0), "max_iter must be"),
    ],
)
def test_bad_preprocess_config(tiny_log, fn, args, match):
    with pytest.raises(ConfigError, match=match):
        fn(tiny_log, *args)


def test_values_follow_rows(tiny_log):
    out, _ = deduplicate(tiny_log, "last")
    assert len(np.unique(out.user.astype(np.int64) * (out.n_items + 1) + out.item)) == len(out)
