"""SCPR specifics: the budget state, paired branch replays as value targets, config validation."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.cli.crs import train_run
from recforge.conversational.episode import simulate
from recforge.conversational.policies.scpr import RATIO_BUCKETS, RATIO_LOW
from recforge.conversational.scorer import ScorerConfig
from recforge.conversational.state import CRSSetting, DialogueState
from recforge.conversational.train import CRSRunConfig, load_policy, make_policy
from recforge.errors import ConfigError


def _state(world, n_candidates: int, turn: int) -> DialogueState:
    mask = np.zeros(world.n_items, dtype=bool)
    mask[:n_candidates] = True
    return DialogueState(user=0, candidates=mask, turn=turn)


@pytest.mark.parametrize(("n_candidates", "turn", "bucket"), [
    (40, 1, 0),  # 40 candidates, 8 turns x 5 items = 40 slots left: ratio 1 -> ceil(log2 1) = 0
    (41, 1, 1),  # just above what the remaining turns can list
    (5, 8, 0),  # last turn: one list of 5
    (1, 1, RATIO_LOW),  # log2(1/40) = -5.3 -> -5, clipped to the first bucket
    (1500, 8, RATIO_LOW + RATIO_BUCKETS - 1),  # log2(1500/5) = 8.2 -> 9, the last bucket
])
def test_budget_bucket(world, setting, scorer, n_candidates, turn, bucket):
    policy = make_policy("scpr", world, setting, scorer)
    feats = policy.features(_state(world, n_candidates, turn), np.zeros(n_candidates), 0.0)
    assert feats.shape == (policy.n_in,)
    one_hot = feats[:RATIO_BUCKETS]
    assert one_hot.sum() == 1.0
    assert int(np.argmax(one_hot)) + RATIO_LOW == bucket


@pytest.mark.parametrize("history", [False, True])
@pytest.mark.parametrize("ranker", [False, True])
def test_optional_state_parts_match_network_input(world, setting, scorer, history, ranker):
    policy = make_policy({"name": "scpr", "history_features": history, "ranker_features": ranker}, world, setting, scorer)
    state = _state(world, 100, 3)
    state.history = ["ask_reject", "rec_reject"]
    feats = policy.features(state, np.linspace(-1, 1, 100), 0.7)
    assert feats.shape == (policy.n_in,)
    assert policy.n_in == RATIO_BUCKETS + 3 + (3 * setting.max_turns + 16) * history + 2 * ranker


def test_branch_replays_give_paired_targets(world, setting, scorer):
    policy = make_policy({"name": "scpr", "branches": 2}, world, setting, scorer)
    stats = policy.fit(world, 30, seed=0)
    # a replay shares the dialogue's prefix (same target, opening and greedy choices), so nearly every
    # dialogue with an askable turn yields its pairs
    assert 30 <= stats["pairs"] <= 60
    plain = make_policy({"name": "scpr", "branches": 0}, world, setting, scorer).fit(world, 30, seed=0)
    assert plain["pairs"] == 0 and plain["updates"] < stats["updates"]


def test_training_cycles_over_the_valid_pairs(world, setting, scorer):
    n_valid = len(world.pairs("valid")[0])
    stats = make_policy({"name": "scpr", "branches": 0}, world, setting, scorer).fit(world, n_valid + 7, seed=0)
    assert stats["episodes"] == n_valid + 7


@pytest.mark.parametrize(("params", "message"), [({"branches": -1}, "branches"), ({"pair_weight": -0.5}, "pair_weight")])
def test_bad_scpr_configs(world, setting, scorer, params, message):
    with pytest.raises(ConfigError, match=message):
        make_policy({"name": "scpr", **params}, world, setting, scorer)


def test_run_folder_roundtrip_keeps_the_state_layout(world, tmp_path):
    cfg = CRSRunConfig(data="unused", policy={"name": "scpr", "history_features": True, "branches": 1},
                       setting=CRSSetting(max_turns=8, list_size=5),
                       scorer=ScorerConfig(dim=8, epochs=2, batch_size=512), train_episodes=20, eval_episodes=30)
    policy, report, _ = train_run(cfg, tmp_path / "run", dataset=world)
    again, _ = load_policy(tmp_path / "run", dataset=world)
    assert again.n_in == policy.n_in
    assert np.array_equal(simulate(again, world, cfg.setting, episodes=30, seed=cfg.seed).turns, report.turns)
