"""Statistics on per-user metric values: bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, chunk: int = 64
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (shape (U,)). Resamples in chunks to bound memory."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    if n == 1 or n_boot <= 0:
        v = float(values.mean())
        return v, v
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        means[start : start + m] = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
