"""Replay of learning policies on uniformly random logs matches their online performance."""

import numpy as np
import pytest

from recforge.bandits.build import make_env, make_policy
from recforge.bandits.replay import replay
from recforge.bandits.simulators import ContextualBanditEnv, ContextualConfig, simulate
from recforge.data.feedback import LoggedFeedback
from recforge.errors import ConfigError

CFG = ContextualConfig(n_actions=5, dim=1, seed=3)  # Bernoulli 5-armed bandit


def test_replay_of_uniform_is_the_mean_click():
    env = ContextualBanditEnv(CFG)
    logs = env.log(20_000, lambda x: np.full((len(x), 5), 0.2))
    res = replay(make_policy({"name": "uniform"}, env, seed=0), logs)
    assert res.ci_low <= env.policy_value(lambda x: np.full((len(x), 5), 0.2)) <= res.ci_high
    assert 0.15 * 20_000 < res.n_matched < 0.25 * 20_000


def test_replay_of_ucb1_matches_its_online_reward():
    env = ContextualBanditEnv(CFG)
    logs = env.log(25_000, lambda x: np.full((len(x), 5), 0.2))
    res = replay(make_policy({"name": "ucb1"}, env, seed=0), logs)
    online = np.mean([simulate(ContextualBanditEnv(CFG), make_policy({"name": "ucb1"}, env, seed=s), res.n_matched).expected.mean()
                      for s in range(2)])
    assert res.ci_low - 0.01 <= online <= res.ci_high + 0.01
    uniform_value = env.policy_value(lambda x: np.full((len(x), 5), 0.2))
    assert res.value > uniform_value + 0.05  # learning shows up in replay


def test_replay_slates_match_on_the_logged_slot():
    env = make_env({"name": "slate", "n_items": 6, "len_list": 3})
    rng = np.random.default_rng(0)
    n = 3000
    logs = LoggedFeedback(action=rng.integers(0, 6, n), reward=(rng.random(n) < 0.2).astype(float), pscore=np.full(n, 1 / 6),
                          n_actions=6, position=rng.integers(0, 3, n), len_list=3)
    res = replay(make_policy({"name": "bernoulli-ts"}, env, seed=0), logs, batch_size=10)
    assert 0.1 * n < res.n_matched < 0.25 * n


@pytest.mark.parametrize(
    "pscore, policy, kwargs, match",
    [
        (np.full(100, 0.5), "uniform", {}, "uniformly random logs"),
        (np.full(100, 0.2), "uniform", {"batch_size": 0}, "batch_size"),
        (np.full(100, 0.2), "linucb", {}, "needs contexts"),
    ],
)
def test_replay_errors(pscore, policy, kwargs, match):
    env = ContextualBanditEnv(CFG)
    logs = LoggedFeedback(action=np.zeros(100, dtype=int), reward=np.zeros(100), pscore=pscore, n_actions=5)
    with pytest.raises(ConfigError, match=match):
        replay(make_policy({"name": policy}, env), logs, **kwargs)
