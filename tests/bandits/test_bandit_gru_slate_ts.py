"""GRU + in-slate Thompson sampling on the user-slate simulator (planted group tastes, softmax clicks with no-click)."""

import itertools
import json

import numpy as np
import pytest

from recforge.bandits.build import make_env, make_policy
from recforge.bandits.policies.base import UniformRandom, load_policy
from recforge.bandits.policies.gru_slate_ts import GRUSlateTS, GRUSlateTSConfig
from recforge.bandits.policies.slate import InSlateTS
from recforge.bandits.simulators import simulate
from recforge.bandits.user_slates import UserSlateConfig, UserSlateEnv
from recforge.cli import main
from recforge.errors import ConfigError

CFG = UserSlateConfig(n_users=50, n_items=30, len_list=3, seed=0)
ROUNDS, BATCH, TAIL = 4000, 20, 1000


def _context_free_best(env: UserSlateEnv) -> float:
    """Expected clicks of the best single slate shown to every user (what a policy ignoring the user can reach at best)."""
    sets = np.array(list(itertools.combinations(range(env.n_actions), env.len_list)))
    e = np.exp(env.utility)[:, sets].sum(-1)  # (users, sets)
    return float((e / (np.exp(env.config.no_click) + e)).mean(0).max())


@pytest.fixture(scope="module")
def runs():
    out = {}
    for cls in (UniformRandom, InSlateTS):
        policy = cls(CFG.n_items, dim=1 if cls is UniformRandom else 0, len_list=CFG.len_list, seed=0)
        out[cls.name] = simulate(UserSlateEnv(CFG), policy, ROUNDS, batch_size=BATCH, noise_seed=3)
    for per in ("slot", "slate"):
        policy = GRUSlateTS(CFG.n_items, dim=1, len_list=CFG.len_list, config=GRUSlateTSConfig(sample_per=per), seed=0)
        out[per] = simulate(UserSlateEnv(CFG), policy, ROUNDS, batch_size=BATCH, noise_seed=3)
    return out


@pytest.mark.parametrize("per", ["slot", "slate"])
def test_beats_uniform_and_the_best_context_free_slate(runs, per):
    tail = {k: r.expected[-TAIL:].mean() for k, r in runs.items()}
    tail["gru-slate-ts"] = tail[per]
    env = UserSlateEnv(CFG)
    best_user = float(env.best.mean())
    # the planted tastes leave a wide gap between random slates and per-user optimal ones
    assert tail["uniform"] < 0.5 * best_user
    assert tail["gru-slate-ts"] > tail["uniform"] + 0.25
    # learning the user state pays: above the best slate that ignores the user, and above context-free in-slate TS
    assert tail["gru-slate-ts"] > _context_free_best(env) + 0.03
    assert tail["gru-slate-ts"] > tail["in-slate-ts"] + 0.05
    # it keeps improving: late rounds beat early ones
    gru = runs[per].expected
    assert gru[-TAIL:].mean() > gru[:TAIL].mean() + 0.1


@pytest.mark.parametrize("per", ["slot", "slate"])
def test_slates_are_distinct_and_thompson_draws_vary(per):
    env = UserSlateEnv(CFG)
    policy = GRUSlateTS(CFG.n_items, dim=1, len_list=CFG.len_list, config=GRUSlateTSConfig(sample_per=per), seed=1)
    x = np.zeros((200, 1))  # one user, no history: all variety comes from the posterior draws
    slates = policy.select(x, 200)
    assert slates.shape == (200, 3)
    assert all(len(set(s)) == 3 for s in slates)
    assert len({tuple(s) for s in slates}) > 10
    simulate(env, policy, 200, batch_size=20)
    assert policy.t == 200 and policy.hist_len.sum() == 200


def test_history_window_keeps_the_latest_slates():
    policy = GRUSlateTS(5, dim=1, len_list=2, config=GRUSlateTSConfig(max_history=3, train_every=1000), seed=0)
    for k in range(5):
        policy.update(np.array([[2.0]]), np.array([[k % 5, (k + 1) % 5]]), np.array([[0.0, 1.0]]))
    assert policy.hist_len[2] == 3 and len(policy.hist_len) == 3
    np.testing.assert_array_equal(policy.hist_slates[2, :, 0], [2, 3, 4])
    np.testing.assert_array_equal(policy.hist_clicks[2], [2, 2, 2])  # slot 1 clicked -> code 2


