"""Recovering rewards: the periodic policies beat a UCB that ignores recovery; the offline plan is feasible."""

import numpy as np
import pytest

from recforge.bandits.build import make_env, make_policy
from recforge.bandits.recovering import RecoveringConfig, plan_periods
from recforge.bandits.simulators import simulate
from recforge.errors import ConfigError


def _mean_reward(policy: str, seed: int, rounds: int = 6000) -> float:
    env = make_env({"name": "recovering", "n_arms": 5, "z_max": 10, "seed": seed})
    return simulate(env, make_policy({"name": policy}, env, seed=seed), rounds).expected.mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_periodic_beats_recovery_ignorant_ucb(seed):
    oracle, online, ucb = (_mean_reward(p, seed) for p in ("periodic", "periodic-ucb", "ucb1"))
    assert oracle > 1.15 * ucb, (oracle, ucb)
    assert online > 1.10 * ucb, (online, ucb)
    assert oracle >= online - 0.01


def test_plan_is_feasible_and_bound_holds():
    env = make_env({"name": "recovering", "n_arms": 6, "z_max": 8, "seed": 5})
    periods, bound = plan_periods(env.curves)
    rate = sum(1.0 / p for p in periods if p > 0)
    assert rate <= 1.0 + 1e-9
    planned = sum(env.curves[k, p - 1] / p for k, p in enumerate(periods) if p > 0)
    assert planned <= bound + 1e-9
    assert _mean_reward("periodic", 5) <= bound + 0.02  # the bound is an upper bound on average reward (plus noise)


def test_idle_time_drives_the_reward():
    env = make_env({"name": "recovering", "n_arms": 2, "z_max": 5, "seed": 0, "noise": "gaussian"})
    first = env.step(None, np.array([[0]]))[1][0]
    again = env.step(None, np.array([[0]]))[1][0]  # pulled right after: idle time 1, depleted
    assert first == pytest.approx(env.mu[0]) and again < first


@pytest.mark.parametrize("kwargs, match", [({"n_arms": 1}, "n_arms"), ({"z_max": 0}, "z_max"), ({"noise": "x"}, "noise")])
def test_recovering_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RecoveringConfig(**kwargs)
