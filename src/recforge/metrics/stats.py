"""Statistics on per-user metric values: bootstrap CIs (of means and of paired differences), paired significance tests
(t-test, Wilcoxon signed-rank, randomisation), multiple-comparison corrections and effect sizes.

All inputs are per-user arrays of shape (U,) aligned on the same users (paired). Bootstrap resamples are drawn once as
a (B, U) count matrix and applied to every column with one matrix product, so CIs for many metrics cost little more
than for one (1,000 resamples over 22k users: see docs/benchmarks.md, "Evaluation suite").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from recforge.errors import ConfigError

#: Resample count matrices up to this size are kept (one entry) and reused by later calls with the same (n, n_boot,
#: seed): the evaluator, beyond-accuracy CIs and paired comparisons of one evaluation then share the same resampled
#: user sets (which is what a paired bootstrap needs) and pay the random draws once.
CACHE_LIMIT_BYTES = 128 * 2**20
_cache: dict[tuple[int, int, int, int], list[np.ndarray]] = {}


def _resample_counts(n: int, n_boot: int, seed: int, chunk: int) -> Iterator[np.ndarray]:
    """Yield (m, n) float32 matrices of bootstrap counts (each row sums to n): row b says how often each user is drawn
    in resample b. Drawing indices + bincount is exact (same distribution as ``values[rng.integers(0, n, n)]``)."""
    key = (n, n_boot, seed, chunk)
    if key in _cache:
        yield from _cache[key]
        return
    keep = n * n_boot * 4 <= CACHE_LIMIT_BYTES
    parts = []
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n), dtype=np.int64)
        idx += (np.arange(m, dtype=np.int64) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=m * n).reshape(m, n).astype(np.float32)
        if keep:
            parts.append(counts)
        yield counts
    if keep:
        _cache.clear()
        _cache[key] = parts


def bootstrap_means(values: np.ndarray, n_boot: int = 1000, seed: int = 0, chunk: int = 100) -> np.ndarray:
    """Bootstrap distribution of the column means: values (U,) or (U, M) -> (n_boot,) or (n_boot, M).
    NaNs are not allowed (drop those users first). The products run in float32 (counts are exact small integers;
    the relative error of a mean is ~1e-6, far below any CI width)."""
    v = np.asarray(values, dtype=np.float64)
    flat = v.ndim == 1
    v2 = (v[:, None] if flat else v).astype(np.float32)
    n = v2.shape[0]
    out = np.empty((n_boot, v2.shape[1]))
    pos = 0
    for counts in _resample_counts(n, n_boot, seed, chunk):
        out[pos : pos + len(counts)] = counts @ v2
        pos += len(counts)
    out /= n
    return out[:, 0] if flat else out


def bootstrap_cis(
    values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> list[tuple[float, float]]:
    """Percentile bootstrap CIs of the means of the M columns of ``values`` (U, M), sharing one set of resamples."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ConfigError(f"values must be (U, M), got shape {v.shape}")
    n, m = v.shape
    if n == 0:
        return [(float("nan"), float("nan"))] * m
    if n == 1 or n_boot <= 0:
        return [(float(x), float(x)) for x in v.mean(axis=0)]
    means = bootstrap_means(v, n_boot=n_boot, seed=seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    return [(float(a), float(b)) for a, b in zip(lo, hi)]


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, chunk: int = 100
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (shape (U,)). Resamples in chunks to bound memory."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    if n == 1 or n_boot <= 0:
        v = float(values.mean())
        return v, v
    means = bootstrap_means(values, n_boot=n_boot, seed=seed, chunk=chunk)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ConfigError(f"paired values must be two (U,) arrays of the same users, got {a.shape} and {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ConfigError("paired values contain NaN; drop those users from both arrays first")
    return a - b


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """Bootstrap CI of mean(a - b) over the same resampled users (paired), plus the two-sided bootstrap p-value
    p = 2 * min(P*(diff <= 0), P*(diff >= 0)) (percentile method; Efron & Tibshirani 1993, ch. 16)."""
    d = _paired(a, b)
    if len(d) < 2:
        m = float(d.mean()) if len(d) else float("nan")
        return {"diff": m, "ci_low": m, "ci_high": m, "p_value": float("nan")}
    means = bootstrap_means(d, n_boot=n_boot, seed=seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean()))
    return {"diff": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi), "p_value": float(p)}


def paired_t_test(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Paired Student t-test on d = a - b: t = mean(d) / (sd(d) / sqrt(U)), two-sided (scipy.stats.ttest_rel).
    Zero-variance differences are decided directly (scipy would return NaN): all 0 -> p = 1, a constant c != 0 -> p = 0."""
    from scipy import stats as sst  # lazily: importing scipy.stats costs ~55 MB of RSS
    d = _paired(a, b)
    if len(d) < 2:
        return {"statistic": float("nan"), "p_value": float("nan")}
    if np.all(d == d[0]):  # zero variance: no difference at all, or the same difference for every user
        return {"statistic": 0.0, "p_value": 1.0} if d[0] == 0 else {"statistic": float(np.sign(d[0]) * np.inf), "p_value": 0.0}
    res = sst.ttest_rel(a, b)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue)}


def wilcoxon_test(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Wilcoxon signed-rank test on d = a - b (zero differences dropped, "wilcox" method; normal approximation with
    tie correction for large U), two-sided (scipy.stats.wilcoxon). All-zero differences give p = 1."""
    from scipy import stats as sst  # lazily: importing scipy.stats costs ~55 MB of RSS
    d = _paired(a, b)
    if not np.any(d != 0):
        return {"statistic": 0.0, "p_value": 1.0}
    res = sst.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue)}


