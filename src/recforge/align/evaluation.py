"""How good and how calibrated a reward model is on held-out pairs: pairwise accuracy, AUC, ECE (with the
reliability table and plot), and temperature scaling fitted on validation pairs.

Pairs are scored two-sided: each pair is shown in a seeded random order (chosen first or rejected first), label 1
when the first item is the chosen one, so the labels are balanced and AUC / ECE are those of an ordinary binary
classifier of "is the first item preferred?".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recforge.align.reward import RewardModel
from recforge.data.preferences import PreferencePairs
from recforge.errors import DataError
from recforge.metrics.pointwise import ReliabilityTable, auc, log_loss, pairwise_accuracy, reliability_table
from recforge.protocols import Histories


@dataclass(frozen=True)
class PairReport:
    """Scores of a reward model on B pairs x K rejected items (N = B*K comparisons)."""

    accuracy: float  # share of comparisons with logit(chosen, rejected) > 0 (ties count 1/2)
    auc: float  # AUC of the two-sided labels
    ece: float  # expected calibration error (10 equal-width bins), two-sided
    log_loss: float  # two-sided binary log loss (nats)
    n: int  # comparisons
    reliability: ReliabilityTable
    by_source: dict[str, float]  # accuracy per pair source

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "auc": self.auc, "ece": self.ece, "log_loss": self.log_loss, "n": self.n,
                "accuracy_by_source": self.by_source}


def two_sided(margins: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of chosen over rejected (N,) -> (labels (N,), logits of "the first item wins" (N,)), the order of each
    comparison flipped by a seeded coin."""
    flip = np.random.default_rng(seed).random(len(margins)) < 0.5
    return (~flip).astype(np.float64), np.where(flip, -margins, margins)


def pair_report(model: RewardModel, pairs: PreferencePairs, seed: int = 0) -> PairReport:
    """Accuracy, AUC, ECE and reliability of ``model`` (at its current temperature) on ``pairs``."""
    margins = model.margins(pairs)
    return report_from_margins(margins, pairs, seed)


def report_from_margins(margins: np.ndarray, pairs: PreferencePairs, seed: int = 0) -> PairReport:
    """:func:`pair_report` from precomputed logits (B, K). DataError when a logit is NaN or infinite."""
    bad = np.flatnonzero(~np.isfinite(margins).all(axis=1))
    if len(bad):
        raise DataError(f"the reward model gave non-finite (NaN/inf) rewards for pair row(s) "
                        f"{', '.join(map(str, bad[:5]))}")
    flat = margins.ravel()
    labels, logits = two_sided(flat, seed)
    probs = 1.0 / (1.0 + np.exp(-logits))
    src = np.repeat(np.asarray(pairs.source), pairs.k)
    by_source = {name: pairwise_accuracy(flat[src == i]) for i, name in enumerate(pairs.sources) if (src == i).any()}
    return PairReport(accuracy=pairwise_accuracy(flat), auc=auc(labels, logits),
                      ece=reliability_table(labels, probs).ece(), log_loss=log_loss(labels, probs), n=len(flat),
                      reliability=reliability_table(labels, probs), by_source=by_source)


def fit_temperature(margins: np.ndarray, seed: int = 0) -> float:
    """The temperature T > 0 minimising the two-sided log loss of sigmoid(logit / T) on validation logits (N,):
    golden-section search over log T in [-4, 4] (the loss is unimodal in 1/T)."""
    labels, logits = two_sided(np.asarray(margins, np.float64).ravel(), seed)
    sign = 2 * labels - 1

    def nll(log_t: float) -> float:
        return float(np.logaddexp(0.0, -sign * logits / np.exp(log_t)).mean())

    lo, hi = -4.0, 4.0
    g = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def calibrate(model: RewardModel, valid: PreferencePairs, seed: int = 0) -> float:
    """Fit ``model.temperature`` on validation pairs (temperature scaling); returns it."""
    model.temperature = 1.0
    model.temperature = fit_temperature(model.margins(valid), seed)
    return model.temperature


def reliability_plot(tables: dict[str, ReliabilityTable], path: str | Path, title: str = "reliability") -> Path:
    """Reliability diagram (accuracy against confidence per bin, one line per table) as a PNG."""
    import matplotlib  # heavy: imported only when a plot is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for label, t in tables.items():
        filled = t.count > 0
        ax.plot(t.confidence[filled], t.accuracy[filled], marker="o", label=f"{label} (ECE {t.ece():.3f})")
    ax.set_xlabel("predicted P(first preferred)")
    ax.set_ylabel("observed share")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def list_reward(model: RewardModel, histories: Histories, items: np.ndarray, against: np.ndarray) -> np.ndarray:
    """The reward-model score of recommendation lists, per user: for history h and list item i, the mean over the
    comparison items j (fixed, e.g. 100 random unseen ones) of sigmoid(logit(h, i, j)), averaged over the list.
    items (U, k) (0 = an empty slot, skipped), against (U, J) -> (U,) float64."""
    items = np.asarray(items, dtype=np.int64)
    filled = items > 0
    win = model.win_rate(histories, np.where(filled, items, 1), against).double().numpy()
    bad = np.flatnonzero(~np.isfinite(win).all(axis=1))
    if len(bad):
        raise DataError(f"the reward model gave non-finite (NaN/inf) rewards for list row(s) "
                        f"{', '.join(map(str, bad[:5]))}")
    return (win * filled).sum(1) / np.maximum(filled.sum(1), 1)
