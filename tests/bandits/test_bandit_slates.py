"""Slate estimators on the slate simulator: each is unbiased under its own assumption; IIPS is biased under cascades."""

import numpy as np
import pytest

from recforge.bandits.simulators import (
    SlateConfig,
    SlateEnv,
    SlatePolicyProbs,
    log_slates,
    slate_policy_value,
)
from recforge.bandits.slate_estimators import (
    SlateIndependentIPS,
    SlateOPEInput,
    SlateRewardInteractionIPS,
    SlateStandardIPS,
    slate_ope_input,
)
from recforge.errors import ConfigError, DataError

REPS, N_SLATES = 30, 2000


def _run(click_model: str):
    env = SlateEnv(SlateConfig(n_items=6, len_list=3, click_model=click_model, seed=4))
    slates = env.all_slates()
    behaviour = SlatePolicyProbs.plackett_luce(np.zeros(6), slates)  # uniform random slates
    target = SlatePolicyProbs.plackett_luce(2.0 * np.log(env.attractiveness), slates)
    truth = slate_policy_value(env, target)
    est = {"sips": [], "iips": [], "rips": []}
    for rep in range(REPS):
        fb, idx = log_slates(env, behaviour, N_SLATES)
        inp = slate_ope_input(fb, target, idx)
        for e in (SlateStandardIPS(), SlateIndependentIPS(), SlateRewardInteractionIPS()):
            est[e.name].append(e.estimate(inp, n_boot=100, seed=rep))
    return truth, est


@pytest.fixture(scope="module")
def pbm():
    return _run("pbm")


@pytest.fixture(scope="module")
def cascade():
    return _run("cascade")


def _bias_z(truth, estimates):
    v = np.array([e.value for e in estimates])
    return (v.mean() - truth) / (v.std(ddof=1) / np.sqrt(len(v)))


@pytest.mark.parametrize("name", ["sips", "iips", "rips"])
def test_unbiased_under_pbm(pbm, name):
    truth, est = pbm
    assert abs(_bias_z(truth, est[name])) < 4
    assert np.mean([e.ci_low <= truth <= e.ci_high for e in est[name]]) >= 0.8


@pytest.mark.parametrize("name", ["sips", "rips"])
def test_unbiased_under_cascade(cascade, name):
    truth, est = cascade
    assert abs(_bias_z(truth, est[name])) < 4


def test_iips_is_biased_under_cascade(cascade):
    truth, est = cascade
    assert abs(_bias_z(truth, est["iips"])) > 4  # its independence assumption fails: the test can tell


def test_variance_ordering_under_pbm(pbm):
    _, est = pbm
    sd = {k: np.std([e.value for e in v]) for k, v in est.items()}
    assert sd["iips"] < sd["rips"] < sd["sips"]


def test_plackett_luce_probabilities_are_consistent():
    env = SlateEnv(SlateConfig(n_items=5, len_list=2))
    probs = SlatePolicyProbs.plackett_luce(np.array([0.0, 1.0, -1.0, 0.5, 2.0]), env.all_slates())
    assert probs.slate.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(probs.marginal.sum(axis=0), 1.0)
    np.testing.assert_allclose(probs.prefix[:, -1], probs.slate)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: SlateConfig(n_items=3, len_list=4), ConfigError, "len_list"),
        (lambda: SlateConfig(click_model="dbn"), ConfigError, "click_model"),
        (lambda: SlateEnv(SlateConfig(n_items=30, len_list=5)).all_slates(), ConfigError, "max_slates"),
        (lambda: SlateStandardIPS().row_terms(SlateOPEInput(np.ones(2), np.zeros(2), np.ones(2), None, None,
                                                             np.ones(2), None, None)), ConfigError, "needs pi_slate"),
        (lambda: SlateOPEInput(np.ones(2), np.zeros(3), np.ones(2), None, None, np.ones(2), None, None), DataError,
         "slate_id must have shape"),
    ],
)
def test_slate_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
