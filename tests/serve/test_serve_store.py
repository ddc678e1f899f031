"""FeedbackStore: committed writes from many threads, history queries, reopen, Parquet export of mixed id types."""

from __future__ import annotations

import threading

import polars as pl
import pytest

from recforge.errors import DataError
from recforge.serve import FeedbackStore


def test_concurrent_writers_all_committed_and_visible_to_reader(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite", sync="normal")
    ids: list[int] = []

    def write(w: int) -> None:
        for n in range(50):
            ids.append(store.add(f"user{w}", n, "click", ts=float(n)))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == list(range(1, 201)) and store.count() == 200
    assert store.history("user2", limit=3) == [47, 48, 49]  # most recent three, oldest first
    store.close()
    reopened = FeedbackStore(tmp_path / "f.sqlite")
    assert reopened.count() == 200 and reopened.add("x", 1) == 201
    reopened.close()


def test_history_leaves_out_negative_events_and_keeps_id_types(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite")
    store.add(7, "a", "click")
    store.add(7, "b", "skip")
    store.add("7", "c", "click")  # a different user: the string "7"
    store.add(7, 3, "purchase")
    assert store.history(7, exclude_events=("skip",)) == ["a", 3]
    assert store.history("7") == ["c"]
    out = tmp_path / "x.parquet"
    assert store.export_parquet(out) == 4
    df = pl.read_parquet(out)
    assert df["user_id"].to_list() == ["7", "7", "7", "7"]  # mixed int/str column -> strings
    assert df["item_id"].to_list() == ["a", "b", "c", "3"]
    store.close()


def test_empty_export_and_unwritable_path(tmp_path):
    store = FeedbackStore(tmp_path / "f.sqlite")
    assert store.export_parquet(tmp_path / "empty.parquet") == 0
    assert pl.read_parquet(tmp_path / "empty.parquet").columns[:3] == ["id", "user_id", "item_id"]
    store.close()
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(DataError, match="cannot open feedback store"):
        FeedbackStore(tmp_path / "dir.sqlite")
