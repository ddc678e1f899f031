"""Every registered policy survives save/load (safetensors + JSON) with identical state and decisions."""

import numpy as np
import pytest

from recforge.bandits.build import make_env, make_policy
from recforge.bandits.policies.base import load_policy
from recforge.bandits.simulators import simulate
from recforge.errors import DataError
from recforge.registry import POLICIES

ENV_FOR = {
    "linucb": ("contextual", {"reward": "linear"}),
    "linear-ts": ("contextual", {"reward": "linear"}),
    "logistic-ts": ("contextual", {}),
    "periodic": ("recovering", {}),
    "periodic-ucb": ("recovering", {}),
    "in-slate-ts": ("slate", {}),
    "gru-slate-ts": ("user-slate", {}),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_save_load_roundtrip(tmp_path, name):
    env_name, params = ENV_FOR.get(name, ("slate", {}))
    env = make_env(env_name, params)
    policy = make_policy(name, env, seed=1)
    simulate(env, policy, 300, batch_size=1 if env_name == "recovering" else 20)
    loaded = load_policy(policy.save(tmp_path / name), seed=7)
    assert type(loaded) is type(policy) and loaded.config == policy.config and loaded.t == policy.t == 300
    for attr in policy.state_arrays:
        np.testing.assert_array_equal(getattr(loaded, attr), getattr(policy, attr))
    policy.rng, loaded.rng = np.random.default_rng(5), np.random.default_rng(5)
    x = env.contexts(1 if env_name == "recovering" else 30)
    n = 1 if env_name == "recovering" else 30
    np.testing.assert_array_equal(loaded.select(x, n), policy.select(x, n))


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="not a saved policy"):
        load_policy(tmp_path)
    env = make_env("slate", {})
    path = make_policy("ucb1", env).save(tmp_path / "p")
    (path / "policy.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt policy artifact"):
        load_policy(path)
