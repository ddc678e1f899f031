"""rlmrec: the alignment objectives pull CF embeddings toward planted text clusters, the post-alignment's mix is
chosen on validation, save/load keeps the scores, and bad inputs are clear errors; the LightGCN backbone finds the
planted clusters better than BPR-MF on a sparse log, its propagated vectors are aligned, scored and saved, and it
passes the recommender contract."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
import pytest
import torch

from recforge.data.split import Split, leave_last_out
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError
from recforge.evaluate.evaluator import evaluate
from recforge.models.base import load_model
from recforge.models.rlmrec import MIX_GRID, RLMRec
from recforge.models.validation import validation_metric
from recforge.protocols import ItemSide
from recforge.registry import configured
from recforge.testing import check_recommender, contract_config

TRAIN = {"epochs": 30, "batch_size": 256, "lr": 0.02, "clip": 0.0, "patience": 0, "threads": 1}


@cache
def _world() -> tuple[Split, np.ndarray, np.ndarray]:
    """A sparse planted log (6 events per user: too few for CF alone to find the item clusters) and text vectors
    whose directions carry the planted item clusters (cluster centroid + noise). -> (split, vectors (n+1, 32),
    cluster of each dense item (n,))."""
    split = leave_last_out(planted_clusters(n_users=300, n_items=300, n_clusters=6, events_per_user=6,
                                            p_in_cluster=0.8, seed=3))
    number = np.array([int(str(i)[1:]) for i in split.train.item_vocab.ids])
    groups = split.train.meta["item_cluster"][number]
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(6, 32))[groups] + 0.5 * rng.normal(size=(len(groups), 32))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    return split, np.vstack([np.zeros((1, 32)), vec]).astype(np.float32), groups


def _fit(aux: str, weight: float = 0.1, valid: bool = False, **kw) -> RLMRec:
    split, vectors, _ = _world()
    kw.setdefault("train", TRAIN)
    model = RLMRec(aux=aux, aux_weight=weight, factors=16, embedder={"name": "hashing"}, **kw)
    model.bind_items(ItemSide(item_ids=list(split.train.item_vocab.ids), vectors=vectors))
    return model.fit(split.train, split.valid if valid else None)


def _purity(model: RLMRec) -> float:
    """Share of each item's 10 nearest CF neighbours (cosine) in its planted text cluster (chance ~1/6)."""
    groups = _world()[2]
    q = torch.nn.functional.normalize(model.item_[1:], dim=1)
    sims = q @ q.T
    sims.fill_diagonal_(-2.0)
    return float((groups[sims.topk(10, dim=1).indices.numpy()] == groups[:, None]).mean())


@cache
def _fitted(aux: str, backbone: str = "mf") -> RLMRec:
    return _fit(aux, backbone=backbone)


def _ndcg(model: RLMRec) -> float:
    return evaluate(model, _world()[0], metrics=("ndcg@10",), n_boot=0, progress=False).metrics["ndcg@10"]["mean"]


@pytest.mark.parametrize("aux", ["contrastive", "generative", "ilm"])
def test_alignment_pulls_cf_embeddings_toward_the_text_clusters(aux):
    split = _world()[0]
    plain, aligned = _fitted("none"), _fitted(aux)
    assert _purity(aligned) > _purity(plain) + 0.2  # measured: none 0.42; aligned 0.77-0.79
    ndcg = {m.config.aux: evaluate(m, split, metrics=("ndcg@10",), n_boot=0, progress=False).metrics["ndcg@10"]["mean"]
            for m in (plain, aligned)}
    assert ndcg[aux] > 1.2 * ndcg["none"]  # measured: none 0.104; aligned 0.150-0.202


def test_zero_weight_is_plain_bpr():
    plain, zero = _fitted("none"), _fit("contrastive", weight=0.0)
    assert torch.equal(plain.item_, zero.item_)


def test_post_alignment_mix_is_chosen_on_validation_and_saved(tmp_path):
    split = _world()[0]
    model = _fit("none", user_align="post", valid=True, post_epochs=5)
    assert model.mix_ in MIX_GRID
    chosen = validation_metric(model, split.train, split.valid, "ndcg@10")
    cf = _fit("none", valid=True)
    assert chosen >= validation_metric(cf, split.train, split.valid, "ndcg@10")  # the grid holds mix 0
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    users = np.arange(1, split.train.n_users + 1)
    assert loaded.mix_ == model.mix_ and torch.equal(loaded.score(users), model.score(users))
    assert _fit("none", user_align="post", post_epochs=2).mix_ == 0.0  # no validation data: the CF vectors


