"""Vocab and Interactions: dense ids, ordering, views."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.interactions import Interactions
from recforge.data.vocab import Vocab
from recforge.errors import DataError, UnknownIdError


def test_vocab_round_trip_and_padding():
    v = Vocab(["a", "b", "c"], name="item")
    assert len(v) == 3
    assert v.encode(["c", "a"]).tolist() == [3, 1]
    assert v.decode([0, 2]) == [None, "b"]
    assert v.encode(["z", "a"], on_unknown="zero").tolist() == [0, 1]
    with pytest.raises(UnknownIdError, match="'z'"):
        v.encode(["z"])
    assert Vocab.from_json(v.to_json()) == v


def test_vocab_numpy_scalars_match_python_ints():
    v = Vocab(np.array([10, 20]))
    assert v.encode([np.int64(20), 10]).tolist() == [2, 1]


@pytest.mark.parametrize(("ids", "raw", "expected"), [
    ([1, 42], "42", 42), (["a", "42"], 42, "42"), ([1, 42], np.int64(42), 42), ([-3], "-3", None), ([-3], -3, -3),
    (["x"], "x", "x"), ([1, 42], "4.2", None), ([1, 42], "zz", None), (["x"], 7, None),
])
def test_vocab_canonical_matches_text_and_integer_ids(ids, raw, expected):
    assert Vocab(ids).canonical(raw) == expected


def test_vocab_rejects_duplicates():
    with pytest.raises(ValueError, match="duplicate"):
        Vocab([1, 1])


def test_rows_sorted_by_user_then_time():
    log = Interactions.from_arrays(["u1", "u2", "u1", "u2"], ["a", "b", "c", "a"], [5, 1, 3, 0])
    assert log.user.tolist() == [1, 1, 2, 2]
    assert log.item_vocab.decode(log.item) == ["c", "a", "a", "b"]
    items, offsets = log.sequences()
    assert offsets.tolist() == [0, 0, 2, 4]
    assert log.item_vocab.decode(items[offsets[1] : offsets[2]]) == ["c", "a"]


def test_csr_shape_and_duplicates_collapse():
    log = Interactions.from_arrays([1, 1, 2], [7, 7, 8], [1, 2, 3], value=[2.0, 3.0, 1.0])
    m = log.to_csr()
    assert m.shape == (3, 3)
    assert m[1, 1] == 1.0
    assert log.to_csr(binary=False)[1, 1] == 5.0


def test_arrays_are_read_only_and_fingerprint_stable(tiny_log):
    with pytest.raises(ValueError):
        tiny_log.user[0] = 3
    assert tiny_log.fingerprint() == tiny_log.with_rows(np.ones(len(tiny_log), bool)).fingerprint()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"item": np.array([1])}, "column item has 1 rows"),
        ({"user": np.array([0, 1])}, "user ids out of vocabulary range"),
        ({"item": np.array([1, 5])}, "item ids out of vocabulary range"),
    ],
)
def test_bad_arrays_raise_data_error(kwargs, message):
    base = dict(
        user=np.array([1, 2]), item=np.array([1, 2]), time=np.zeros(2, np.int64), value=np.ones(2, np.float32),
        user_vocab=Vocab(["a", "b"]), item_vocab=Vocab(["x", "y"]),
    )
    with pytest.raises(DataError, match=message):
        Interactions(**{**base, **kwargs})


def test_from_frame_missing_column():
    import polars as pl

    df = pl.DataFrame({"user_id": [1], "item": [2]})
    with pytest.raises(DataError, match="missing column 'item_id'"):
        Interactions.from_frame(df)
