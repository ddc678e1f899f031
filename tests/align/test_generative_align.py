"""The generative retriever over semantic IDs (tiger_decoder) plugs into alignment through the same protocol as the
sequential models: it is a TrainableLogProb listed among the alignable models, its log-likelihood over the catalogue
is normalised, DPO on planted-utility pairs raises the chosen items' log-ratio, and IPA runs on it (exact decoding)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from recforge.align.checks import SYNTH_CONFIG
from recforge.align.dpo import AlignConfig, _log_probs, align, log_prob_models
from recforge.align.ipa import IPAConfig, ipa
from recforge.align.reward import BradleyTerryRM
from recforge.align.synthetic import planted_utility, utility_pairs
from recforge.data.split import leave_last_out
from recforge.models.generative.semantic_ids import SidConfig
from recforge.models.generative.tiger_decoder import TigerDecoder, TigerDecoderConfig
from recforge.protocols import TrainableLogProb
from recforge.train.trainer import TrainConfig


@pytest.fixture(scope="module")
def world() -> dict:
    data, utility = planted_utility(n_users=100, n_items=30, length=10, seed=0)
    split = leave_last_out(data)
    cfg = TigerDecoderConfig(sid_config=SidConfig(levels=2, codebook_size=8, dim=16, collisions="dedup"), dim=32,
                             n_layers=1, n_heads=2, max_items=8, decoding="exact", dropout=0.0,
                             train=TrainConfig(epochs=3, batch_size=64, lr=1e-2, threads=1))
    return {"split": split, "utility": utility, "model": TigerDecoder(cfg).fit(split.train)}


def test_tiger_decoder_declares_the_alignment_protocol(world: dict) -> None:
    model = world["model"]
    assert isinstance(model, TrainableLogProb) and "tiger_decoder" in log_prob_models()
    every = np.broadcast_to(np.arange(1, model.n_items + 1), (5, model.n_items)).copy()
    lp = model.differentiable_log_prob([model.history(u) for u in range(1, 6)], every)
    assert torch.allclose(lp.detach().exp().sum(1), torch.ones(5), atol=1e-4)  # a distribution over the catalogue


def test_dpo_moves_tiger_decoder_towards_the_chosen_items(world: dict) -> None:
    pairs = utility_pairs(world["split"], world["utility"], n_pairs_per_user=2, seed=0)
    pairs = pairs.select(np.diff(pairs.history_offsets) > 0)  # a generative retriever decodes from >= 1 item
    model = copy.deepcopy(world["model"])
    before = _log_probs(model, pairs, 1, 256)
    res = align(model, pairs, AlignConfig(method="dpo", beta=0.1, lr=5e-3, epochs=2, batch_size=64))
    after = _log_probs(model, pairs, 1, 256)
    margin = ((after[:, 0] - before[:, 0]) - (after[:, 1] - before[:, 1])).mean()
    assert margin > 0.5, float(margin)  # log pi(c)/pi_ref(c) - log pi(r)/pi_ref(r) grew
    assert res.history[-1]["pair_accuracy"] > 0.6


def test_ipa_runs_on_tiger_decoder(world: dict) -> None:
    split, utility = world["split"], world["utility"]
    rm = BradleyTerryRM(SYNTH_CONFIG).fit(utility_pairs(split, utility, 6, seed=0), utility_pairs(split, utility, 2,
                                                                                                  seed=1))
    model = copy.deepcopy(world["model"])
    res = ipa(model, split.train, rm, IPAConfig(rounds=2, candidates=6, keep="last", kl_contexts=32,
                                                align=AlignConfig(beta=0.1, lr=5e-3, epochs=1, batch_size=64)))
    assert res.history[-1]["reward@10"] > res.history[0]["reward@10"]
    assert res.history[-1]["kl"] > 0
