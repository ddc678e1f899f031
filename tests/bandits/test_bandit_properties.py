"""Property tests (hypothesis) of the estimators' algebra."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recforge.bandits.bootstrap import bootstrap_stat
from recforge.bandits.estimators import IPS, SNDR, SNIPS, DirectMethod, DoublyRobust, OPEInput

N = st.integers(min_value=2, max_value=60)


@st.composite
def inputs(draw):
    n = draw(N)
    unit = arrays(np.float64, n, elements=st.floats(0.0, 1.0))
    pos = arrays(np.float64, n, elements=st.floats(0.01, 1.0))
    return OPEInput(reward=draw(unit), pscore=draw(pos), pi_e=draw(unit), q_logged=draw(unit), q_pi=draw(unit))


@settings(max_examples=60, deadline=None)
@given(inputs())
def test_on_policy_ips_is_the_mean_reward(inp):
    same = OPEInput(inp.reward, inp.pscore, inp.pscore)
    assert np.isclose(IPS().estimate(same, n_boot=0).value, inp.reward.mean())
    assert np.isclose(SNIPS().estimate(same, n_boot=0).value, inp.reward.mean())


@settings(max_examples=60, deadline=None)
@given(inputs())
def test_dr_with_exact_residuals_is_dm(inp):
    exact = OPEInput(inp.reward, inp.pscore, inp.pi_e, q_logged=inp.reward, q_pi=inp.q_pi)
    assert np.isclose(DoublyRobust().estimate(exact, n_boot=0).value, DirectMethod().estimate(exact, n_boot=0).value)
    if inp.pi_e.sum() > 0:
        assert np.isclose(SNDR().estimate(exact, n_boot=0).value, inp.q_pi.mean())


@settings(max_examples=40, deadline=None)
@given(inputs(), st.floats(0.1, 1.0))
def test_snips_is_invariant_to_scaling_the_evaluation_policy(inp, c):
    if inp.pi_e.sum() == 0:
        return
    scaled = OPEInput(inp.reward, inp.pscore, inp.pi_e * c)
    assert np.isclose(SNIPS().estimate(scaled, n_boot=0).value, SNIPS().estimate(inp, n_boot=0).value)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.integers(2, 200), elements=st.floats(-5, 5)))
def test_bootstrap_interval_is_ordered_and_within_range(values):
    v, lo, hi = bootstrap_stat(values[:, None], lambda m: m[:, 0], n_boot=100)
    assert lo <= hi + 1e-12
    assert values.min() - 1e-9 <= lo and hi <= values.max() + 1e-9
    assert np.isclose(v, values.mean())
