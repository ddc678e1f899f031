"""DPO / IPO / S-DPO on any TrainableLogProb: S-DPO with K = 1 is DPO, the policy starts at its reference, alignment
moves probability towards a planted utility, and bad inputs fail with one clear error each."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from recforge.align.dpo import AlignConfig, align, log_prob_models, preference_loss, require_trainable
from recforge.align.pairs import check_same_split, heldout_pairs, model_hard_pairs
from recforge.align.synthetic import planted_utility, utility_pairs
from recforge.data.preferences import build_pairs
from recforge.data.split import leave_last_out
from recforge.errors import ConfigError, DataError
from recforge.models.itemknn import ItemKNN
from recforge.models.sasrec import SASRec, SASRecConfig
from recforge.train.trainer import TrainConfig


@pytest.fixture(scope="module")
def world() -> dict:
    data, utility = planted_utility(n_users=120, n_items=30, length=10, seed=0)
    split = leave_last_out(data)
    cfg = SASRecConfig(dim=16, n_layers=1, n_heads=1, max_len=10, dropout=0.0,
                       train=TrainConfig(epochs=4, batch_size=64, lr=5e-3, patience=0, seed=0))
    model = SASRec(cfg).fit(split.train)
    return {"split": split, "utility": utility, "model": model}


def _expected_utility(model: SASRec, split, utility: np.ndarray) -> float:
    items, offsets = split.train.sequences()
    hist = (items, offsets)
    probs = torch.softmax(model.score_histories(hist)[:, 1:], dim=1).numpy()
    return float((probs * utility[1:]).sum(1).mean())


def test_sdpo_with_one_negative_is_dpo() -> None:
    rho_c, rho_r = torch.randn(64, dtype=torch.float64), torch.randn(64, 1, dtype=torch.float64)
    for beta in (0.05, 0.5, 2.0):
        dpo = preference_loss("dpo", rho_c, rho_r, beta)
        sdpo = preference_loss("sdpo", rho_c, rho_r, beta)
        assert torch.allclose(dpo, sdpo, atol=1e-6, rtol=0)


def test_sdpo_k1_trains_exactly_like_dpo(world: dict) -> None:
    pairs = build_pairs(world["split"], "random", k=1, positions="all", max_history=10, seed=0)
    models = {m: copy.deepcopy(world["model"]) for m in ("dpo", "sdpo")}
    for method, model in models.items():
        align(model, pairs, AlignConfig(method=method, beta=0.5, lr=1e-2, batch_size=64))
    for (name, a), b in zip(models["dpo"].net_.named_parameters(), models["sdpo"].net_.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_policy_starts_at_its_reference(world: dict) -> None:
    pairs = build_pairs(world["split"], "random", k=1, positions="last", max_history=10, seed=1)
    model = copy.deepcopy(world["model"])
    res = align(model, pairs, AlignConfig(method="dpo", beta=0.1, lr=1e-12, batch_size=10_000))
    assert res.history[0]["loss"] == pytest.approx(np.log(2), abs=1e-5)  # rho = 0 before the only step
    assert res.history[0]["reward_margin"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("method", ["dpo", "ipo", "sdpo"])
def test_alignment_moves_mass_to_the_planted_utility(world: dict, method: str) -> None:
    split, utility = world["split"], world["utility"]
    pairs = utility_pairs(split, utility, n_pairs_per_user=6, seed=0)
    model = copy.deepcopy(world["model"])
    before = _expected_utility(model, split, utility)
    res = align(model, pairs, AlignConfig(method=method, beta=0.1, lr=5e-3, epochs=3, batch_size=128))
    after = _expected_utility(model, split, utility)
    assert after > before + 0.05, (before, after)
    assert res.history[-1]["pair_accuracy"] > 0.6
    assert _expected_utility(world["model"], split, utility) == pytest.approx(before)  # the source is untouched


def test_validation_keeps_the_best_epoch(world: dict) -> None:
    pairs = build_pairs(world["split"], "random", k=1, positions="last", max_history=10, seed=2)
    model = copy.deepcopy(world["model"])
    scores = iter([0.5, 0.2, 0.1])  # the reference (epoch 0) is best: nothing may change
    res = align(model, pairs, AlignConfig(epochs=2, lr=1e-2), evaluate_fn=lambda: next(scores))
    assert res.best_epoch == 0
    for a, b in zip(model.net_.parameters(), world["model"].net_.parameters()):
        assert torch.equal(a, b)


def test_model_hard_negatives_are_the_best_unseen_non_targets(world: dict) -> None:
    split, model = world["split"], world["model"]
    base = build_pairs(split, "random", k=1, positions="last", max_history=10, seed=0)
    hard = model_hard_pairs(base, model, k=3, split=split)
    assert hard.k == 3 and hard.sources == ("model-hard",)
    scores = model.score_histories(base.histories())
    seen = split.train.to_csr(binary=True)
    for row in range(0, len(hard), 17):
        mask = scores[row].clone()
        mask[seen[[int(hard.user[row])]].indices] = -torch.inf
        mask[int(hard.chosen[row])] = -torch.inf
        assert set(hard.rejected[row].tolist()) == set(torch.topk(mask, 3).indices.tolist())
        assert int(hard.chosen[row]) not in hard.rejected[row]


def test_heldout_pairs_hold_the_heldout_events(world: dict) -> None:
    split = world["split"]
    pairs = heldout_pairs(split, "test", k=2)
    assert len(pairs) == len(split.test)
    assert set(zip(pairs.user.tolist(), pairs.chosen.tolist())) == set(zip(split.test.user.tolist(),
                                                                          split.test.item.tolist()))


# ------------------------------------------------------------------------------------------------------ bad inputs
def test_bad_configs() -> None:
    with pytest.raises(ConfigError, match="beta must be > 0"):
        AlignConfig(beta=0.0)
    with pytest.raises(ConfigError, match="beta must be > 0"):
        AlignConfig(beta=-1.0)
    with pytest.raises(ConfigError, match="negatives \\(K\\) must be >= 1"):
        AlignConfig(method="sdpo", negatives=0)
    with pytest.raises(ConfigError, match="method"):
        AlignConfig(method="ppo")


def test_more_negatives_than_the_pairs_have(world: dict) -> None:
    pairs = build_pairs(world["split"], "random", k=1, positions="last", seed=0)
    with pytest.raises(ConfigError, match="only K=1"):
        align(copy.deepcopy(world["model"]), pairs, AlignConfig(method="sdpo", negatives=3))


def test_a_model_without_log_prob_names_those_with_one(world: dict) -> None:
    knn = ItemKNN().fit(world["split"].train)
    with pytest.raises(ConfigError, match="has no log_prob.*sasrec.*hstu"):
        require_trainable(knn)
    assert {"sasrec", "hstu", "gru4rec", "bert4rec"} <= set(log_prob_models())


def test_split_hash_mismatch(world: dict) -> None:
    with pytest.raises(DataError, match="another split or catalogue"):
        check_same_split("the reward model", "0123456789abcdef", world["split"])


def test_keep_last_keeps_the_last_epoch(world: dict) -> None:
    pairs = build_pairs(world["split"], "random", k=1, positions="last", max_history=10, seed=2)
    model = copy.deepcopy(world["model"])
    scores = iter([0.5, 0.2, 0.1])
    res = align(model, pairs, AlignConfig(epochs=2, lr=1e-2, keep="last"), evaluate_fn=lambda: next(scores))
    assert res.best_epoch == 2 and [r["epoch"] for r in res.history] == [0, 1, 2]
    assert any(not torch.equal(a, b) for a, b in zip(model.net_.parameters(), world["model"].net_.parameters()))
