"""Off-policy estimators on simulated logs with known truth: unbiased within CIs, limits, bootstrap, input errors."""

import numpy as np
import pytest

from recforge.bandits.bootstrap import bootstrap_stat
from recforge.bandits.estimators import (
    IPS,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    DRShrinkage,
    DRShrinkageConfig,
    OPEInput,
    SwitchDR,
    SwitchDRConfig,
    estimate_all,
    make_estimator,
    ope_input,
)
from recforge.bandits.simulators import ContextualBanditEnv, ContextualConfig
from recforge.data.feedback import LoggedFeedback
from recforge.errors import ConfigError, DataError

REPS, N = 40, 1500


@pytest.fixture(scope="module")
def replicates():
    """REPS independent logs of a softmax behaviour policy; the evaluation policy is a sharper softmax.
    Reward model: the true q shifted by +0.05 (misspecified), so DM is biased and DR must correct it."""
    env = ContextualBanditEnv(ContextualConfig(n_actions=5, dim=3, seed=1))
    behaviour, target = env.softmax_policy(2.0), env.softmax_policy(8.0)
    truth = env.policy_value(target)
    out: dict[str, list] = {}
    for rep in range(REPS):
        fb = env.log(N, behaviour)
        inp = ope_input(fb, lambda rows, pos, fb=fb: target(fb.context[rows]),
                        lambda rows, pos, fb=fb: env.expected_rewards(fb.context[rows]) + 0.05)
        for e in estimate_all(inp, n_boot=200, seed=rep):
            out.setdefault(e.estimator, []).append(e)
    return truth, out


@pytest.mark.parametrize("name", ["ips", "snips", "dr", "sndr", "switch-dr", "dr-os"])
def test_unbiased_within_ci(replicates, name):
    truth, out = replicates
    values = np.array([e.value for e in out[name]])
    se = values.std(ddof=1) / np.sqrt(len(values))
    # the mean over independent replicates is within 4 standard errors of the truth ...
    assert abs(values.mean() - truth) < 4 * se + 1e-4, (values.mean(), truth, se)
    # ... and the 95% bootstrap intervals cover the truth in most replicates
    coverage = np.mean([e.ci_low <= truth <= e.ci_high for e in out[name]])
    assert coverage >= 0.8, coverage


def test_dm_with_wrong_model_is_biased_and_dr_fixes_it(replicates):
    truth, out = replicates
    dm = np.array([e.value for e in out["dm"]])
    dr = np.array([e.value for e in out["dr"]])
    assert dm.mean() - truth > 0.03  # the +0.05 shift survives in DM
    assert abs(dr.mean() - truth) < 0.01


def test_dm_with_true_model_is_unbiased():
    env = ContextualBanditEnv(ContextualConfig(n_actions=4, dim=2, reward="linear", seed=3))
    target = env.softmax_policy(3.0)
    truth = env.policy_value(target)
    fb = env.log(20_000, env.softmax_policy(0.0))
    inp = ope_input(fb, lambda r, p: target(fb.context[r]), lambda r, p: env.expected_rewards(fb.context[r]))
    est = DirectMethod().estimate(inp, n_boot=200)
    assert est.ci_low - 0.01 <= truth <= est.ci_high + 0.01


