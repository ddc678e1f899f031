"""Reward model, cross-fitting and the refit bootstrap."""

import numpy as np
import pytest

from recforge.bandits.estimators import DirectMethod, ope_input
from recforge.bandits.refit import refit_bootstrap
from recforge.bandits.reward_model import LogisticRewardModel, cross_fitted
from recforge.data.feedback import LoggedFeedback
from recforge.errors import ConfigError, NotFittedError


def _logs(n=4000, seed=0):
    """Clicks with a planted logit: 1.0 * x0 + action bias (-3, -2, -1) + position bias (0, -1)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    a = rng.integers(0, 3, n)
    pos = rng.integers(0, 2, n)
    logit = 1.0 * x[:, 0] + np.array([-3.0, -2.0, -1.0])[a] + np.array([0.0, -1.0])[pos]
    r = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return LoggedFeedback(action=a, reward=r, pscore=np.full(n, 1 / 3), n_actions=3, context=x, position=pos, len_list=2)


def test_logistic_model_recovers_planted_effects():
    fb = _logs(20_000)
    model = LogisticRewardModel(l2=0.1).fit(fb)
    q = model.predict(np.zeros((1, 2)), np.array([0]))[0]
    truth = 1 / (1 + np.exp(-np.array([-3.0, -2.0, -1.0])))
    np.testing.assert_allclose(q, truth, rtol=0.2)
    assert model.predict(np.array([[1.0, 0.0]]), np.array([0]))[0, 0] > q[0]  # positive context weight


def test_cross_fitting_predicts_out_of_fold():
    fb = _logs(600)
    predict = cross_fitted(fb, n_folds=2, seed=3)
    fold = np.random.default_rng(3).permutation(fb.n_rounds) % 2
    rows = np.arange(fb.n_rounds)
    # a row in fold 0 must be predicted by the model fitted on fold 1 only
    other = LogisticRewardModel().fit(fb, np.flatnonzero(fold == 1))
    r0 = rows[fold == 0][:5]
    np.testing.assert_allclose(predict(r0, fb.position[r0]), other.predict(fb.context[r0], fb.position[r0]))


def test_refit_bootstrap_widens_the_dm_interval():
    fb = _logs(800)
    dist = np.array([0.2, 0.3, 0.5])
    fixed = DirectMethod().estimate(ope_input(fb, dist, LogisticRewardModel().fit(fb).for_feedback(fb)), n_boot=200)
    refit = refit_bootstrap(fb, dist, lambda f: LogisticRewardModel().fit(f).for_feedback(f), ("dm", "ips"), n_boot=20)
    dm = refit[0]
    assert dm.value == pytest.approx(fixed.value)
    assert dm.ci_high - dm.ci_low > 2 * (fixed.ci_high - fixed.ci_low)
    assert dm.info["ci"] == "refit-bootstrap"


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: LogisticRewardModel(l2=-1.0), ConfigError, "l2"),
        (lambda: LogisticRewardModel().predict(np.zeros((1, 2)), np.array([0])), NotFittedError, "not fitted"),
        (lambda: cross_fitted(_logs(50), n_folds=1), ConfigError, "n_folds"),
        (lambda: refit_bootstrap(_logs(50), np.ones(3) / 3, lambda f: None, n_boot=1), ConfigError, "n_boot"),
    ],
)
def test_reward_model_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_logistic_model_rejects_non_binary_scale():
    fb = LoggedFeedback(action=np.array([0, 1]), reward=np.array([2.0, 0.0]), pscore=np.ones(2), n_actions=2)
    with pytest.raises(ConfigError, match=r"rewards in \[0, 1\]"):
        LogisticRewardModel().fit(fb)
