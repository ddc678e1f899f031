"""Ranking metrics as pure functions of a hit matrix.

``hits``: bool array (U, K), ``hits[u, r]`` is True when the item ranked at position r (0-based) for user u is relevant.
``n_rel``: int array (U,), the number of relevant (held-out) items of each user (>= 1).
Each function returns per-user values of shape (U,) at cut-off ``k`` (requires K >= k).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recforge.errors import ConfigError


def _cut(hits: np.ndarray, k: int) -> np.ndarray:
    if k < 1 or k > hits.shape[1]:
        raise ConfigError(f"k must be in 1..{hits.shape[1]}, got {k}")
    return hits[:, :k].astype(np.float64)


def hit_rate(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """HR@k = 1 if any relevant item is in the top k."""
    return _cut(hits, k).max(axis=1, initial=0.0)


def recall(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Recall@k = |relevant in top k| / |relevant|."""
    return _cut(hits, k).sum(axis=1) / n_rel


def precision(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Precision@k = |relevant in top k| / k."""
    return _cut(hits, k).sum(axis=1) / k


def ndcg(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with binary gains: DCG = sum_r hit_r / log2(r + 2); IDCG puts min(|rel|, k) hits first."""
    h = _cut(hits, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = h @ discounts
    idcg = np.cumsum(discounts)[np.minimum(n_rel, k) - 1]
    return dcg / idcg


def mrr(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """MRR@k = 1 / rank of the first relevant item in the top k (0 when none)."""
    h = _cut(hits, k)
    first = h.argmax(axis=1)
    return np.where(h.max(axis=1, initial=0.0) > 0, 1.0 / (first + 1), 0.0)


def average_precision(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """MAP@k (per user AP@k) = sum_r P@(r+1) * hit_r / min(|rel|, k)."""
    h = _cut(hits, k)
    prec_at = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    return (prec_at * h).sum(axis=1) / np.minimum(n_rel, k)


def f1(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """F1@k = 2 P R / (P + R), 0 when both are 0."""
    p, r = precision(hits, n_rel, k), recall(hits, n_rel, k)
    denom = p + r
    return np.divide(2 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)


def r_precision(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """R-precision@k = |relevant in top min(|rel|, k)| / min(|rel|, k) (classic R-precision when k >= |rel|)."""
    h = _cut(hits, k)
    r = np.minimum(n_rel, k)
    within = np.arange(k)[None, :] < r[:, None]
    return (h * within).sum(axis=1) / r


METRICS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "hit": hit_rate,
    "hr": hit_rate,
    "recall": recall,
    "precision": precision,
    "ndcg": ndcg,
    "mrr": mrr,
    "map": average_precision,
    "f1": f1,
    "rprec": r_precision,
}


def parse_metric(name: str) -> tuple[str, int]:
    """"ndcg@10" -> ("ndcg", 10), with a ConfigError for unknown names or bad cut-offs."""
    base, sep, k = name.lower().partition("@")
    if base not in METRICS:
        raise ConfigError(f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))}, written as name@k)")
    if not sep or not k.isdigit() or int(k) < 1:
        raise ConfigError(f"metric {name!r} needs a positive cut-off, e.g. {base}@10")
    return base, int(k)


def compute(names: list[str] | tuple[str, ...], hits: np.ndarray, n_rel: np.ndarray) -> dict[str, np.ndarray]:
    """All requested metrics (per user) from one hit matrix."""
    return {n: METRICS[b](hits, n_rel, k) for n in names for b, k in [parse_metric(n)]}