def permutation_test(
    a: np.ndarray, b: np.ndarray, n_perm: int = 10000, seed: int = 0, chunk: int = 500
) -> dict[str, float]:
    """Paired randomisation test (Fisher; Smucker et al., CIKM 2007): under H0 the sign of each user's difference
    d_u = a_u - b_u is exchangeable, so T* = |mean(s_u d_u)| with random signs s_u = ±1;
    p = (1 + #{T* >= |mean(d)|}) / (1 + n_perm) (never 0, Phipson & Smyth 2010). Vectorised: (chunk, U) sign matrix."""
    d = _paired(a, b)
    if len(d) == 0:
        return {"statistic": float("nan"), "p_value": float("nan")}
    obs = abs(d.mean())
    rng = np.random.default_rng(seed)
    n = len(d)
    extreme = 0
    tol = 1e-12 * max(1.0, obs)  # equal-in-exact-arithmetic statistics must count as extreme
    total = d.sum()
    for start in range(0, n_perm, chunk):
        m = min(chunk, n_perm - start)
        # 8 random signs per random byte; sum_u s_u d_u = 2 * sum_{s_u = +1} d_u - sum_u d_u
        bits = np.unpackbits(rng.integers(0, 256, size=(m, (n + 7) // 8), dtype=np.uint8), axis=1, count=n)
        stat = (2.0 * (bits.astype(np.float64) @ d) - total) / n
        extreme += int((np.abs(stat) >= obs - tol).sum())
    return {"statistic": float(d.mean()), "p_value": (1 + extreme) / (1 + n_perm)}


def holm(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (Holm 1979): sort ascending, p~_(i) = max_{j<=i} min(1, (m - j + 1) p_(j));
    reject H_(i) at level alpha when p~_(i) <= alpha. Controls the family-wise error rate."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def benjamini_hochberg(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (1995): sort ascending, p~_(i) = min_{j>=i} min(1, m p_(j) / j).
    Controls the false discovery rate (independent or positively dependent tests)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    out = np.empty(m)
    out[order] = adj
    return out


CORRECTIONS = {"holm": holm, "bh": benjamini_hochberg, "none": lambda p: np.asarray(p, dtype=np.float64)}


def cohens_dz(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d_z for paired samples: mean(d) / sd(d) (sd with ddof=1); 0 when all differences are equal to 0."""
    d = _paired(a, b)
    if len(d) < 2:
        return float("nan")
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if d.mean() == 0 else float(np.sign(d.mean()) * np.inf)
    return float(d.mean() / sd)


def rank_biserial(a: np.ndarray, b: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation (Kerby 2014), the Wilcoxon effect size: r = (W+ - W-) / (W+ + W-)
    over the ranks of |d| of non-zero differences (average ranks for ties). In [-1, 1]; 0 when all d = 0."""
    from scipy import stats as sst  # lazily: importing scipy.stats costs ~55 MB of RSS
    d = _paired(a, b)
    d = d[d != 0]
    if not len(d):
        return 0.0
    ranks = sst.rankdata(np.abs(d))
    w_pos, w_neg = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((w_pos - w_neg) / (w_pos + w_neg))


TESTS = ("t", "wilcoxon", "permutation", "bootstrap")


def compare_paired(
    per_model: dict[str, np.ndarray],
    baseline: str | None = None,
    test: str = "wilcoxon",
    correction: str = "holm",
    alpha: float = 0.05,
    n_boot: int = 1000,
    n_perm: int = 10000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Compare every model against ``baseline`` (default: the one with the highest mean) on paired per-user values.

    ``per_model[name]`` has shape (U,) over the same users. One row per non-baseline model with the mean difference
    (model - baseline) and its paired bootstrap CI, the chosen test's raw and corrected p-value, Cohen's d_z, the
    rank-biserial r and ``significant`` (corrected p < alpha). ``correction`` in {"holm", "bh", "none"}.
    """
    if test not in TESTS:
        raise ConfigError(f"test must be one of {TESTS}, got {test!r}")
    if correction not in CORRECTIONS:
        raise ConfigError(f"correction must be one of {sorted(CORRECTIONS)}, got {correction!r}")
    if len(per_model) < 2:
        raise ConfigError(f"need at least two models to compare, got {len(per_model)}")
    names = list(per_model)
    if baseline is None:
        baseline = max(names, key=lambda n: float(np.mean(per_model[n])))
    if baseline not in per_model:
        raise ConfigError(f"baseline {baseline!r} is not one of {names}")
    base = per_model[baseline]
    rows = []
    for i, name in enumerate(n for n in names if n != baseline):
        a = per_model[name]
        boot = paired_bootstrap(a, base, n_boot=n_boot, seed=seed + i)
        if test == "t":
            p = paired_t_test(a, base)["p_value"]
        elif test == "wilcoxon":
            p = wilcoxon_test(a, base)["p_value"]
        elif test == "permutation":
            p = permutation_test(a, base, n_perm=n_perm, seed=seed + i)["p_value"]
        else:
            p = boot["p_value"]
        rows.append({
            "model": name, "baseline": baseline, "mean": float(np.mean(a)), "baseline_mean": float(np.mean(base)),
            "diff": boot["diff"], "diff_ci_low": boot["ci_low"], "diff_ci_high": boot["ci_high"],
            "test": test, "p_value": p, "cohens_dz": cohens_dz(a, base), "rank_biserial": rank_biserial(a, base),
        })
    adjusted = CORRECTIONS[correction]([r["p_value"] for r in rows])
    for r, p_adj in zip(rows, adjusted):
        r["p_adjusted"] = float(p_adj)
        r["correction"] = correction
        r["significant"] = bool(p_adj < alpha)
    return rows
