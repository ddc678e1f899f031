"""Semantic IDs on planted clusters: features from the training split, residual k-means, collision policies, the
artifact and its hash, inspection, and every bad input as one clear error."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.catalog import ItemCatalog
from recforge.data.split import leave_last_out
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError, DataError
from recforge.models.generative.inspect import inspect_sids, plot_sids
from recforge.models.generative.semantic_ids import (
    SemanticIds,
    SidConfig,
    build_semantic_ids,
    check_unique,
    item_features,
    resolve_dedup,
    resolve_uniform,
)
from recforge.nn.quantisers import BalancedResidualKMeans, ResidualKMeans, RKMeansConfig


@pytest.fixture(scope="module")
def world():
    data = planted_clusters(n_users=200, n_items=120, n_clusters=4, events_per_user=15, seed=1)
    split = leave_last_out(data)
    clusters = data.meta["item_cluster"]
    ids = split.train.item_vocab.ids
    cluster_of = {f"i{k}": int(c) for k, c in enumerate(clusters)}
    catalog = ItemCatalog.from_records(ids, attributes=[[f"c{cluster_of[i]}"] for i in ids])
    return split, catalog


def test_features_come_from_the_training_split_and_are_standardised(world):
    split, catalog = world
    x = item_features(split.train, "cf+attributes", catalog=catalog, dim=8)
    assert x.shape[0] == split.train.n_items + 1 and np.all(x[0] == 0)
    assert np.allclose(x[1:].mean(0), 0, atol=1e-5)
    # the test events do not shape the features: the same training log gives the same features
    again = item_features(split.train, "cf+attributes", catalog=catalog, dim=8)
    assert np.array_equal(x, again)


@pytest.mark.parametrize("collisions", ["uniform", "dedup"])
@pytest.mark.parametrize("tokenizer", ["rkmeans", "balanced-rkmeans"])
def test_final_ids_are_unique_and_clusters_share_prefixes(world, collisions, tokenizer):
    split, catalog = world
    cfg = SidConfig(features="cf+attributes", tokenizer=tokenizer, levels=3, codebook_size=16, dim=8,
                    collisions=collisions)
    sids = build_semantic_ids(split.train, cfg, catalog=catalog)
    check_unique(sids.codes[1:])
    assert sids.length == (3 if collisions == "uniform" else 4)
    report = inspect_sids(sids)
    assert report["collisions"]["after"]["largest_group"] == 1
    assert report["prefix_coherence"]["ratio"] >= 2.0  # planted clusters: same first code -> same cluster


def test_uniform_keeps_the_prefix_and_moves_to_the_nearest_free_value():
    codes = np.array([[0, 1], [0, 1], [0, 2], [1, 1]])
    dist = np.array([[0, 1, 2, 3], [5, 0.5, 4, 1], [0, 0, 0, 0], [0, 0, 0, 0]], float)
    out = resolve_uniform(codes, dist, k=4)
    assert out.tolist() == [[0, 1], [0, 0], [0, 2], [1, 1]] or out.tolist() == [[0, 1], [0, 3], [0, 2], [1, 1]]
    check_unique(out)


def test_dedup_appends_the_rank_inside_each_group():
    out = resolve_dedup(np.array([[3, 1], [3, 1], [0, 0], [3, 1]]))
    assert out[:, -1].tolist() == [0, 1, 0, 2]


def test_artifact_round_trip_and_hash(world, tmp_path):
    split, catalog = world
    sids = build_semantic_ids(split.train, SidConfig(levels=2, codebook_size=8, dim=8, collisions="dedup"),
                              catalog=catalog)
    sids.save(tmp_path / "sid")
    back = SemanticIds.load(tmp_path / "sid")
    assert back.hash == sids.hash and np.array_equal(back.codes, sids.codes)
    back.check_train(split.train)
    assert plot_sids(back, tmp_path / "sid.png").stat().st_size > 0


def test_rkmeans_is_deterministic_and_reduces_error():
    x = np.random.default_rng(0).standard_normal((300, 6)).astype(np.float32)
    a = ResidualKMeans(RKMeansConfig(levels=3, codebook_size=8)).fit(x)
    b = ResidualKMeans(RKMeansConfig(levels=3, codebook_size=8)).fit(x)
    assert np.array_equal(a, b)
    tok = ResidualKMeans(RKMeansConfig(levels=3, codebook_size=8))
    codes = tok.fit(x)
    errs = [np.square(tok.residual(x, codes, lv)).sum() for lv in range(4)]
    assert errs[0] > errs[1] > errs[2] > errs[3]


def test_balanced_rkmeans_spreads_items_more_evenly():
    x = np.random.default_rng(1).standard_normal((600, 4)).astype(np.float32) ** 3  # heavy tails
    plain = np.bincount(ResidualKMeans(levels=1, codebook_size=8).fit(x)[:, 0], minlength=8)
    balanced = np.bincount(BalancedResidualKMeans(levels=1, codebook_size=8).fit(x)[:, 0], minlength=8)
    assert balanced.max() < plain.max()


# ------------------------------------------------------------------------------------------------- bad inputs


def test_unknown_feature_source():
    with pytest.raises(ConfigError, match="unknown feature source 'genres'"):
        SidConfig(features="cf+genres")


@pytest.mark.parametrize("field", ["levels", "codebook_size"])
def test_k_or_l_below_one(field):
    with pytest.raises(ConfigError, match="must be >= 1"):
        SidConfig(**{field: 0})
    with pytest.raises(ConfigError, match="must be >= 1"):
        RKMeansConfig(**{field: 0})


def test_missing_and_nan_features(world):
    split, _ = world
    with pytest.raises(DataError, match="need an item catalogue"):
        item_features(split.train, "attributes")
    with pytest.raises(DataError, match="text embedder"):
        item_features(split.train, "text")

    class NanEmbedder:
        name, fingerprint = "nan", "nan"

        def embed(self, texts):
            out = np.ones((len(texts), 3), np.float32)
            out[2, 1] = np.nan
            return out

    texts = [""] * (split.train.n_items + 1)
    with pytest.raises(DataError, match="NaN"):
        item_features(split.train, "text", embedder=NanEmbedder(), texts=texts)
    with pytest.raises(DataError, match="NaN"):
        ResidualKMeans().fit(np.array([[np.nan, 1.0]]))


def test_text_features_through_a_text_embedder(world):
    split, _ = world

    class Embedder:
        name, fingerprint = "fixed", "fixed"

        def embed(self, texts):
            return np.random.default_rng(len(texts)).standard_normal((len(texts), 5)).astype(np.float32)

    x = item_features(split.train, "text", embedder=Embedder(), texts=[""] * (split.train.n_items + 1))
    assert x.shape == (split.train.n_items + 1, 5)


def test_prefix_group_larger_than_k_under_uniform():
    codes = np.zeros((5, 2), np.int64)
    with pytest.raises(DataError, match="share the prefix"):
        resolve_uniform(codes, np.zeros((5, 3)), k=3)


def test_non_unique_ids():
    with pytest.raises(DataError, match="not unique"):
        check_unique(np.array([[1, 2], [1, 2], [0, 1]]))


def test_table_of_another_split(world, tmp_path):
    split, catalog = world
    sids = build_semantic_ids(split.train, SidConfig(levels=2, codebook_size=8, dim=8, collisions="dedup"))
    other = leave_last_out(planted_clusters(n_users=200, n_items=120, n_clusters=4, events_per_user=15, seed=2))
    with pytest.raises(DataError, match="another training split"):
        sids.check_train(other.train)
