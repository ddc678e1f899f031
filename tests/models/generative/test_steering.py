"""Preference steering (Mender-style) on planted clusters: items carry their cluster as a genre, the model is trained
with the target item's genre as a randomly dropped preference token, and asking for a genre moves the top-10 towards
it; unknown values and unsteerable models are one clear error each, and the preference survives save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.data.catalog import ItemCatalog
from recforge.data.split import leave_last_out
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError, DataError
from recforge.models.base import load_model
from recforge.models.generative.semantic_ids import SemanticIds, SidConfig, build_semantic_ids
from recforge.models.generative.tiger import Tiger, TigerConfig
from recforge.models.generative.tiger_decoder import TigerDecoder, TigerDecoderConfig
from recforge.protocols import Steerable
from recforge.train.trainer import TrainConfig

SID = SidConfig(features="cf", levels=2, codebook_size=16, dim=16, collisions="dedup")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    data = planted_clusters(n_users=240, n_items=100, n_clusters=4, events_per_user=14, p_in_cluster=0.9, seed=5)
    split = leave_last_out(data)
    ids = split.train.item_vocab.ids
    cluster = {f"i{k}": int(c) for k, c in enumerate(data.meta["item_cluster"])}
    catalog = ItemCatalog.from_records(ids, attributes=[[f"g{cluster[i]}"] for i in ids], group="genre")
    folder = tmp_path_factory.mktemp("sid")
    build_semantic_ids(split.train, SID, catalog=catalog).save(folder)
    genre_of = np.array([-1] + [cluster[i] for i in ids])
    return split, str(folder), genre_of


def _share(model, users, genre_of, genre, steer):
    if steer:
        with model.steer([f"genre=g{genre}"]):
            items, _ = model.topk(users, 10)
    else:
        items, _ = model.topk(users, 10)
    return float((genre_of[items] == genre).mean())


@pytest.mark.parametrize("cls,cfg_cls,epochs,lr,min_lift,mean_lift", [
    (TigerDecoder, TigerDecoderConfig, 6, 1e-2, 0.3, 0.5), (Tiger, TigerConfig, 5, 1e-2, 0.5, 0.6)])
def test_steering_moves_the_top10_towards_the_preferred_genre(world, cls, cfg_cls, epochs, lr, min_lift, mean_lift,
                                                              tmp_path):
    split, sid, genre_of = world
    cfg = cfg_cls(sid=sid, dim=32, n_layers=1, n_heads=2, max_items=8, beam=20, dropout=0.0, preference="genre",
                  train=TrainConfig(epochs=epochs, batch_size=64, lr=lr, threads=1))
    model = cls(cfg).fit(split.train)
    assert isinstance(model, Steerable)
    assert model.preference_values() == ["genre=g0", "genre=g1", "genre=g2", "genre=g3"]
    users = np.arange(1, 121)
    lifts = [_share(model, users, genre_of, g, True) - _share(model, users, genre_of, g, False) for g in range(4)]
    assert min(lifts) >= min_lift and np.mean(lifts) >= mean_lift, lifts
    # a bare value works when unambiguous; the steering does not outlive its block
    before = model.score(users[:5]).clone()
    with model.steer(["g1"]):
        steered = model.score(users[:5]).clone()
    assert not torch.equal(before, steered) and torch.equal(model.score(users[:5]), before)
    with pytest.raises(ConfigError, match="unknown preference value 'genre=Western'"), model.steer(["genre=Western"]):
        pass
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    with back.steer(["genre=g2"]), model.steer(["genre=g2"]):
        assert torch.allclose(back.score(users[:5]), model.score(users[:5]))


def test_steering_needs_a_trained_preference_and_a_table_with_attributes(world, tmp_path):
    split, sid, _ = world
    plain = TigerDecoder(TigerDecoderConfig(sid=sid, dim=16, n_layers=1, n_heads=1, max_items=4,
                                            train=TrainConfig(epochs=1, threads=1))).fit(split.train)
    with pytest.raises(ConfigError, match="trained without preference"), plain.steer(["genre=g1"]):
        pass
    with pytest.raises(DataError, match="not among the SID table's attribute groups"):
        TigerDecoder(TigerDecoderConfig(sid=sid, preference="mood", train=TrainConfig(epochs=1))).fit(split.train)
    build_semantic_ids(split.train, SID).save(tmp_path / "bare")  # no catalogue: no attributes in the table
    assert SemanticIds.load(tmp_path / "bare").attribute_names is None
    with pytest.raises(DataError, match="needs item attributes"):
        TigerDecoder(TigerDecoderConfig(sid=str(tmp_path / "bare"), preference="genre",
                                        train=TrainConfig(epochs=1))).fit(split.train)
