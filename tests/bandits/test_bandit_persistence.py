"""Every registered policy survives save/load as a recforge artifact with identical state and decisions; a missing,
corrupt or tampered artifact is a one-line DataError."""

import json

import numpy as np
import pytest

from recforge.artifacts import META_FILE, WEIGHTS_FILE, load_artifact
from recforge.bandits.build import make_env, make_policy
from recforge.bandits.policies.base import load_policy
from recforge.bandits.simulators import simulate
from recforge.data.vocab import Vocab
from recforge.errors import DataError
from recforge.registry import POLICIES

ENV_FOR = {
    "linucb": {"name": "contextual", "reward": "linear"},
    "linear-ts": {"name": "contextual", "reward": "linear"},
    "logistic-ts": {"name": "contextual"},
    "periodic": {"name": "recovering"},
    "periodic-ucb": {"name": "recovering"},
    "in-slate-ts": {"name": "slate"},
    "gru-slate-ts": {"name": "user-slate"},
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_save_load_roundtrip(tmp_path, name):
    env_spec = ENV_FOR.get(name, {"name": "slate"})
    sequential = env_spec["name"] == "recovering"
    env = make_env(env_spec)
    policy = make_policy({"name": name}, env, seed=1)
    simulate(env, policy, 300, batch_size=1 if sequential else 20)
    path = policy.save(tmp_path / name)
    art = load_artifact(path)
    assert art.table == "policy" and art.name == name and art.extra["n_actions"] == env.n_actions
    assert set(art.tensors) == set(policy.state_arrays)
    loaded = load_policy(path, seed=7)
    assert type(loaded) is type(policy) and loaded.config == policy.config and loaded.t == policy.t == 300
    for attr in policy.state_arrays:
        np.testing.assert_array_equal(getattr(loaded, attr), getattr(policy, attr))
    policy.rng, loaded.rng = np.random.default_rng(5), np.random.default_rng(5)
    n = 1 if sequential else 30
    x = env.contexts(n)
    np.testing.assert_array_equal(loaded.select(x, n), policy.select(x, n))


def test_the_action_vocabulary_travels_with_the_policy(tmp_path):
    env = make_env({"name": "slate", "n_items": 4, "len_list": 2})
    policy = make_policy({"name": "ucb1"}, env)
    policy.action_vocab = Vocab(["sku-b", "sku-a", 7, 9], name="action")
    loaded = load_policy(policy.save(tmp_path / "p"))
    assert loaded.action_vocab == policy.action_vocab
    assert load_policy(make_policy({"name": "ucb1"}, env).save(tmp_path / "q")).action_vocab is None


def _saved(tmp_path):
    env = make_env({"name": "slate"})
    policy = make_policy({"name": "ucb1", "c": 1.5}, env)
    simulate(env, policy, 100, batch_size=10)
    return policy.save(tmp_path / "p")


def _edit_meta(path, change):
    meta = json.loads((path / META_FILE).read_text())
    change(meta)
    (path / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "tamper, match",
    [
        (lambda p: (p / META_FILE).write_text("{not json"), "corrupt artifact metadata"),
        (lambda p: (p / WEIGHTS_FILE).write_bytes((p / WEIGHTS_FILE).read_bytes()[:-3] + b"xyz"), "changed since"),
        (lambda p: (p / WEIGHTS_FILE).unlink(), "not an artifact"),
        (lambda p: _edit_meta(p, lambda m: m.update(table="model")), "holds a model artifact, expected a policy"),
        (lambda p: _edit_meta(p, lambda m: m.update(name="thompson")), "corrupt policy artifact.*unknown policy"),
        (lambda p: _edit_meta(p, lambda m: m["config"].update(c=-1.0)), "corrupt policy artifact.*c must be"),
        (lambda p: _edit_meta(p, lambda m: m["config"].update(gamma=1.0)), "corrupt policy artifact.*unknown config key"),
        (lambda p: _edit_meta(p, lambda m: m["extra"].pop("scalars")), "corrupt policy artifact"),
        (lambda p: _edit_meta(p, lambda m: m["extra"].update(n_actions=5)), r"counts has shape \(8,\), expected \(5,\)"),
        (lambda p: _edit_meta(p, lambda m: m["extra"].update(scalars={})), r"missing state \['t'\]"),
        (lambda p: _edit_meta(p, lambda m: m["extra"].update(action_vocab={"ids": [1, 2]})), "2 action ids"),
    ],
)
def test_corrupt_or_tampered_artifacts_are_one_line_data_errors(tmp_path, tamper, match):
    path = _saved(tmp_path)
    tamper(path)
    with pytest.raises(DataError, match=match) as err:
        load_policy(path)
    assert "\n" not in str(err.value)


def test_missing_artifact(tmp_path):
    with pytest.raises(DataError, match="artifact not found"):
        load_policy(tmp_path / "nope")
    with pytest.raises(DataError, match="not an artifact"):
        load_policy(tmp_path)
