"""Dialogue pairs: built from a split, filtered, saved and loaded; bad input is a located DataError."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recforge.data.dialogues import DialoguePairs
from recforge.data.interactions import Interactions
from recforge.data.split import leave_last_out
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError


@pytest.fixture()
def pairs() -> DialoguePairs:
    df = pl.DataFrame({"user": ["a"] * 4 + ["b"] * 3 + ["c"] * 2,
                       "item": ["x", "y", "z", "w", "y", "x", "w", "x", "y"],
                       "time": [1, 2, 3, 4, 1, 2, 3, 1, 2]})
    return DialoguePairs.from_split(leave_last_out(Interactions.from_frame(df, user="user", item="item", time="time")))


def test_from_split_takes_every_event_of_each_part(pairs):
    ext = {s: list(zip(pairs.user_vocab.decode(u), pairs.item_vocab.decode(i))) for s, (u, i) in pairs.splits.items()}
    assert sorted(ext["test"]) == [("a", "w"), ("b", "w")]  # c has 2 events: all in train
    assert sorted(ext["valid"]) == [("a", "z"), ("b", "x")]
    assert sorted(ext["train"]) == [("a", "x"), ("a", "y"), ("b", "y"), ("c", "x"), ("c", "y")]
    assert pairs.sizes() == {"train": 5, "valid": 2, "test": 2}


def test_keep_targets_and_roundtrip(pairs, tmp_path):
    ok = np.ones(len(pairs.item_vocab) + 1, dtype=bool)
    ok[pairs.item_vocab.encode("w")] = False
    kept = pairs.keep_targets(ok)
    assert kept.sizes()["test"] == 0 and kept.sizes()["train"] == 5
    again = DialoguePairs.load(pairs.save(tmp_path / "d"))
    assert again.user_vocab == pairs.user_vocab and again.item_vocab == pairs.item_vocab
    for s in pairs.splits:
        assert all(np.array_equal(a, b) for a, b in zip(again.pairs(s), pairs.pairs(s)))


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ({"train": (np.array([1]), np.array([1, 2]))}, "1 users but 2 items"),
        ({"train": (np.array([0]), np.array([1]))}, "out of range"),
        ({"test": (np.array([1]), np.array([3]))}, "out of range"),
        ({"holdout": (np.array([1]), np.array([1]))}, "unknown dialogue split"),
    ],
)
def test_bad_pairs(splits, message):
    with pytest.raises(DataError, match=message):
        DialoguePairs(Vocab(["u"]), Vocab(["i", "j"]), splits)


def test_unknown_split_and_bad_folders(pairs, tmp_path):
    with pytest.raises(ConfigError, match="unknown CRS split"):
        pairs.pairs("holdout")
    with pytest.raises(DataError, match="not saved dialogue pairs"):
        DialoguePairs.load(tmp_path)
    folder = pairs.save(tmp_path / "d")
    (folder / "dialogues.json").write_text("{broken")
    with pytest.raises(DataError, match="corrupt dialogue pairs"):
        DialoguePairs.load(folder)
    folder = pairs.save(tmp_path / "e")
    (folder / "dialogues.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupt dialogue pairs"):
        DialoguePairs.load(folder)
