"""Off-policy estimators for slates (long-format logs: one row per slot), each with a bootstrap CI over slates.

Slate s_i = (a_i1, ..., a_iL) with slot rewards r_ik; the value of a policy is E[sum_k r_k]. Behaviour / evaluation
probabilities: of the whole slate (pi(s)), of the item in its slot (pi(a_k, k), "marginal"), and of the slate prefix up
to slot k (pi(a_1..k), "cascade").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recforge.bandits.bootstrap import bootstrap_stat
from recforge.bandits.estimators import Estimate, EstimatorConfig
from recforge.bandits.simulators import SlatePolicyProbs
from recforge.data.feedback import LoggedFeedback
from recforge.errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class SlateOPEInput:
    """Per-row arrays (n,) of a long-format slate log plus the evaluation policy's probabilities of the logged slots."""

    reward: np.ndarray
    slate_id: np.ndarray
    pscore_item: np.ndarray
    pscore_slate: np.ndarray | None
    pscore_cascade: np.ndarray | None
    pi_item: np.ndarray
    pi_slate: np.ndarray | None
    pi_cascade: np.ndarray | None

    def __post_init__(self) -> None:
        n = len(self.reward)
        for name in ("slate_id", "pscore_item", "pscore_slate", "pscore_cascade", "pi_item", "pi_slate", "pi_cascade"):
            v = getattr(self, name)
            if v is not None and np.shape(v) != (n,):
                raise DataError(f"{name} must have shape ({n},), got {np.shape(v)}", column=name)

    def per_slate(self, row_terms: np.ndarray) -> np.ndarray:
        """Sum row terms within each slate: (n,) -> (n_slates,)."""
        _, inv = np.unique(self.slate_id, return_inverse=True)
        return np.bincount(inv, weights=row_terms)


def slate_ope_input(feedback: LoggedFeedback, evaluation: SlatePolicyProbs, slate_index: np.ndarray) -> SlateOPEInput:
    """Look up the evaluation policy's probabilities of the logged slates. slate_index: (n_slates,) indices into
    ``evaluation.slates`` of each logged slate (as returned by :func:`recforge.bandits.simulators.log_slates`)."""
    if feedback.slate_id is None or feedback.position is None:
        raise DataError("slate estimators need slate_id and position in the logged feedback")
    length = feedback.len_list
    if len(slate_index) * length != feedback.n_rounds:
        raise DataError(f"expected {feedback.n_rounds // length} slate indices, got {len(slate_index)}")
    pos = feedback.position
    return SlateOPEInput(
        reward=feedback.reward,
        slate_id=feedback.slate_id,
        pscore_item=feedback.pscore,
        pscore_slate=feedback.pscore_slate,
        pscore_cascade=feedback.pscore_cascade,
        pi_item=evaluation.marginal[feedback.action, pos],
        pi_slate=np.repeat(evaluation.slate[slate_index], length),
        pi_cascade=evaluation.prefix[slate_index].ravel(),
    )


class _SlateEstimator:
    """Base of the slate estimators (a ``recforge.protocols.Estimator`` on :class:`SlateOPEInput`); nothing to tune."""

    name: ClassVar[str] = "slate"
    config_class: ClassVar[type] = EstimatorConfig

    def __init__(self, config: EstimatorConfig | None = None):
        self.config = config if config is not None else EstimatorConfig()

    def row_terms(self, inp: SlateOPEInput) -> np.ndarray:
        """Per-row weighted rewards (n,); the estimate is the mean over slates of their per-slate sums."""
        raise NotImplementedError

    def estimate(self, inp: SlateOPEInput, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> Estimate:
        per_slate = inp.per_slate(self.row_terms(inp))
        value, lo, hi = bootstrap_stat(per_slate[:, None], lambda m: m[:, 0], n_boot=n_boot, alpha=alpha, seed=seed)
        return Estimate(self.name, value, lo, hi, len(per_slate))


def _need(arr: np.ndarray | None, name: str, est: str) -> np.ndarray:
    if arr is None:
        raise ConfigError(f"{est} needs {name}")
    return arr


class SlateStandardIPS(_SlateEstimator):
    """Standard slate IPS: V = (1/N) sum_i [pi_e(s_i) / pi_b(s_i)] sum_k r_ik. Unbiased for any reward structure, but the
    slate-level weights have huge variance (Swaminathan et al. 2017, "Off-policy evaluation for slate recommendation")."""

    name = "sips"

    def row_terms(self, inp: SlateOPEInput) -> np.ndarray:
        w = _need(inp.pi_slate, "pi_slate", self.name) / _need(inp.pscore_slate, "pscore_slate", self.name)
        return w * inp.reward


class SlateIndependentIPS(_SlateEstimator):
    """Independent IPS: V = (1/N) sum_i sum_k [pi_e(a_ik, k) / pi_b(a_ik, k)] r_ik. Unbiased when the reward of slot k
    depends only on the item in slot k (e.g. the position-based model) (Li et al. 2018, "Offline evaluation of ranking
    policies with click models")."""

    name = "iips"

    def row_terms(self, inp: SlateOPEInput) -> np.ndarray:
        return inp.pi_item / inp.pscore_item * inp.reward


class SlateRewardInteractionIPS(_SlateEstimator):
    """Reward-interaction IPS: V = (1/N) sum_i sum_k [pi_e(a_i1..k) / pi_b(a_i1..k)] r_ik. Unbiased when the reward of slot
    k depends on the items in slots 1..k only (cascade behaviour) (McInerney et al. 2020, "Counterfactual evaluation of
    slate recommendations with sequential reward interactions")."""

    name = "rips"

    def row_terms(self, inp: SlateOPEInput) -> np.ndarray:
        w = _need(inp.pi_cascade, "pi_cascade", self.name) / _need(inp.pscore_cascade, "pscore_cascade", self.name)
        return w * inp.reward
