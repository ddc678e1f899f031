"""PreferencePairs: validation, parquet in external ids, builders from the training part, and the leakage check."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.data.interactions import Interactions
from recforge.data.preferences import PreferencePairs, build_pairs, check_leakage
from recforge.data.split import leave_last_out
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError


def log_of(rows: list[tuple[str, str, int, float]], items: list[str] | None = None) -> Interactions:
    """(user, item, time, value) rows; the item vocabulary may hold extra (never consumed) items."""
    users, its, times, values = zip(*rows)
    item_vocab = Vocab(items, name="item") if items is not None else None
    return Interactions.from_arrays(list(users), list(its), list(times), list(values), item_vocab=item_vocab)


def seq_log() -> Interactions:
    catalogue = [f"i{j}" for j in range(20)]
    rows = [("u1", f"i{j}", t, 1.0) for t, j in enumerate([0, 1, 2, 3, 4, 5, 6])]
    rows += [("u2", f"i{j}", t, 1.0) for t, j in enumerate([7, 8, 9, 10, 11])]
    rows += [("u3", "i12", 0, 1.0), ("u3", "i13", 1, 1.0)]  # too short for valid + test: all train
    return log_of(rows, catalogue)


def ext(pairs: PreferencePairs, col: np.ndarray) -> list:
    return pairs.item_vocab.decode(col)


# ---------------------------------------------------------------------------------------------- builders
def test_next_item_last_position_by_hand():
    split = leave_last_out(seq_log())  # u1 train i0..i4, u2 train i7..i9, u3 train i12, i13
    pairs = build_pairs(split, "random", k=3, max_history=2, seed=0)
    assert len(pairs) == 3 and pairs.k == 3 and pairs.sources == ("random",)
    assert ext(pairs, pairs.chosen) == ["i4", "i9", "i13"]
    hist, off = pairs.histories()
    assert [ext(pairs, hist[off[b]:off[b + 1]]) for b in range(3)] == [["i2", "i3"], ["i7", "i8"], ["i12"]]
    for b, u in enumerate(pairs.user):
        train_items = set(split.train.item[split.train.user == u].tolist())
        assert not set(pairs.rejected[b].tolist()) & train_items
        assert len(set(pairs.rejected[b].tolist())) == 3  # distinct negatives
    assert pairs.meta["split_hash"] == split.hash and pairs.meta["users_without_negatives"] == 0
    again = build_pairs(split, "random", k=3, max_history=2, seed=0)
    assert again.fingerprint() == pairs.fingerprint()
    assert build_pairs(split, "random", k=3, max_history=2, seed=1).fingerprint() != pairs.fingerprint()


def test_next_item_all_positions():
    split = leave_last_out(seq_log())
    pairs = build_pairs(split, "popular", positions="all", max_history=None)
    assert len(pairs) == 4 + 2 + 1  # every training event after a user's first
    assert ext(pairs, pairs.chosen) == ["i1", "i2", "i3", "i4", "i8", "i9", "i13"]
    assert np.diff(pairs.history_offsets).tolist() == [1, 2, 3, 4, 1, 2, 1]
    # popular negatives come from items with a training event only
    assert set(ext(pairs, pairs.rejected.ravel())) <= {f"i{j}" for j in (0, 1, 2, 3, 4, 7, 8, 9, 12, 13)}


def test_popular_negatives_follow_training_counts():
    rng = np.random.default_rng(0)
    # 300 users, each with 3 own events; items 0..9 consumed with planted weights by a "background" user
    rows = [(f"u{u}", f"own{u}_{j}", j, 1.0) for u in range(300) for j in range(4)]  # 2 train events each
    weights = np.arange(1, 11)
    rows += [("bg", f"i{j}", 10 + int(t), 1.0) for j in range(10) for t in range(weights[j] * 10)]
    rows += [("bg", "x1", 10_000, 1.0), ("bg", "x2", 10_001, 1.0)]
    split = leave_last_out(log_of(rows))
    pairs = build_pairs(split, "popular", k=4, seed=int(rng.integers(100)))
    users = pairs.user_vocab.decode(pairs.user)
    neg = [x for u, row in zip(users, pairs.rejected) if u != "bg" for x in ext(pairs, row)]
    planted = [x for x in neg if x.startswith("i")]
    share = np.array([planted.count(f"i{j}") for j in range(10)]) / len(planted)
    assert np.abs(share - weights / weights.sum()).max() < 0.03
    # unseen training mass of a user: 550 planted events + 598 other users' own items (count 1 each)
    assert len(planted) / len(neg) == pytest.approx(550 / 1148, abs=0.03)


def test_users_who_have_seen_almost_everything():
    catalogue = [f"i{j}" for j in range(300)]
    rows = [("heavy", f"i{j}", j, 1.0) for j in range(299)] + [("light", "i0", 0, 1.0), ("light", "i1", 1, 1.0),
                                                                ("light", "i2", 2, 1.0), ("light", "i3", 3, 1.0)]
    split = leave_last_out(log_of(rows, catalogue))
    pairs = build_pairs(split, "random", k=3)  # heavy has exactly 3 unseen items: i297, i298, i299
    heavy = pairs.user_vocab.encode(["heavy"])[0]
    row = pairs.rejected[pairs.user == heavy][0]
    assert sorted(ext(pairs, row)) == ["i297", "i298", "i299"]
    fewer = build_pairs(split, "random", k=4)  # heavy cannot give 4: left out and counted
    assert heavy not in fewer.user and fewer.meta["users_without_negatives"] == 1


def test_rating_pairs_by_hand():
    rows = [("u", "a", 1, 5.0), ("u", "b", 2, 3.0), ("u", "c", 3, 3.0), ("u", "d", 4, 1.0),
            ("u", "e", 5, 2.0), ("u", "f", 6, 4.0)]  # e -> valid, f -> test
    split = leave_last_out(log_of(rows))
    pairs = build_pairs(split, "ratings", max_pairs_per_user=None)
    got = sorted(zip(ext(pairs, pairs.chosen), ext(pairs, pairs.rejected[:, 0])))
    assert got == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "d"), ("c", "d")]
    assert pairs.meta["ties_dropped"] == 1 and pairs.meta["candidate_pairs"] == 6
    hist, off = pairs.histories()
    by_pair = {(c, r): ext(pairs, hist[off[i]:off[i + 1]])
               for i, (c, r) in enumerate(zip(ext(pairs, pairs.chosen), ext(pairs, pairs.rejected[:, 0])))}
    assert by_pair[("a", "d")] == [] and by_pair[("b", "d")] == ["a"] and by_pair[("c", "d")] == ["a", "b"]
    assert pairs.sources == ("ratings",)


def test_rating_pairs_capped_per_user_and_all_equal_ratings():
    rng = np.random.default_rng(3)
    rows = [("big", f"i{j}", j, float(rng.integers(1, 6))) for j in range(60)]
    rows += [("small", f"i{j}", j, float(j % 3)) for j in range(6)]
    split = leave_last_out(log_of(rows))
    pairs = build_pairs(split, "ratings", max_pairs_per_user=20, seed=0)
    users = np.array(pairs.user_vocab.decode(pairs.user))
    assert 0 < (users == "big").sum() <= 20
    small = [(c, r) for u, c, r in zip(users, ext(pairs, pairs.chosen), ext(pairs, pairs.rejected[:, 0]))
             if u == "small"]
    # train values i0..i3 = 0, 1, 2, 0: six pairs, one tie (i0, i3)
    assert sorted(small) == [("i1", "i0"), ("i1", "i3"), ("i2", "i0"), ("i2", "i1"), ("i2", "i3")]
    big = pairs.select(users == "big")
    keys = set(zip(big.chosen.tolist(), big.rejected[:, 0].tolist()))
    assert len(keys) == len(big)  # sampled pairs are merged, never repeated
    flat = leave_last_out(log_of([("u", f"i{j}", j, 4.0) for j in range(5)]))
    with pytest.raises(DataError, match="need explicit ratings"):
        build_pairs(flat, "ratings")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 12), st.integers(1, 5)), min_size=5, max_size=80),
       st.sampled_from(["random", "popular", "ratings"]), st.integers(0, 3))
def test_pairs_never_use_held_out_items(events, kind, seed):
    data = Interactions.from_arrays([e[0] for e in events], [e[1] for e in events], np.arange(len(events)),
                                    [float(e[2]) for e in events], item_vocab=Vocab(range(30), name="item"))
    try:
        split = leave_last_out(data, min_train=2)
        pairs = build_pairs(split, kind, positions="all", seed=seed)
    except DataError:
        return  # nothing to split or build from (no user long enough, no two different ratings, ...)
    train = set(zip(split.train.user.tolist(), split.train.item.tolist()))
    held = {(u, i) for p in (split.valid, split.test) for u, i in zip(p.user.tolist(), p.item.tolist())} - train
    assert not {(u, c) for u, c in zip(pairs.user.tolist(), pairs.chosen.tolist())} & held
    hist, off = pairs.histories()
    for b, u in enumerate(pairs.user.tolist()):
        assert {(u, i) for i in hist[off[b]:off[b + 1]].tolist()} <= train
        assert (u, int(pairs.chosen[b])) in train
        assert int(pairs.chosen[b]) not in pairs.rejected[b]
        if kind != "ratings":
            assert not {(u, i) for i in pairs.rejected[b].tolist()} & train


def test_leakage_check_names_rows():
    split = leave_last_out(seq_log())
    pairs = build_pairs(split, "random")
    test_item = split.test.item[split.test.user == pairs.user[1]][0]
    chosen = pairs.chosen.copy()
    chosen[1] = test_item
    leaky = PreferencePairs(user=pairs.user, history=pairs.history, history_offsets=pairs.history_offsets,
                            chosen=chosen, rejected=pairs.rejected, user_vocab=pairs.user_vocab,
                            item_vocab=pairs.item_vocab)
    with pytest.raises(DataError, match=r"column 'chosen': row\(s\) 1: is a validation/test item"):
        check_leakage(leaky, split)
    history = pairs.history.copy()
    history[pairs.history_offsets[2]] = split.valid.item[split.valid.user == pairs.user[0]][0]  # u1's, in u3's row
    other = PreferencePairs(user=pairs.user, history=history, history_offsets=pairs.history_offsets,
                            chosen=pairs.chosen, rejected=pairs.rejected, user_vocab=pairs.user_vocab,
                            item_vocab=pairs.item_vocab)
    check_leakage(other, split)  # another user's held-out item is no leak for this user
    history[pairs.history_offsets[0]] = split.valid.item[split.valid.user == pairs.user[0]][0]
    with pytest.raises(DataError, match=r"column 'history': row\(s\) 0: holds a validation/test item"):
        check_leakage(PreferencePairs(user=pairs.user, history=history, history_offsets=pairs.history_offsets,
                                      chosen=pairs.chosen, rejected=pairs.rejected, user_vocab=pairs.user_vocab,
                                      item_vocab=pairs.item_vocab), split)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rejected": "hard"}, ConfigError, "rejected must be one of"),
        ({"k": 0}, ConfigError, "k must be >= 1"),
        ({"rejected": "ratings", "k": 2}, ConfigError, "k=1"),
        ({"positions": "first"}, ConfigError, "positions"),
        ({"max_history": -1}, ConfigError, "max_history"),
        ({"rejected": "ratings", "max_pairs_per_user": 0}, ConfigError, "max_pairs_per_user"),
    ],
)
def test_builder_options_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        build_pairs(leave_last_out(seq_log()), **kwargs)


# ---------------------------------------------------------------------------------------------- validation
def make(**override) -> PreferencePairs:
    args = dict(user=[1, 2, 1], history=[1, 2, 3], history_offsets=[0, 2, 2, 3], chosen=[3, 4, 5],
                rejected=[[4, 5], [1, 2], [1, 2]], user_vocab=Vocab(["u1", "u2"], name="user"),
                item_vocab=Vocab(["a", "b", "c", "d", "e"], name="item"))
    args.update(override)
    return PreferencePairs(**args)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"rejected": [[4, 5], [1, 4], [5, 2]]}, r"column 'rejected': row\(s\) 1, 2: equals the chosen item"),
        ({"chosen": [3, 6, 5]}, r"column 'chosen': row\(s\) 1: must be in 1\.\.5"),
        ({"user": [1, 0, 1]}, r"column 'user': row\(s\) 1: must be in 1\.\.2"),
        ({"history": [1, 9, 3]}, r"column 'history': row\(s\) 0: must be in 1\.\.5"),
        ({"rejected": [[4, 0], [1, 2], [1, 2]]}, r"column 'rejected': row\(s\) 0: must be in"),
        ({"history_offsets": [0, 2, 1, 3]}, "history_offsets must"),
        ({"rejected": [[4, 5], [1, 2]]}, r"rejected must have shape \(3, K\)"),
        ({"rejected": np.zeros((3, 0), int)}, r"rejected must have shape \(3, K\) with K >= 1"),
        ({"chosen": [3.5, 4, 5]}, "chosen must hold integer"),
        ({"user": [], "chosen": [], "rejected": np.zeros((0, 1), int), "history": [], "history_offsets": [0]},
         "empty"),
        ({"weight": [1.0, -1.0, 1.0]}, r"column 'weight': row\(s\) 1: must be finite and >= 0"),
        ({"weight": [1.0, 1.0]}, r"weight.*shape \(3,\)"),
        ({"source": [0, 1, 0]}, "source must have shape"),
    ],
)
def test_bad_pairs_are_refused_with_rows(override, match):
    with pytest.raises(DataError, match=match):
        make(**override)


def test_select_concat_with_rejected():
    p = make(sources=("a",))
    sub = p.select([2, 0])
    assert sub.chosen.tolist() == [5, 3] and sub.history.tolist() == [3, 1, 2]
    hard = p.with_rejected(np.array([[1], [3], [4]]), source="model-hard")
    both = PreferencePairs.concat([p.select([0, 1, 2]).with_rejected(p.rejected[:, :1], "a"), hard, hard])
    assert both.sources == ("a", "model-hard") and both.source_counts() == {"a": 3, "model-hard": 6}
    assert len(both) == 9 and both.history_offsets[-1] == 9
    with pytest.raises(DataError, match="K=2 and K=1"):
        PreferencePairs.concat([p, hard])
    with pytest.raises(DataError, match="equals the chosen"):
        p.with_rejected(np.array([[3], [3], [4]]), source="x")


# ---------------------------------------------------------------------------------------------- parquet
def test_parquet_round_trip_in_external_ids(tmp_path):
    split = leave_last_out(seq_log())
    pairs = PreferencePairs.concat([build_pairs(split, "random", k=2), build_pairs(split, "popular", k=2)])
    pairs.to_parquet(tmp_path / "p.parquet")
    df = pl.read_parquet(tmp_path / "p.parquet")
    assert df.columns == ["user", "history", "chosen", "rejected", "source"]
    assert df["chosen"].to_list()[:3] == ["i4", "i9", "i13"] and df["user"].to_list()[0] == "u1"
    back = PreferencePairs.read_parquet(tmp_path / "p.parquet", pairs.user_vocab, pairs.item_vocab)
    assert back.fingerprint() == pairs.fingerprint()
    weighted = make(weight=[0.5, 1.0, 2.0])
    weighted.to_parquet(tmp_path / "w.parquet")
    assert PreferencePairs.read_parquet(tmp_path / "w.parquet", weighted.user_vocab,
                                        weighted.item_vocab).weight.tolist() == [0.5, 1.0, 2.0]


def test_a_hand_written_pair_file(tmp_path):
    uv, iv = Vocab(["u1", "u2"], name="user"), Vocab(["a", "b", "c"], name="item")
    pl.DataFrame({"user": ["u2", "u1"], "history": [["a"], []], "chosen": ["b", "c"], "rejected": ["c", "a"]}).write_parquet(
        tmp_path / "mine.parquet")
    pairs = PreferencePairs.read_parquet(tmp_path / "mine.parquet", uv, iv)
    assert pairs.k == 1 and pairs.rejected[:, 0].tolist() == [3, 1] and pairs.sources == ("custom",)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        ({"user": ["u1"], "history": [["a"]], "chosen": ["zz"], "rejected": ["b"]},
         r"column 'chosen': row\(s\) 0: unknown item id\(s\) \(e\.g\. 'zz'\)"),
        ({"user": ["u1", "u1"], "history": [["a"], ["a", "q"]], "chosen": ["b", "b"], "rejected": ["c", "c"]},
         r"column 'history': row\(s\) 1: unknown item"),
        ({"user": ["u1", "u1"], "history": [[], []], "chosen": ["b", "b"], "rejected": [["c"], ["c", "a"]]},
         r"column 'rejected': row\(s\) 1: has another number of items"),
        ({"user": ["u1", "u1"], "history": [[], []], "chosen": ["b", "b"], "rejected": ["b", "c"]},
         r"column 'rejected': row\(s\) 0: equals the chosen item"),
        ({"user": ["u1", None], "history": [[], []], "chosen": ["b", "b"], "rejected": ["a", "c"]},
         r"column 'user': row\(s\) 1: is null"),
        ({"user": ["u1"], "chosen": ["b"], "rejected": ["a"]}, "missing column.*|column 'history'"),
        ({"user": [], "history": [], "chosen": [], "rejected": []}, "empty"),
    ],
)
def test_bad_pair_files_name_file_column_and_rows(tmp_path, frame, match):
    uv, iv = Vocab(["u1", "u2"], name="user"), Vocab(["a", "b", "c"], name="item")
    path = tmp_path / "bad.parquet"
    pl.DataFrame(frame, schema_overrides={"history": pl.List(pl.String)} if "history" in frame else None,
                 strict=False).write_parquet(path)
    with pytest.raises(DataError, match=match) as err:
        PreferencePairs.read_parquet(path, uv, iv)
    assert str(path) in str(err.value)


def test_unreadable_pair_files(tmp_path):
    uv, iv = Vocab(["u1"], name="user"), Vocab(["a"], name="item")
    with pytest.raises(DataError, match="pair file not found"):
        PreferencePairs.read_parquet(tmp_path / "none.parquet", uv, iv)
    (tmp_path / "x.parquet").write_text("user,chosen\n")
    with pytest.raises(DataError, match="not a readable parquet file"):
        PreferencePairs.read_parquet(tmp_path / "x.parquet", uv, iv)