def _input(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    pscore = rng.uniform(0.05, 1.0, n)
    return OPEInput(reward=rng.random(n), pscore=pscore, pi_e=rng.uniform(0, 1, n) * 0.9,
                    q_logged=rng.random(n), q_pi=rng.random(n))


def test_limits_of_the_tuned_estimators():
    inp = _input()
    dr = DoublyRobust().estimate(inp, n_boot=0).value
    dm = DirectMethod().estimate(inp, n_boot=0).value
    assert SwitchDR(SwitchDRConfig(tau=1e12)).estimate(inp, n_boot=0).value == pytest.approx(dr)
    assert SwitchDR(SwitchDRConfig(tau=1e-12)).estimate(inp, n_boot=0).value == pytest.approx(dm)
    assert DRShrinkage(DRShrinkageConfig(lam=1e12)).estimate(inp, n_boot=0).value == pytest.approx(dr, rel=1e-6)
    assert DRShrinkage(DRShrinkageConfig(lam=1e-12)).estimate(inp, n_boot=0).value == pytest.approx(dm, rel=1e-6)


def test_hand_computed_values():
    inp = OPEInput(reward=np.array([1.0, 0.0, 1.0]), pscore=np.array([0.5, 0.5, 0.25]), pi_e=np.array([1.0, 0.5, 0.5]),
                   q_logged=np.array([0.5, 0.5, 0.5]), q_pi=np.array([0.4, 0.4, 0.4]))
    w = np.array([2.0, 1.0, 2.0])
    assert IPS().estimate(inp, n_boot=0).value == pytest.approx((2 + 0 + 2) / 3)
    assert SNIPS().estimate(inp, n_boot=0).value == pytest.approx(4 / w.sum())
    assert DoublyRobust().estimate(inp, n_boot=0).value == pytest.approx(0.4 + np.mean(w * np.array([0.5, -0.5, 0.5])))
    assert make_estimator({"name": "sndr"}).estimate(inp, n_boot=0).value == pytest.approx(0.4 + (1 - 0.5 + 1) / 5)


def test_tuning_picks_a_candidate_and_reports_it():
    est = make_estimator({"name": "switch-dr", "tau": 5.0, "candidates": [1.0, 5.0, 1e9]}).estimate(_input(), n_boot=50)
    assert est.info["tau"] in (1.0, 5.0, 1e9)
    assert make_estimator({"name": "dr-os", "lam": 7}).estimate(_input(), n_boot=0).info == {"lambda": 7.0}


def test_grouped_bootstrap_matches_exact_width():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(50_000, 1))
    _, lo_exact, hi_exact = bootstrap_stat(x, lambda m: m[:, 0], n_boot=400, n_groups=60_000)
    _, lo_group, hi_group = bootstrap_stat(x, lambda m: m[:, 0], n_boot=400, n_groups=1000)
    assert (hi_group - lo_group) == pytest.approx(hi_exact - lo_exact, rel=0.15)
    normal_width = 2 * 1.96 * x.std() / np.sqrt(len(x))
    assert (hi_group - lo_group) == pytest.approx(normal_width, rel=0.15)


def test_grouped_bootstrap_matches_exact_for_a_ratio():
    rng = np.random.default_rng(1)
    w = rng.exponential(size=20_000)
    cols = np.stack([w * (rng.random(20_000) < 0.3), w], axis=1)  # SNIPS-like sum(w r) / sum(w)
    ratio = lambda m: m[:, 0] / m[:, 1]  # noqa: E731
    _, lo_exact, hi_exact = bootstrap_stat(cols, ratio, n_boot=400, n_groups=30_000)
    _, lo_group, hi_group = bootstrap_stat(cols, ratio, n_boot=400, n_groups=1000)
    assert (hi_group - lo_group) == pytest.approx(hi_exact - lo_exact, rel=0.15)
    assert (lo_group + hi_group) / 2 == pytest.approx((lo_exact + hi_exact) / 2, abs=0.25 * (hi_exact - lo_exact))


def test_context_free_dist_per_position():
    fb = LoggedFeedback(action=np.array([0, 1, 1]), reward=np.array([1.0, 0.0, 1.0]), pscore=np.full(3, 0.5), n_actions=2,
                        position=np.array([0, 0, 1]), len_list=2)
    dist = np.array([[0.9, 0.2], [0.1, 0.8]])  # (K, L): column k is the distribution of slot k
    inp = ope_input(fb, dist)
    np.testing.assert_allclose(inp.pi_e, [0.9, 0.1, 0.8])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"action_dist": np.ones(3) / 3}, DataError, "action_dist must have shape"),
        ({"action_dist": np.array([0.5, 0.6])}, DataError, "sum to 1"),
    ],
)
def test_ope_input_errors(kwargs, error, match):
    fb = LoggedFeedback(action=np.array([0, 1]), reward=np.array([1.0, 0.0]), pscore=np.full(2, 0.5), n_actions=2)
    with pytest.raises(error, match=match):
        ope_input(fb, **kwargs)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: DirectMethod().estimate(OPEInput(np.ones(2), np.ones(2), np.ones(2))), ConfigError, "needs a reward model"),
        (lambda: OPEInput(np.ones(2), np.ones(3), np.ones(2)), DataError, "pscore must have shape"),
        (lambda: OPEInput(np.ones(2), np.zeros(2), np.ones(2)), DataError, "0 < p <= 1"),
        (lambda: OPEInput(np.ones(2), np.ones(2), np.full(2, 2.0)), DataError, "pi_e"),
        (lambda: SwitchDRConfig(tau=0.0), ConfigError, "must be > 0"),
        (lambda: DRShrinkageConfig(candidates=(1.0, -2.0)), ConfigError, "must be > 0"),
        (lambda: make_estimator({"name": "magic"}), ConfigError, "unknown estimator 'magic'"),
        (lambda: make_estimator({"name": "ips", "tau": 3}), ConfigError, "unknown config key"),
        (lambda: IPS().estimate(_input(), alpha=1.5), ConfigError, "alpha"),
        (lambda: make_estimator({"tau": 3}), ConfigError, "name is required"),
        (lambda: SwitchDR(DRShrinkageConfig()), ConfigError, "expects a SwitchDRConfig"),
    ],
)
def test_estimator_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