def test_save_load_keeps_user_states(tmp_path):
    env = make_env({"name": "user-slate", "n_users": 20, "n_items": 10})
    policy = make_policy({"name": "gru-slate-ts", "train_every": 50}, env, seed=2)
    simulate(env, policy, 300, batch_size=10)
    loaded = load_policy(policy.save(tmp_path / "p"), seed=2)
    assert isinstance(loaded, GRUSlateTS) and loaded.last_train == policy.last_train
    np.testing.assert_allclose(loaded.user_state.numpy(), policy.user_state.numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dim": 0}, "dim=0"),
        ({"dim": 3}, "dim=3"),
        ({"config": GRUSlateTSConfig(), "len_list": 11}, "len_list"),
    ],
)
def test_bad_construction(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GRUSlateTS(10, **kwargs)


@pytest.mark.parametrize(
    "field, value",
    [("dim", 0), ("hidden", 0), ("max_history", 0), ("train_every", 0), ("n_steps", 0), ("batch_users", 0),
     ("lr", 0.0), ("prior_std", -1.0), ("init_std", 0.0), ("sample_per", "slots")],
)
def test_bad_config(field, value):
    with pytest.raises(ConfigError, match=field):
        GRUSlateTSConfig(**{field: value})


@pytest.mark.parametrize(
    "context, match", [(None, "contexts of shape"), (np.array([[-1.0]]), "user ids"), (np.array([[0.5]]), "user ids")]
)
def test_bad_contexts(context, match):
    with pytest.raises(ConfigError, match=match):
        GRUSlateTS(10, dim=1).select(context, 1)


@pytest.mark.parametrize(
    "field, value", [("n_users", 0), ("n_items", 1), ("len_list", 0), ("n_groups", 0), ("latent_dim", 0), ("scale", -1.0)]
)
def test_bad_env_config(field, value):
    with pytest.raises(ConfigError, match=field):
        UserSlateConfig(**{field: value})


def test_env_click_model():
    env = UserSlateEnv(UserSlateConfig(n_users=3, n_items=6, len_list=2, seed=1))
    users = np.zeros(20000, dtype=np.int64)
    slates = np.tile([[0, 1]], (20000, 1))
    clicks, expected, best = env.step(users[:, None].astype(float), slates)
    assert clicks.sum(axis=1).max() <= 1  # at most one click per slate
    probs = env.slot_click_probs(users[:1], slates[:1])[0]
    np.testing.assert_allclose(clicks.mean(axis=0), probs, atol=0.015)
    assert expected.shape == (20000, 2) and np.all(best >= expected.sum(axis=1) - 1e-12)


def test_cli_simulate(tmp_path):
    code = main(["bandit", "simulate", "--env", "user-slate", "--env-set", "n_users=10", "--env-set", "n_items=8",
                 "--policy", "gru-slate-ts", "--policy", "uniform", "--set", "gru-slate-ts.train_every=50",
                 "--rounds", "200", "--batch-size", "10", "--out", str(tmp_path / "sim")])
    assert code == 0
    metrics = json.loads((tmp_path / "sim" / "metrics.json").read_text())
    assert set(metrics) == {"gru-slate-ts", "uniform"}
    for m in metrics.values():
        assert m["_info"]["rounds"] == 200 and m["cumulative_regret"]["mean"] == m["_info"]["regret_per_run"][0]
        assert 0.0 <= m["mean_reward"]["mean"] <= 1.0 and m["cumulative_regret"]["mean"] >= 0.0
    policy = load_policy(tmp_path / "sim" / "artifact" / "gru-slate-ts")  # the learned policy, reloadable
    assert type(policy).__name__ == "GRUSlateTS"
    assert (tmp_path / "sim" / "regret.png").stat().st_size > 0
