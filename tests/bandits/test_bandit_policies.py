"""Policies on simulators: UCB1 regret grows sublinearly, learners beat uniform, slates are valid, config errors."""

import numpy as np
import pytest

from recforge.bandits.build import make_env, make_policy
from recforge.bandits.policies.base import top_k
from recforge.bandits.policies.mab import BernoulliTS, EpsilonGreedyConfig, UCB1Config
from recforge.bandits.simulators import simulate
from recforge.errors import ConfigError


def _regret(policy: str, rounds: int, seed: int, env_params: dict, batch_size: int = 1, **params) -> float:
    env = make_env({"name": "contextual", **env_params})
    return float(simulate(env, make_policy({"name": policy, **params}, env, seed=seed), rounds, batch_size=batch_size).cumulative_regret[-1])


MAB = {"n_actions": 5, "dim": 1, "seed": 3}  # dim=1: the context is the constant 1, a Bernoulli multi-armed bandit


def test_ucb1_regret_is_sublinear():
    # average over seeds; linear regret would grow 8x from 2k to 16k rounds, logarithmic regret far less
    short = np.mean([_regret("ucb1", 2000, s, {**MAB, "seed": s}) for s in range(3)])
    long = np.mean([_regret("ucb1", 16000, s, {**MAB, "seed": s}) for s in range(3)])
    assert long / short < 3.0, (short, long)
    assert long / 16000 < 0.5 * short / 2000  # per-round regret at least halves


@pytest.mark.parametrize("policy", ["epsilon-greedy", "ucb1", "bernoulli-ts", "gaussian-ts"])
def test_mab_policies_beat_uniform(policy):
    uniform = _regret("uniform", 4000, 0, MAB)
    assert _regret(policy, 4000, 0, MAB) < 0.5 * uniform


@pytest.mark.parametrize("policy, reward", [("linucb", "linear"), ("linear-ts", "linear"), ("logistic-ts", "bernoulli")])
def test_contextual_policies_learn(policy, reward):
    env_params = {"n_actions": 10, "dim": 5, "reward": reward, "seed": 2}
    env = make_env({"name": "contextual", **env_params})
    res = simulate(env, make_policy({"name": policy}, env, seed=0), 6000, batch_size=50)
    uniform = simulate(make_env({"name": "contextual", **env_params}), make_policy({"name": "uniform"}, env), 6000, batch_size=50)
    assert res.cumulative_regret[-1] < 0.5 * uniform.cumulative_regret[-1]
    per_round = np.diff(res.cumulative_regret, prepend=0.0)
    assert per_round[-2000:].mean() < 0.5 * per_round[:1000].mean()  # it keeps learning


@pytest.mark.parametrize("policy", ["uniform", "epsilon-greedy", "ucb1", "bernoulli-ts", "gaussian-ts", "in-slate-ts"])
def test_slate_policies_return_distinct_items(policy):
    env = make_env({"name": "slate", "n_items": 8, "len_list": 3})
    pol = make_policy({"name": policy}, env, seed=1)
    res = simulate(env, pol, 3000, batch_size=10)
    slates = pol.select(None, 200)
    assert slates.shape == (200, 3)
    assert all(len(set(row)) == 3 for row in slates.tolist())
    if policy != "uniform":
        assert res.expected[-500:].mean() > res.expected[:200].mean()


def test_bts_action_dist_sums_to_one_per_slot():
    pol = BernoulliTS(6, len_list=3, prior_alpha=np.array([1, 2, 3, 4, 5, 60.0]), prior_beta=np.full(6, 100.0), seed=0)
    dist = pol.action_dist(n_sim=20_000)
    np.testing.assert_allclose(dist.sum(axis=0), 1.0)
    assert dist[5, 0] > 0.9  # the arm with by far the highest mean takes the first slot


def test_epsilon_greedy_action_dist_matches_its_choices():
    env = make_env({"name": "contextual", **MAB})
    pol = make_policy({"name": "epsilon-greedy", "epsilon": 0.3}, env, seed=0)
    simulate(env, pol, 500)
    dist = pol.action_dist()
    freq = np.bincount(pol.select(None, 20_000)[:, 0], minlength=5) / 20_000
    np.testing.assert_allclose(dist.sum(), 1.0)
    np.testing.assert_allclose(freq, dist, atol=0.015)


def test_top_k_matches_full_sort():
    scores = np.random.default_rng(0).random((50, 20))
    np.testing.assert_array_equal(top_k(scores, 4), np.argsort(-scores, axis=1)[:, :4])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: EpsilonGreedyConfig(epsilon=1.5), "epsilon"),
        (lambda: UCB1Config(c=-1.0), "c must be"),
        (lambda: make_policy({"name": "ucb1", "alpha": 1.0}, make_env({"name": "contextual", **MAB})), "unknown config key"),
        (lambda: make_policy({"name": "linucb"}, make_env({"name": "slate"})), "needs contexts"),
        (lambda: make_policy({"name": "linucb", "reg": 0.0}, make_env({"name": "contextual", **MAB})), "reg must be > 0"),
        (lambda: make_policy({"name": "periodic"}, make_env({"name": "contextual", **MAB})), "needs an environment that declares its recovery curves"),
        (lambda: make_policy({"name": "thompson"}, make_env({"name": "contextual", **MAB})), "unknown policy 'thompson'"),
        (lambda: make_env({"name": "contextual", "n_actions": 1}), "n_actions"),
        (lambda: make_env({"name": "contextual", "reward": "poisson"}), "reward"),
        (lambda: make_env({"name": "bandit-world"}), "unknown environment"),
        (lambda: BernoulliTS(3, prior_alpha=np.ones(2)), "prior_alpha"),
        (lambda: BernoulliTS(3, len_list=4), "len_list"),
        (lambda: simulate(make_env({"name": "contextual", **MAB}), make_policy({"name": "ucb1"}, make_env({"name": "contextual", **MAB})), 0), "n_rounds"),
    ],
)
def test_policy_config_errors(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
