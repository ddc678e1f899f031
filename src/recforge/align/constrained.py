"""Constraints for alignment (constrained RLHF): a list metric of the evaluation suite that the aligned model must keep,
e.g. ``coverage@10>=sft`` (catalogue coverage of the top-10 lists at least the unaligned model's).

A constraint enters iterative alignment (:func:`recforge.align.ipa.ipa`) twice:

- **pair selection**: each generated candidate i for history h is ranked by r(h, i) + sum_c lambda_c g_c(h, i), the
  reward-model score plus, per constraint, its Lagrange multiplier times the item's *gain* g_c in [0, 1] (how much the
  item helps the metric): ``coverage`` 1 / (1 + e_i) with e_i the number of current top-k lists holding i;
  ``novelty`` the item's self-information -log2 p(i) (p: training popularity share) over its maximum; ``ild`` the mean
  cosine distance of the item's features to the history's current top-k list, clipped to [0, 1];
- **dual ascent**: after every round the metric m_c of the current top-k lists is measured (by the evaluation suite's
  function, passed in as ``measure``) and lambda_c <- max(0, lambda_c + step * v_c), with the relative violation
  v_c = (target - m_c) / |target| for ``>=`` (negated for ``<=``).

A round is *feasible* when every constraint holds within the relative ``tolerance``; only feasible rounds (the
unaligned model always is, for a target of ``sft``) can be kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recforge.errors import ConfigError

METRICS = ("coverage", "novelty", "ild")
_PATTERN = re.compile(r"^\s*(?P<metric>[a-z_]+)@(?P<k>\d+)\s*(?P<op>>=|<=)\s*(?P<target>sft|[-+0-9.eE]+)\s*$")

#: the top-k lists of the contexts (B, k) -> the metric's value (the evaluation suite's function)
Measure = Callable[[np.ndarray], float]
#: (candidates (B, N), histories' current top-k lists (B, k)) -> per-candidate gain (B, N) in [0, 1]
Gain = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Constraint:
    """``metric@k op target``; ``target`` None means the unaligned (reference, "sft") model's value."""

    metric: Literal["coverage", "novelty", "ild"]
    k: int = 10
    op: Literal[">=", "<="] = ">="
    target: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"constraint metric must be one of {METRICS}, got {self.metric!r}")
        if self.k < 1:
            raise ConfigError(f"constraint cut-off must be >= 1, got {self.k}")
        if self.op not in (">=", "<="):
            raise ConfigError(f"constraint operator must be '>=' or '<=', got {self.op!r}")

    def __str__(self) -> str:
        return f"{self.metric}@{self.k}{self.op}{'sft' if self.target is None else self.target}"

    def violation(self, value: float, target: float) -> float:
        """Relative violation (> 0: violated) of ``value`` against the resolved ``target``."""
        v = (target - value) / max(abs(target), 1e-12)
        return v if self.op == ">=" else -v


def parse_constraint(text: str) -> Constraint:
    """``"coverage@10>=sft"``, ``"novelty@10>=9.5"``, ``"ild@10>=sft"`` -> :class:`Constraint`; ConfigError naming
    the expected form otherwise."""
    m = _PATTERN.match(text)
    if m is None:
        raise ConfigError(f"constraint must look like METRIC@K>=TARGET or METRIC@K<=TARGET with METRIC in {METRICS} "
                          f"and TARGET a number or 'sft' (e.g. coverage@10>=sft), got {text!r}")
    target = m["target"]
    try:
        value = None if target == "sft" else float(target)
    except ValueError:
        raise ConfigError(f"constraint target must be a number or 'sft', got {target!r}") from None
    return Constraint(metric=m["metric"], k=int(m["k"]), op=m["op"], target=value)  # type: ignore[arg-type]


@dataclass
class BoundConstraint:
    """A constraint with its measure and gain on one dataset; ``target`` is resolved on the reference model when
    the constraint says ``sft``; ``multiplier`` is its Lagrange multiplier (updated by dual ascent)."""

    constraint: Constraint
    measure: Measure
    gain: Gain
    target: float | None = None
    multiplier: float = 0.0

    def update(self, value: float, step: float) -> float:
        """One dual-ascent step from the measured ``value``; returns the relative violation."""
        if self.target is None:
            raise ConfigError(f"constraint {self.constraint} has no target yet (measure the reference first)")
        v = self.constraint.violation(value, self.target)
        self.multiplier = max(0.0, self.multiplier + step * v)
        return v

    def feasible(self, value: float, tolerance: float) -> bool:
        """Whether ``value`` meets the target within the relative ``tolerance``."""
        return self.target is not None and self.constraint.violation(value, self.target) <= tolerance


def coverage_gain(n_items: int) -> Gain:
    """Gain 1 / (1 + e_i), e_i = in how many of the current top-k lists item i appears: unexposed items gain 1."""

    def gain(candidates: np.ndarray, lists: np.ndarray) -> np.ndarray:
        exposure = np.bincount(np.asarray(lists, np.int64).ravel(), minlength=n_items + 1)
        exposure[0] = 0
        return 1.0 / (1.0 + exposure[np.asarray(candidates, np.int64)])

    return gain


def novelty_gain(popularity: np.ndarray) -> Gain:
    """Gain -log2 p(i) / max_j(-log2 p(j)), p the training popularity share (``popularity`` (n_items+1,)); items
    never seen in training get the largest observed novelty (the evaluation suite's EFD convention)."""
    pop = np.asarray(popularity, np.float64)
    total = pop[1:].sum()
    positive = pop[1:][pop[1:] > 0]
    if total <= 0 or not len(positive):
        raise ConfigError("novelty needs items with a positive training popularity")
    nov = np.full(len(pop), -np.log2(positive.min() / total))
    nov[pop > 0] = -np.log2(pop[pop > 0] / total)
    nov = nov / nov.max() if nov.max() > 0 else np.zeros_like(nov)

    def gain(candidates: np.ndarray, lists: np.ndarray) -> np.ndarray:
        return nov[np.asarray(candidates, np.int64)]

    return gain


def ild_gain(features: np.ndarray) -> Gain:
    """Gain = mean cosine distance (1 - cos) of the candidate's ``features`` (n_items+1, F) row to the items of the
    history's current top-k list, clipped to [0, 1]; an all-zero row has distance 1 to everything."""
    f = np.asarray(features.toarray() if hasattr(features, "toarray") else features, np.float64)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    unit = np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)

    def gain(candidates: np.ndarray, lists: np.ndarray) -> np.ndarray:
        lists = np.asarray(lists, np.int64)
        valid = (lists > 0)[..., None]
        centre = (unit[lists] * valid).sum(1) / np.maximum(valid.sum(1), 1)  # (B, F): mean unit vector of the list
        cos = np.einsum("bnf,bf->bn", unit[np.asarray(candidates, np.int64)], centre)
        return np.clip(1.0 - cos, 0.0, 1.0)

    return gain
