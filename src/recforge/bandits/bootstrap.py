"""Bootstrap confidence intervals for estimators that are smooth functions of column means.

Every off-policy estimator here is ``stat(mean of per-round columns)`` (a mean for DM/IPS/DR, a ratio of means for the
self-normalised ones). Resampling n rows B times costs O(B n); for large logs we first sum the columns inside G random,
equally sized groups and resample groups instead. Group sums of a random partition are exchangeable, so resampling G of them
approximates the row bootstrap (exact when every row is its own group) at O(B G) cost -- this is what keeps all estimators
on 1M rounds within a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recforge.errors import ConfigError

Stat = Callable[[np.ndarray], np.ndarray]


def bootstrap_stat(
    columns: np.ndarray,
    stat: Stat,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_groups: int = 4096,
) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap CI of ``stat(columns.mean(0))``.

    columns: (n, k) per-round quantities. stat: maps means of shape (B, k) to (B,). Returns (value, ci_low, ci_high).
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    if n_boot < 0:
        raise ConfigError(f"n_boot must be >= 0, got {n_boot!r}")
    cols = np.asarray(columns, dtype=np.float64)
    if cols.ndim == 1:
        cols = cols[:, None]
    n, k = cols.shape
    value = float(stat(cols.mean(axis=0)[None, :])[0])
    if n < 2 or n_boot == 0:
        return value, value, value
    rng = np.random.default_rng(seed)
    if n <= n_groups:
        sums, counts = cols, np.ones(n)
    else:
        group = rng.permutation(n) % n_groups
        sums = np.stack([np.bincount(group, weights=cols[:, j], minlength=n_groups) for j in range(k)], axis=1)
        counts = np.bincount(group, minlength=n_groups).astype(np.float64)
    g = len(counts)
    stats = np.empty(n_boot)
    chunk = max(1, 2_000_000 // g)  # bound the (chunk, g) index matrix to ~16 MB
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, g, size=(m, g))
        means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)[:, None]
        stats[start : start + m] = stat(means)
    lo, hi = np.nanquantile(stats, [alpha / 2, 1 - alpha / 2])
    return value, float(lo), float(hi)
