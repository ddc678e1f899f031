"""CRS dataset readers and builders: real data (realdata), round trips and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recforge.conversational.data import build_movielens, build_s3rec, load_crs_dataset, load_lastfm_crs
from recforge.errors import ConfigError, DataError


@pytest.mark.realdata
def test_lastfm_star_matches_published_statistics(data_dir):
    ds = load_lastfm_crs(data_dir / "lastfm-crs-scpr")
    assert (ds.n_users, ds.n_items, ds.n_attrs) == (1801, 7432, 8438)
    assert ds.item_attrs.nnz == 94446  # belong_to triples of the SCPR graph
    sizes = {s: len(ds.pairs(s)[0]) for s in ("train", "valid", "test")}
    assert sizes == {"train": 52910, "valid": 11891, "test": 11892}  # every target has attributes: nothing dropped
    assert ds.attr_names[0] == "metal"  # names recovered through original_tag_map.json + HetRec tags.dat


@pytest.mark.realdata
def test_named_dataset_uses_env(data_dir, monkeypatch):
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(data_dir))
    assert load_crs_dataset("lastfm-crs").n_items == 7432


@pytest.mark.realdata
def test_build_movielens_and_s3rec(data_dir, tmp_path):
    ml = build_movielens(data_dir / "ml-latest-small")
    assert ml.n_items == 9724 and ml.n_users == 610 and ml.group_names == ["genre", "tag"]  # the rated movies
    assert len(ml.pairs("test")[0]) == 610  # leave-last-out: one test dialogue per user
    assert ml.item_titles[0] == "Toy Story (1995)"
    assert "genre: Comedy" in ml.attr_names and "tag: dark comedy" in ml.attr_names
    assert set(ml.catalog.attr_groups[1:]) == {"genre", "tag"}
    again = load_crs_dataset(ml.save(tmp_path / "ml"))
    assert again.summary() == ml.summary() and again.item_titles == ml.item_titles
    assert np.array_equal(again.attr_groups, ml.attr_groups)
    yelp = build_s3rec(data_dir / "s3rec-yelp-lastfm" / "Yelp.txt")
    assert (yelp.n_users, yelp.n_items, yelp.n_attrs) == (30431, 20033, 1001)


def test_save_load_roundtrip(world, tmp_path):
    again = load_crs_dataset(world.save(tmp_path / "w"))
    assert (again.item_attrs != world.item_attrs).nnz == 0
    for s in ("train", "valid", "test"):
        assert all(np.array_equal(a, b) for a, b in zip(again.pairs(s), world.pairs(s)))
    assert again.attr_names == world.attr_names and again.item_titles == world.item_titles
    assert np.array_equal(again.attr_groups, world.attr_groups) and again.user_ids == world.user_ids
    assert again.files  # the saved files: their sha256 goes into a run's provenance


def test_rows_are_dense_ids_minus_one(world):
    users, items = world.pairs("test")
    dense_u, dense_i = world.dialogues.pairs("test")
    assert np.array_equal(users + 1, dense_u) and np.array_equal(items + 1, dense_i)
    item = int(items[0])
    ext = world.item_ids[item]
    assert world.catalog.item_vocab.encode(ext)[0] == item + 1
    assert sorted(world.catalog.attributes_of(ext)) == sorted(world.catalog.attr_vocab.ids[a] for a in world.attrs_of(item))
    assert world.user_row("u3") == 3


def test_old_format_folder_is_refused(tmp_path):
    (tmp_path / "crs.json").write_text(json.dumps({"format": "recforge-crs-1"}))
    with pytest.raises(DataError, match="rebuild it"):
        load_crs_dataset(tmp_path)


def _write_lastfm(root, item_dict=None, review=None):
    (root / "Graph_generate_data").mkdir(parents=True)
    (root / "UI_Interaction_data").mkdir()
    (root / "Graph_generate_data" / "item_dict.json").write_text(
        item_dict if item_dict is not None else json.dumps({"0": {"feature_index": [0, 1]}, "1": {"feature_index": [1]}}))
    for s in ("train", "valid", "test"):
        (root / "UI_Interaction_data" / f"review_dict_{s}.json").write_text(
            review if review is not None else json.dumps({"0": [0], "1": [1]}))


def test_lastfm_reader_small_folder(tmp_path):
    _write_lastfm(tmp_path)
    ds = load_crs_dataset(tmp_path)  # detected by layout
    assert (ds.n_items, ds.n_attrs, ds.n_users) == (2, 2, 2)


@pytest.mark.parametrize(
    ("item_dict", "review", "message"),
    [
        ("{not json", None, "invalid JSON"),
        ("[1, 2]", None, "expected a JSON object"),
        (json.dumps({"x": {"feature_index": [1]}}), None, "integer ids"),
        (json.dumps({"0": {"feature_index": "a"}}), None, "feature_index"),
        (json.dumps({"0": {"feature_index": [-1]}}), None, "feature_index"),
        (None, json.dumps({"0": 5}), "list of item ids"),
        (None, json.dumps({"0": [9]}), "out of range"),
    ],
)
def test_lastfm_reader_bad_inputs(tmp_path, item_dict, review, message):
    _write_lastfm(tmp_path, item_dict, review)
    with pytest.raises(DataError, match=message):
        load_lastfm_crs(tmp_path)


@pytest.mark.parametrize(
    ("seq", "attrs", "message"),
    [
        ("1 1 2 3\n2\n", {"1": [1]}, "line 2"),
        ("1 1 2 3\n", {"1": "x"}, "must be a list"),
    ],
)
def test_s3rec_bad_inputs(tmp_path, seq, attrs, message):
    (tmp_path / "X.txt").write_text(seq)
    (tmp_path / "X_item2attributes.json").write_text(json.dumps(attrs))
    with pytest.raises(DataError, match=message):
        build_s3rec(tmp_path / "X.txt")


def test_s3rec_small(tmp_path):
    (tmp_path / "X.txt").write_text("1 1 2 3 4\n2 2 3 4\n")
    (tmp_path / "X_item2attributes.json").write_text(json.dumps({"1": [7], "2": [7, 8], "3": [8], "4": [9]}))
    ds = build_s3rec(tmp_path / "X.txt")
    assert ds.n_attrs == 3 and len(ds.pairs("test")[0]) == 2
    assert [ds.item_ids[i] for i in ds.pairs("test")[1]] == [4, 4]  # external ids at the edges
    assert np.array_equal(ds.dialogues.pairs("test")[1], ds.pairs("test")[1] + 1)  # dense ids = rows + 1


def test_unknown_names_and_missing_env(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="unknown CRS dataset"):
        load_crs_dataset(tmp_path / "nothing")
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    with pytest.raises(ConfigError, match="RECFORGE_DATA_DIR"):
        load_crs_dataset("lastfm-crs")
    with pytest.raises(DataError, match="no 'ratings.csv'"):
        build_movielens(tmp_path)
