"""Pointwise metrics of predicted probabilities or scores against binary labels, as pure functions.

``labels``: array (N,) of 0/1 (bool or numbers); ``scores``: (N,) real scores (any scale); ``probs``: (N,)
probabilities of label 1 in [0, 1]. Every function checks its inputs and raises a DataError that names the problem
and the first bad position (NaN, shapes, out-of-range values, an empty input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recforge.errors import ConfigError, DataError

#: Default clipping of log loss: probabilities are clipped to [LOG_LOSS_EPS, 1 - LOG_LOSS_EPS] before the log, so a
#: confident wrong prediction costs at most -log(1e-15) ~ 34.5 nats instead of infinity.
LOG_LOSS_EPS = 1e-15


@dataclass(frozen=True)
class ReliabilityTable:
    """Equal-width bins of predicted probability (B = number of bins).

    edges (B+1,): bin b holds probabilities p with edges[b] <= p < edges[b+1] (the last bin also holds 1.0);
    confidence (B,): mean predicted probability in the bin; accuracy (B,): fraction of label 1 in the bin
    (both NaN for an empty bin); count (B,): number of predictions in the bin.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    def ece(self) -> float:
        """Expected calibration error: sum over bins of count/N * |accuracy - confidence| (empty bins weigh 0)."""
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((self.count[filled] * gaps).sum() / self.count.sum())


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative, a tie counting
    one half. Computed from rank sums with tied scores given their average rank (Mann-Whitney U), O(N log N).
    DataError when the labels hold a single class."""
    y = _labels(labels, binary=True)
    s = _finite(scores, "scores", len(y))
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"AUC needs both classes, got {n_pos} positive and {n_neg} negative labels")
    ranks = _average_ranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pairwise_accuracy(margins: np.ndarray) -> float:
    """Share of preference pairs ordered correctly: margin = score(chosen) - score(rejected) > 0, a tie (margin 0)
    counting one half."""
    m = _finite(margins, "margins", None)
    return float(((m > 0).sum() + 0.5 * (m == 0).sum()) / len(m))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean binary cross-entropy -[y log p + (1 - y) log(1 - p)] in nats, with p clipped to [eps, 1 - eps]
    (:data:`LOG_LOSS_EPS` by default). Labels may be soft (in [0, 1])."""
    if not 0.0 < eps < 0.5:
        raise ConfigError(f"eps must be in (0, 0.5), got {eps}")
    y = _labels(labels, binary=False)
    p = np.clip(_probs(probs, len(y)), eps, 1.0 - eps)
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean())


def brier_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared difference between the probability and the label, (p - y)^2 averaged."""
    y = _labels(labels, binary=False)
    p = _probs(probs, len(y))
    return float(((p - y) ** 2).mean())


def reliability_table(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> ReliabilityTable:
    """The reliability diagram's data: ``n_bins`` equal-width bins over [0, 1] (see :class:`ReliabilityTable`)."""
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    y = _labels(labels, binary=True)
    p = _probs(probs, len(y))
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(bins, weights=p, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=y, minlength=n_bins) / count
    return ReliabilityTable(edges=edges, confidence=confidence, accuracy=accuracy, count=count)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """ECE over ``n_bins`` equal-width bins, each bin weighted by its share of the predictions:
    sum_b n_b / N * |mean label in b - mean probability in b|."""
    return reliability_table(labels, probs, n_bins).ece()


# ---------------------------------------------------------------------------------------------------- helpers
def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks of ``s`` in ascending order, tied values sharing the mean of their ranks."""
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_s[1:] != sorted_s[:-1]]))
    ends = np.concatenate([starts[1:], [len(s)]])
    mean_rank = (starts + 1 + ends) / 2.0  # ranks starts+1 .. ends
    ranks = np.empty(len(s), np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _labels(labels: np.ndarray, binary: bool) -> np.ndarray:
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise DataError(f"labels must be a non-empty 1-d array, got shape {y.shape}")
    bad = np.flatnonzero(~np.isin(y, (0.0, 1.0))) if binary else np.flatnonzero(~((y >= 0) & (y <= 1)))
    if len(bad):
        expected = "0 or 1" if binary else "in [0, 1]"
        raise DataError(f"labels must be {expected}; position {int(bad[0])} has {float(y[bad[0]])!r} ({len(bad)} bad)")
    return y


def _finite(values: np.ndarray, name: str, n: int | None) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0 or (n is not None and len(x) != n):
        expected = "a non-empty 1-d array" if n is None else f"shape ({n},) like the labels"
        raise DataError(f"{name} must be {expected}, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if len(bad):
        raise DataError(f"{name} must be finite; position {int(bad[0])} has {float(x[bad[0]])!r} ({len(bad)} bad)")
    return x


def _probs(probs: np.ndarray, n: int) -> np.ndarray:
    p = _finite(probs, "probs", n)
    bad = np.flatnonzero((p < 0) | (p > 1))
    if len(bad):
        raise DataError(f"probs must be in [0, 1]; position {int(bad[0])} has {float(p[bad[0]])!r} ({len(bad)} bad)")
    return p