def test_save_load_roundtrip(tmp_path):
    model = _fitted("ilm")
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    users = np.arange(1, 40)
    assert loaded.config == model.config and torch.equal(loaded.score(users), model.score(users))


@pytest.mark.parametrize("fields, message", [
    ({"aux": "clip"}, "aux"),
    ({"aux_weight": -0.1}, "aux_weight"),
    ({"temperature": 0.0}, "temperature"),
    ({"aux_batch": 1}, "aux_batch"),
    ({"user_align": "pre"}, "user_align"),
    ({"embedder": {}}, "embedder"),
    ({"backbone": "gcn"}, "backbone"),
    ({"backbone": "lightgcn", "layers": 0}, "layers"),
    ({"layers": -1}, "layers"),
])
def test_bad_config_is_a_config_error(fields, message):
    with pytest.raises(ConfigError, match=message):
        RLMRec(**fields)


def test_text_must_be_bound_when_the_objective_reads_it():
    split, vectors, _ = _world()
    with pytest.raises(ConfigError, match="bind_items"):
        RLMRec(aux="contrastive", train=TRAIN).fit(split.train)
    with pytest.raises(ConfigError, match="needs item text vectors"):
        RLMRec(aux="generative").bind_items(ItemSide(item_ids=list(split.train.item_vocab.ids)))
    model = RLMRec(aux="ilm", train=TRAIN)
    model.bind_items(ItemSide(item_ids=list(split.train.item_vocab.ids)[:-1], vectors=vectors[:-1]))
    with pytest.raises(ConfigError, match="items of the training log"):
        model.fit(split.train)
    assert RLMRec(aux="none").item_side_spec().embedder is None  # plain BPR reads no text
    RLMRec(aux="none", factors=8, train={**TRAIN, "epochs": 1}).fit(split.train)


def test_lightgcn_finds_the_planted_clusters_better_than_mf():
    """On 6 events per user, propagating over the graph reaches 2-hop neighbours that BPR-MF only sees through
    its factors: the item vectors cluster better and test NDCG@10 is higher (plain LightGCN: aux none)."""
    mf, gcn = _fitted("none"), _fitted("none", "lightgcn")
    assert _purity(gcn) > _purity(mf) + 0.2  # measured: mf 0.42, lightgcn 0.72
    assert _ndcg(gcn) > 1.5 * _ndcg(mf)  # measured: mf 0.104, lightgcn 0.223
    assert _ndcg(gcn) > 5 * 10 / 300  # chance NDCG@10 over 300 items is below 10 / 300
    assert not gcn.bias_.any()  # LightGCN scores e_u . e_i


@pytest.mark.parametrize("aux", ["contrastive", "generative", "ilm"])
def test_alignment_acts_on_the_propagated_vectors(aux):
    plain, aligned = _fitted("none", "lightgcn"), _fitted(aux, "lightgcn")
    assert _purity(aligned) > _purity(plain) + 0.05  # measured: none 0.72; aligned 0.81-0.85


def test_lightgcn_validation_scores_the_propagated_vectors():
    """Early stopping measured the same vectors that scoring uses after the fit (best epoch restored, propagated
    once): the recorded best validation NDCG@10 is the final model's."""
    split = _world()[0]
    model = _fit("contrastive", backbone="lightgcn", valid=True, train={**TRAIN, "epochs": 8, "patience": 3})
    assert model.train_result_.best_metric == pytest.approx(validation_metric(model, split.train, split.valid,
                                                                              "ndcg@10"), abs=1e-12)


def test_lightgcn_save_load_roundtrip(tmp_path):
    model = _fitted("generative", "lightgcn")
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    users = np.arange(1, _world()[0].train.n_users + 1)
    assert loaded.config.backbone == "lightgcn" and loaded.config == model.config
    assert torch.equal(loaded.score(users), model.score(users))
    assert torch.equal(loaded.item_embeddings(), model.item_embeddings())


def test_lightgcn_builds_from_its_registry_spelling():
    cls, config = configured("model", {"name": "rlmrec", "backbone": "lightgcn", "layers": 2, "aux": "none"})
    assert cls is RLMRec and (config.backbone, config.layers) == ("lightgcn", 2)
    assert RLMRec().config.backbone == "mf"  # the default keeps BPR-MF
    with pytest.raises(ConfigError, match="model.layers"):
        configured("model", {"name": "rlmrec", "backbone": "lightgcn", "layers": "two"}, prefix="model.")


def test_lightgcn_passes_the_recommender_contract():
    config = replace(contract_config(RLMRec), backbone="lightgcn", layers=2)
    check_recommender(RLMRec, config)
