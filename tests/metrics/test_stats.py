"""Statistics: hand-computed tables, reference implementations and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sst

from recforge.errors import ConfigError
from recforge.metrics import stats as st

A = np.array([1.0, 0.0, 1.0, 1.0])
B = np.array([0.0, 0.0, 1.0, 0.0])  # d = [1, 0, 0, 1]: mean .5, sd sqrt(1/3)


def test_bootstrap_counts_equal_plain_gather():
    """The count-matrix fast path draws exactly the resamples of values[rng.integers(0, n, n)]."""
    v = np.random.default_rng(1).random(50)
    fast = st.bootstrap_means(v, n_boot=30, seed=7, chunk=8)
    rng = np.random.default_rng(7)
    plain = np.concatenate([v[rng.integers(0, 50, size=(m, 50))].mean(axis=1) for m in (8, 8, 8, 6)])
    assert fast == pytest.approx(plain, rel=1e-6)
    again = st.bootstrap_means(v, n_boot=30, seed=7, chunk=8)  # served from the cache: the same resamples
    assert np.array_equal(fast, again)
    assert not np.array_equal(fast, st.bootstrap_means(v, n_boot=30, seed=8, chunk=8))


def test_bootstrap_cis_share_resamples_and_match_single():
    rng = np.random.default_rng(0)
    v = rng.random((400, 3))
    cis = st.bootstrap_cis(v, n_boot=500, seed=3)
    for j in range(3):
        assert cis[j] == pytest.approx(st.bootstrap_ci(v[:, j], n_boot=500, seed=3), rel=1e-6)
        assert cis[j][0] < v[:, j].mean() < cis[j][1]
    # normal theory: the 95% CI width is about 2 * 1.96 * sd / sqrt(n)
    width = cis[0][1] - cis[0][0]
    assert width == pytest.approx(2 * 1.96 * v[:, 0].std() / math.sqrt(400), rel=0.2)


def test_bootstrap_degenerate_inputs():
    assert all(math.isnan(x) for x in st.bootstrap_ci(np.array([])))
    assert st.bootstrap_ci(np.array([0.3])) == (0.3, 0.3)
    assert st.bootstrap_ci(np.full(10, 0.5)) == pytest.approx((0.5, 0.5))
    with pytest.raises(ConfigError, match="U, M"):
        st.bootstrap_cis(np.zeros(3))


def test_paired_t_test_hand_value():
    res = st.paired_t_test(A, B)
    assert res["statistic"] == pytest.approx(math.sqrt(3))  # .5 / (sqrt(1/3) / 2)
    assert res["p_value"] == pytest.approx(2 * sst.t.sf(math.sqrt(3), df=3))
    assert st.paired_t_test(A, A) == {"statistic": 0.0, "p_value": 1.0}
    assert st.paired_t_test(A + 1, A)["p_value"] == 0.0


def test_wilcoxon_and_effect_sizes_hand_values():
    assert st.wilcoxon_test(A, A)["p_value"] == 1.0
    assert st.wilcoxon_test(A, B)["statistic"] == 0.0  # W- = 0 (both non-zero differences are positive)
    assert st.rank_biserial(A, B) == 1.0
    assert st.rank_biserial(B, A) == -1.0
    # d = [2, -1, 3]: ranks of |d| = [2, 1, 3] -> W+ = 5, W- = 1 -> r = 4/6
    assert st.rank_biserial(np.array([2.0, -1.0, 3.0]), np.zeros(3)) == pytest.approx(4 / 6)
    assert st.cohens_dz(A, B) == pytest.approx(0.5 / math.sqrt(1 / 3))
    assert st.cohens_dz(A, A) == 0.0


def test_permutation_test_exact_small_case():
    # only the signs of the two non-zero differences matter: |mean| >= .5 in 2 of 4 sign patterns -> p = 1/2
    p = st.permutation_test(A, B, n_perm=20000, seed=0)["p_value"]
    assert p == pytest.approx(0.5, abs=0.015)
    assert st.permutation_test(A, A, n_perm=100)["p_value"] == 1.0


def test_tests_detect_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = rng.random(2000)
    better = base + 0.05 + rng.normal(0, 0.1, 2000)
    same = base + rng.normal(0, 0.1, 2000)
    for fn in (st.paired_t_test, st.wilcoxon_test):
        assert fn(better, base)["p_value"] < 1e-6
        assert fn(same, base)["p_value"] > 0.01
    assert st.permutation_test(better, base, n_perm=2000)["p_value"] < 0.001
    boot = st.paired_bootstrap(better, base, n_boot=1000)
    assert boot["ci_low"] > 0 and boot["diff"] == pytest.approx((better - base).mean())


def test_holm_and_bh_hand_tables():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> running max .02 .03 .06 .06
    assert st.holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted .005*4/1=.02, .01*4/2=.02, .03*4/3=.04, .04*4/4=.04 -> running min from the right
    assert st.benjamini_hochberg(p).tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])
    q = np.random.default_rng(0).random(30) ** 3
    assert st.benjamini_hochberg(q) == pytest.approx(sst.false_discovery_control(q, method="bh"))
    assert st.holm([]).size == 0
    # capped at 1: sorted .8*2=1.6 -> 1, .9*1=.9 -> running max 1; and a three-value hand table
    assert st.holm([0.9, 0.8]).tolist() == [1.0, 1.0]
    assert st.holm([0.5, 0.2, 0.01]).tolist() == pytest.approx([0.5, 0.4, 0.03])


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (np.zeros(3), np.zeros(4), "same users"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "same users"),
        (np.array([np.nan, 1.0]), np.zeros(2), "NaN"),
    ],
)
def test_paired_inputs_are_validated(a, b, match):
    for fn in (st.paired_t_test, st.wilcoxon_test, st.permutation_test, st.paired_bootstrap, st.cohens_dz):
        with pytest.raises(ConfigError, match=match):
            fn(a, b)


def test_compare_paired_rows_and_correction():
    rng = np.random.default_rng(1)
    base = rng.random(1000)
    per_model = {"best": base + 0.1 + rng.normal(0, 0.01, 1000), "same": base + rng.normal(0, 0.01, 1000), "ref": base}
    rows = st.compare_paired(per_model, baseline="ref", test="t", correction="holm", n_boot=200)
    by = {r["model"]: r for r in rows}
    assert set(by) == {"best", "same"}
    assert by["best"]["significant"] and by["best"]["diff"] == pytest.approx(0.1, abs=0.002)
    assert by["best"]["p_adjusted"] >= by["best"]["p_value"]
    assert not by["same"]["significant"]
    assert st.compare_paired(per_model, test="permutation", n_perm=200)[0]["baseline"] == "best"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test": "anova"}, "test must be"),
        ({"correction": "bonf"}, "correction must be"),
        ({"baseline": "nope"}, "baseline"),
    ],
)
def test_compare_paired_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        st.compare_paired({"a": A, "b": B}, **kwargs)
    with pytest.raises(ConfigError, match="two models"):
        st.compare_paired({"a": A})
