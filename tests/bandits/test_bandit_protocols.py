"""Declared capabilities: every registered policy, estimator and environment satisfies its protocol in
``recforge.protocols``; registry keys equal class names; choices are Literal-typed and checked however a config is built."""

import numpy as np
import pytest

from recforge import protocols
from recforge.bandits.build import make_env, make_policy
from recforge.bandits.env import ActionSpace
from recforge.bandits.estimators import make_estimator
from recforge.bandits.recovering import RecoveringConfig, RecoveryCurves
from recforge.bandits.simulators import ContextualConfig, SlateConfig
from recforge.errors import ConfigError
from recforge.registry import ENVIRONMENTS, ESTIMATORS, POLICIES, resolve

ENV_FOR = {"periodic": "recovering", "periodic-ucb": "recovering", "gru-slate-ts": "user-slate", "linucb": "contextual",
           "linear-ts": "contextual", "logistic-ts": "contextual"}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policies_are_policies(name):
    assert resolve("policy", name).name == name
    env = make_env({"name": ENV_FOR.get(name, "slate")})
    policy = make_policy({"name": name}, env)
    assert isinstance(policy, protocols.Policy)
    actions = policy.select(env.contexts(1), 1)
    assert actions.shape == (1, env.len_list) and actions.min() >= 0 and actions.max() < env.n_actions


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimators_are_estimators(name):
    assert resolve("estimator", name).name == name
    assert isinstance(make_estimator({"name": name}), protocols.Estimator)


@pytest.mark.parametrize("name", sorted(ENVIRONMENTS))
def test_environments_are_environments(name):
    env = make_env({"name": name})
    assert isinstance(env, protocols.Environment)
    x = env.contexts(4 if not env.sequential else 1)
    n = 1 if env.sequential else 4
    assert x is None if env.dim == 0 else x.shape == (n, env.dim)
    actions = np.tile(np.arange(env.len_list), (n, 1))
    rewards, expected, best = env.step(x, actions)
    assert rewards.shape == expected.shape == (n, env.len_list) and best.shape == (n,)
    if not env.sequential:  # recovering arms: "best" bounds the long-run average, one fresh pull may beat it
        assert np.all(best >= expected.sum(axis=1) - 1e-12)
    assert isinstance(env, RecoveryCurves) == (name == "recovering")  # declared, never guessed


def test_a_policy_sized_by_a_bare_action_space():
    policy = make_policy({"name": "linucb"}, ActionSpace(n_actions=6, dim=3, len_list=2))
    assert policy.select(np.ones((5, 3)), 5).shape == (5, 2)
    with pytest.raises(ConfigError, match="declares its recovery curves"):
        make_policy({"name": "periodic-ucb"}, ActionSpace(n_actions=6, dim=0, len_list=1))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ContextualConfig(reward="poisson"), r"reward: expected one of \['linear', 'bernoulli'\]"),
        (lambda: SlateConfig(click_model="dbn"), "click_model: expected one of"),
        (lambda: RecoveringConfig(noise="laplace"), "noise: expected one of"),
        (lambda: make_env({"name": "recovering", "noise": "laplace"}), "noise: expected one of"),
        (lambda: make_policy({"name": "gru-slate-ts", "sample_per": "user"}, make_env({"name": "user-slate"})),
         "sample_per: expected one of"),
        (lambda: make_env({"n_actions": 3}), "name is required"),
    ],
)
def test_choices_are_checked(build, match):
    with pytest.raises(ConfigError, match=match):
        build()
