"""FeatureTable: alignment to a vocabulary, the three feature kinds, multi-hot, select, hash and persistence."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.data.catalog import ItemCatalog
from recforge.data.features import Bag, Categorical, FeatureTable
from recforge.data.vocab import Vocab
from recforge.errors import DataError

VOCAB = Vocab(["a", "b", "c", "d"], name="item")


def frame(**override) -> pl.DataFrame:
    cols = {
        "id": ["c", "a", "zz", "b"],
        "color": ["red", None, "blue", "green"],
        "tags": [["x", "y"], [], ["q"], None],
        "w": [[0.5, 2.0], [], [1.0], None],
        "price": [1.0, 2.0, 3.0, 4.0],
        "emb": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]],
    }
    cols.update(override)
    return pl.DataFrame(cols, strict=False)


def table(df: pl.DataFrame | None = None, **kw) -> FeatureTable:
    args = dict(key="id", vocab=VOCAB, categorical=["color"], bag=["tags"], dense=["price", "emb"],
                bag_weights={"tags": "w"})
    args.update(kw)
    return FeatureTable.from_frame(frame() if df is None else df, **args)


def test_from_frame_aligns_rows_to_dense_ids():
    t = table()
    # dense ids: a=1, b=2, c=3, d=4; the frame describes c, a, b (zz is unknown, d is missing)
    assert t.present.tolist() == [False, True, True, True, False]
    color = t.categorical["color"]
    assert color.vocab.ids == ["green", "red"]  # sorted; "blue" only belonged to the dropped key
    assert color.codes.tolist() == [0, 0, 1, 2, 0]  # a has a null colour -> 0
    tags = t.bag["tags"]
    assert tags.vocab.ids == ["x", "y"]
    assert tags.offsets.tolist() == [0, 0, 0, 0, 2, 2] and tags.codes.tolist() == [1, 2]
    assert tags.weights.tolist() == [0.5, 2.0]
    assert t.dense["price"][:, 0].tolist() == [0.0, 2.0, 4.0, 1.0, 0.0]  # missing rows filled with 0
    assert t.dense["emb"].tolist() == [[0, 0], [3, 4], [7, 8], [1, 2], [0, 0]]
    assert t.meta == {"rows": 4, "unknown_keys": 1, "missing_rows": 1, "unknown_values": {}}
    assert t.names == ["color", "tags", "price", "emb"]
    with pytest.raises(ValueError):
        t.dense["price"][1, 0] = 5.0  # read-only


def test_unknown_keys_raise_when_asked():
    with pytest.raises(DataError, match=r"column 'id': 1 key\(s\) not in the item vocabulary \(row 2: 'zz'\)"):
        table(on_unknown="raise")
    with pytest.raises(DataError, match="column 'id'"):
        FeatureTable.from_frame(frame(), key="id", vocab=Vocab(["x"], name="item"), on_unknown="raise")


def test_given_value_vocabulary_counts_unknown_values():
    t = table(value_vocabs={"color": Vocab(["red"], name="color"), "tags": Vocab(["y"], name="tags")})
    assert t.categorical["color"].codes.tolist() == [0, 0, 0, 1, 0]  # green is unknown -> 0
    assert t.bag["tags"].codes.tolist() == [1] and t.bag["tags"].weights.tolist() == [2.0]  # x dropped with its weight
    assert t.meta["unknown_values"] == {"color": 1, "tags": 1}


def test_frame_row_order_does_not_matter_and_hash_is_stable():
    a = table()
    b = table(frame().reverse())
    assert a.hash == b.hash and len(a.hash) == 16
    assert a.fingerprint() == a.fingerprint()
    changed = table(frame(price=[1.0, 2.0, 3.0, 4.5]))
    assert changed.hash != a.hash
    assert table(frame(color=["red", None, "blue", "red"])).hash != a.hash


def test_hash_is_pinned():
    """The digest depends only on content bytes in fixed dtypes: a change of this value breaks recorded hashes."""
    t = FeatureTable(vocab=Vocab([1, 2], name="item"),
                     categorical={"c": Categorical(codes=np.array([0, 1, 0]), vocab=Vocab(["v"], name="c"))},
                     dense={"d": np.array([[0.0], [1.5], [-2.0]])}, present=np.array([False, True, True]))
    assert t.hash == "6de5cfe0d1ef2747"


def test_multi_hot_layout():
    t = table()
    assert t.column_offsets() == {"color": 0, "tags": 2}
    m = t.to_multi_hot()
    assert m.shape == (5, 1 + 2 + 2)
    assert m.toarray().tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0.5, 2.0],
                                    [0, 0, 0, 0, 0]]
    assert t.to_multi_hot(["tags"]).shape == (5, 3)
    with pytest.raises(DataError, match="unknown categorical/bag feature"):
        t.to_multi_hot(["price"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdef"), max_size=6), min_size=1, max_size=12), st.data())
def test_multi_hot_row_sums_equal_bag_lengths(bags, data):
    n = len(bags)
    vocab = Vocab(list(range(100, 100 + n)), name="item")
    keys = data.draw(st.permutations(list(range(100, 100 + n))))
    df = pl.DataFrame({"k": keys, "bag": bags, "cat": [b[0] if b else None for b in bags]},
                      schema={"k": pl.Int64, "bag": pl.List(pl.String), "cat": pl.String})
    t = FeatureTable.from_frame(df, key="k", vocab=vocab, bag=["bag"], categorical=["cat"])
    lengths = np.zeros(n + 1, np.int64)
    lengths[vocab.encode(keys)] = [len(b) for b in bags]
    assert t.bag["bag"].lengths().tolist() == lengths.tolist()
    sums = np.asarray(t.to_multi_hot(["bag"]).sum(axis=1)).ravel()
    assert sums.tolist() == lengths.tolist()
    both = np.asarray(t.to_multi_hot().sum(axis=1)).ravel()
    assert both.tolist() == (lengths + (lengths > 0)).tolist()  # the categorical adds one where a value exists
    # select gathers the same rows as direct indexing
    ids = np.array(data.draw(st.lists(st.integers(0, n), max_size=8)), dtype=np.int64)
    rows = t.select(ids)
    codes, offsets, _ = rows.bag["bag"]
    assert np.diff(offsets).tolist() == lengths[ids].tolist()
    b = t.bag["bag"]
    assert codes.tolist() == [c for i in ids for c in b.codes[b.offsets[i]:b.offsets[i + 1]]]
    assert rows.categorical["cat"].tolist() == t.categorical["cat"].codes[ids].tolist()


def test_select_and_dense_matrix():
    t = table()
    rows = t.select([3, 0, 2])
    assert rows.present.tolist() == [True, False, True]
    assert rows.dense["emb"].tolist() == [[1, 2], [0, 0], [7, 8]]
    assert rows.bag["tags"][1].tolist() == [0, 2, 2, 2] and rows.bag["tags"][2].tolist() == [0.5, 2.0]
    assert t.dense_matrix().shape == (5, 3) and t.dense_matrix(["emb"]).tolist()[3] == [1, 2]
    with pytest.raises(DataError, match=r"ids must be in 0\.\.4; position 1 has 5"):
        t.select([1, 5])
    with pytest.raises(DataError, match="unknown dense feature"):
        t.dense_matrix(["color"])


def test_save_load_roundtrip_and_tampering(tmp_path):
    t = table()
    t.save(tmp_path / "f")
    back = FeatureTable.load(tmp_path / "f")
    assert back.hash == t.hash and back.names == t.names and back.vocab == t.vocab
    assert back.bag["tags"].weights.tolist() == [0.5, 2.0] and back.meta == t.meta
    meta_file = tmp_path / "f" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["extra"]["value_vocabs"]["color"]["ids"] = ["green", "RED"]  # weights unchanged, content changed
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="content hash"):
        FeatureTable.load(tmp_path / "f")
    meta["table"] = "models"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="expected a features"):
        FeatureTable.load(tmp_path / "f")


def test_from_catalog_matches_the_catalog_attributes():
    cat = ItemCatalog.from_records([3, 1, 2], ["c", "a", None], [["g1", "g2"], [], []])
    t = FeatureTable.from_catalog(cat, name="genre")
    assert (t.to_multi_hot().toarray() == cat.attributes.toarray()).all()
    assert t.present.tolist() == [False, True, True, False]  # item 2 has neither a title nor an attribute


@pytest.mark.parametrize(
    ("df", "kwargs", "match"),
    [
        (frame(), {"categorical": ["nope"]}, "column 'nope': missing column"),
        (frame(id=["c", None, "a", "b"]), {}, "null key in row 1"),
        (frame(id=["c", "a", "c", "b"]), {}, "key 'c' appears in rows 0 and 2"),
        (frame(price=[1.0, float("nan"), 3.0, 4.0]), {}, r"column 'price': row 1 \(key 'a'\) has a null, NaN or infinite"),
        (frame(price=[1.0, 2.0, 3.0, None]), {}, r"column 'price': row 3 \(key 'b'\)"),
        (frame(price=[1.0, 2.0, float("inf"), 4.0]), {"on_unknown": "drop"}, None),  # bad value on a dropped key
        (frame(emb=[[1.0, 2.0], [3.0], [5.0, 6.0], [7.0, 8.0]]), {}, r"column 'emb': row 1 \(key 'a'\) has 1 values"),
        (frame(emb=[[1.0, 2.0], [3.0, None], [5.0, 6.0], [7.0, 8.0]]), {}, r"column 'emb': row 1 \(key 'a'\) has a null"),
        (frame(price=["1", "2", "3", "4"]), {}, "column 'price': a dense column must hold numbers"),
        (frame(tags=["x|y", "", "q", None]), {}, r"bag column must hold lists.*str\.split"),
        (frame(tags=[["x", None], [], ["q"], None]), {"bag_weights": None}, r"null value inside the bag of row 0"),
        (frame(w=[[0.5], [], [1.0], None]), {}, r"column 'w': row 0 \(key 'c'\) has 1 weights for 2 bag values"),
        (frame(w=[[0.5, float("nan")], [], [1.0], None]), {}, r"row 0 \(key 'c'\) has a null, NaN"),
        (frame(), {"bag_weights": {"color": "w"}}, "not bag features"),
        (frame(), {"on_unknown": "zero"}, "on_unknown"),
    ],
)
def test_bad_frames_raise_located_errors(df, kwargs, match):
    if match is None:
        assert table(df, **kwargs).dense["price"][1:4, 0].tolist() == [2.0, 4.0, 1.0]
        return
    with pytest.raises(DataError, match=match):
        table(df, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"categorical": {"c": Categorical(codes=np.array([0, 2, 0]), vocab=Vocab(["v"]))}}, "row 1 has code 2"),
        ({"categorical": {"c": Categorical(codes=np.array([1, 1, 0]), vocab=Vocab(["v"]))}}, "row 0 \\(padding\\)"),
        ({"bag": {"b": Bag(codes=np.array([1]), offsets=np.array([0, 1, 1, 1]), vocab=Vocab(["v"]))}}, "start 0, 0"),
        ({"bag": {"b": Bag(codes=np.array([3]), offsets=np.array([0, 0, 1, 1]), vocab=Vocab(["v"]))}}, "row 1 has code 3"),
        ({"dense": {"d": np.array([[0.0], [np.nan], [1.0]])}}, "row 1 has a non-finite"),
        ({"dense": {"d": np.ones((3, 1))}}, "padding"),
        ({"dense": {"d": np.zeros(3)}}, r"expected shape \(3, d\)"),
        ({"dense": {"d": np.zeros((3, 1))}, "categorical": {"d": Categorical(np.zeros(3, int), Vocab([]))}}, "unique"),
        ({"present": np.array([True, True, False])}, "present\\[0\\]"),
    ],
)
def test_direct_construction_is_validated(kwargs, match):
    with pytest.raises(DataError, match=match):
        FeatureTable(vocab=Vocab([1, 2], name="item"), **kwargs)
