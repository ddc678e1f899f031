"""Iterative preference alignment on the planted-utility world: the reward (and the planted utility) rise over rounds
towards the known optimum; a coverage constraint holds within tolerance where the unconstrained run breaks it; the
constraint parser and bad inputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from recforge.align.checks import SYNTH_CONFIG
from recforge.align.constrained import (
    BoundConstraint,
    Constraint,
    coverage_gain,
    ild_gain,
    novelty_gain,
    parse_constraint,
)
from recforge.align.dpo import AlignConfig
from recforge.align.ipa import IPAConfig, _contexts, ipa, top_lists
from recforge.align.reward import BradleyTerryRM
from recforge.align.synthetic import planted_utility, utility_pairs
from recforge.data.split import leave_last_out
from recforge.errors import ConfigError, DataError
from recforge.evaluate.beyond import catalog_coverage
from recforge.models.hstu import HSTU, HSTUConfig
from recforge.models.itemknn import ItemKNN
from recforge.models.sasrec import SASRec, SASRecConfig
from recforge.train.trainer import TrainConfig

ROUND = AlignConfig(beta=0.1, lr=5e-3, epochs=2, batch_size=64, keep="last")


@pytest.fixture(scope="module")
def world() -> dict:
    data, utility = planted_utility(n_users=150, n_items=200, length=10, seed=0)
    split = leave_last_out(data)
    cfg = SASRecConfig(dim=16, n_layers=1, n_heads=1, max_len=10, dropout=0.0,
                       train=TrainConfig(epochs=4, batch_size=64, lr=5e-3, patience=0, seed=0))
    model = SASRec(cfg).fit(split.train)
    rm = BradleyTerryRM(SYNTH_CONFIG).fit(utility_pairs(split, utility, 6, seed=0), utility_pairs(split, utility, 2, seed=1))
    return {"split": split, "utility": utility, "model": model, "rm": rm}


def expected_utility(model, split, utility: np.ndarray) -> float:
    """Mean over training users of sum_i p(i | history) u(i): 1 at the optimum (all mass on the best item)."""
    probs = torch.softmax(model.score_histories(split.train.sequences())[:, 1:], dim=1).numpy()
    return float((probs * utility[1:]).sum(1).mean())


def coverage(model, split) -> float:
    train = split.train
    ctx = _contexts(train, train.active_users(), 50)
    return catalog_coverage(top_lists(model, ctx, train.to_csr(binary=True), 10), train.n_items)


def _coverage_constraint(split) -> BoundConstraint:
    n = split.train.n_items
    return BoundConstraint(parse_constraint("coverage@10>=sft"), lambda lists: catalog_coverage(lists, n),
                           coverage_gain(n))


def test_ipa_raises_the_reward_towards_the_planted_optimum(world: dict) -> None:
    split, utility = world["split"], world["utility"]
    model = copy.deepcopy(world["model"])
    before = expected_utility(model, split, utility)
    res = ipa(model, split.train, world["rm"], IPAConfig(rounds=3, candidates=10, keep="last", align=ROUND))
    rewards = [row["reward@10"] for row in res.history]
    assert rewards == sorted(rewards) and rewards[-1] > rewards[0] + 0.1, rewards  # up every round
    kls = [row["kl"] for row in res.history]
    assert kls[0] == pytest.approx(0.0, abs=1e-6) and kls[-1] > kls[1] > 0  # drifting from the reference
    after = expected_utility(model, split, utility)
    assert after > before + 0.1, (before, after)  # towards the known optimum (1.0)
    assert res.best_round == 3 and all(row["chosen_reward"] > 0.8 for row in res.history[1:])
    assert expected_utility(world["model"], split, utility) == pytest.approx(before)  # the source is untouched


def test_ipa_keeps_the_validation_optimum(world: dict) -> None:
    model = copy.deepcopy(world["model"])
    scores = iter([0.3, 0.5, 0.1])  # round 1 is best on validation
    res = ipa(model, world["split"].train, world["rm"], IPAConfig(rounds=2, keep="best", align=ROUND),
              evaluate_fn=lambda: next(scores))
    assert res.best_round == 1 and [r["valid"] for r in res.history] == [0.3, 0.5, 0.1]
    replay = copy.deepcopy(world["model"])
    ipa(replay, world["split"].train, world["rm"], IPAConfig(rounds=1, keep="last", align=ROUND))
    for a, b in zip(model.net_.parameters(), replay.net_.parameters()):  # the state of round 1, seeded
        assert torch.allclose(a, b)


def test_coverage_constraint_holds_where_the_unconstrained_run_breaks_it(world: dict) -> None:
    split, utility = world["split"], world["utility"]
    cfg = IPAConfig(rounds=6, candidates=10, keep="reward", tolerance=0.02, align=ROUND)
    sft = coverage(world["model"], split)
    free = copy.deepcopy(world["model"])
    ipa(free, split.train, world["rm"], cfg)
    held = copy.deepcopy(world["model"])
    bound = _coverage_constraint(split)
    res = ipa(held, split.train, world["rm"], cfg, constraints=[bound])
    assert bound.target == pytest.approx(sft)
    assert coverage(free, split) < sft * 0.95  # the unconstrained run violates it
    assert coverage(held, split) >= sft * 0.98  # the constrained one holds within tolerance
    assert res.best_round > 0 and expected_utility(held, split, utility) > expected_utility(world["model"], split,
                                                                                            utility)
    assert max(r["multipliers"]["coverage@10>=sft"] for r in res.history[1:]) > 0  # dual ascent engaged
    assert not all(r["feasible"] for r in res.history)


def test_ipa_works_on_hstu(world: dict) -> None:
    split, utility = world["split"], world["utility"]
    model = HSTU(HSTUConfig(dim=16, n_layers=1, n_heads=1, max_len=10, dropout=0.0,
                            train=TrainConfig(epochs=3, batch_size=64, lr=5e-3, patience=0, seed=0))).fit(split.train)
    before = expected_utility(model, split, utility)
    res = ipa(model, split.train, world["rm"], IPAConfig(rounds=3, keep="last", align=ROUND))
    assert res.history[-1]["reward@10"] > res.history[0]["reward@10"] + 0.05
    assert expected_utility(model, split, utility) > before + 0.05


def test_constraint_parser_and_gains() -> None:
    assert parse_constraint("coverage@10>=sft") == Constraint("coverage", 10, ">=", None)
    assert parse_constraint(" novelty@5 <= 9.5 ") == Constraint("novelty", 5, "<=", 9.5)
    for bad in ("coverage>=sft", "recall@10>=sft", "coverage@10=>sft", "ild@10>=high"):
        with pytest.raises(ConfigError, match="constraint"):
            parse_constraint(bad)
    c = Constraint("coverage", 10, ">=")
    assert c.violation(0.4, 0.5) == pytest.approx(0.2) and Constraint("novelty", 10, "<=").violation(0.6, 0.5) == \
        pytest.approx(0.2)
    lists = np.array([[1, 2], [1, 3]])
    assert coverage_gain(4)(np.array([[1, 4]]), lists).tolist() == [[1 / 3, 1.0]]
    nov = novelty_gain(np.array([0, 8, 4, 2, 2]))(np.array([[1, 3]]), lists)
    assert nov[0, 0] < nov[0, 1] == pytest.approx(1.0)
    feats = np.array([[0, 0], [1, 0], [1, 0], [0, 1]], float)
    assert ild_gain(feats)(np.array([[2, 3]]), np.array([[1, 2]])).tolist() == [[0.0, 1.0]]


def test_ipa_bad_inputs(world: dict) -> None:
    with pytest.raises(ConfigError, match="candidates"):
        IPAConfig(candidates=2, align=AlignConfig(negatives=2))
    with pytest.raises(ConfigError, match="rounds"):
        IPAConfig(rounds=0)
    with pytest.raises(ConfigError, match="evaluate_fn"):
        ipa(copy.deepcopy(world["model"]), world["split"].train, world["rm"], IPAConfig(keep="best"))
    broken = copy.deepcopy(world["rm"])
    broken.temperature = float("nan")  # every logit NaN
    with pytest.raises(DataError, match="non-finite"):
        ipa(copy.deepcopy(world["model"]), world["split"].train, broken, IPAConfig(keep="last", align=ROUND))
    knn = ItemKNN().fit(world["split"].train)
    with pytest.raises(ConfigError, match="sasrec"):
        ipa(knn, world["split"].train, world["rm"], IPAConfig(keep="last"))
