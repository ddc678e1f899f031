"""Off-policy estimators of a policy's value from logged bandit feedback, each with a bootstrap confidence interval.

Notation: n logged rounds i with context x_i, action a_i (at position k_i), reward r_i and behaviour propensity
p_i = pi_b(a_i | x_i, k_i). The evaluation policy's probability of the logged action is pi_e(a_i | x_i, k_i), the importance
weight w_i = pi_e / p_i. A reward model q(x, a, k) ~ E[r | x, a, k] gives q_i = q(x_i, a_i, k_i) and
qpi_i = sum_a pi_e(a | x_i, k_i) q(x_i, a, k_i). All estimators read these five arrays from :class:`OPEInput`.

Every estimator is a ``recforge.protocols.Estimator`` registered in ``recforge.registry.ESTIMATORS`` with a config
dataclass (``config_class``); :func:`make_estimator` builds one from ``{"name": <key>, **fields}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from recforge.bandits.bootstrap import bootstrap_stat
from recforge.data.feedback import LoggedFeedback
from recforge.errors import ConfigError, DataError
from recforge.registry import configured

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class OPEInput:
    """Per-round arrays, each of shape (n,): reward, pscore (behaviour), pi_e (evaluation prob. of the logged action),
    q_logged = q(x_i, a_i) and q_pi = E_{a ~ pi_e}[q(x_i, a)] (both None when no reward model is given)."""

    reward: np.ndarray
    pscore: np.ndarray
    pi_e: np.ndarray
    q_logged: np.ndarray | None = None
    q_pi: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.reward)
        for name in ("pscore", "pi_e", "q_logged", "q_pi"):
            v = getattr(self, name)
            if v is not None and np.shape(v) != (n,):
                raise DataError(f"{name} must have shape ({n},), got {np.shape(v)}", column=name)
        if not (np.all(self.pscore > 0) and np.all(self.pscore <= 1)):
            raise DataError("pscore must satisfy 0 < p <= 1", column="pscore")
        if not (np.all(self.pi_e >= 0) and np.all(self.pi_e <= 1 + 1e-9)):
            raise DataError("pi_e must be a probability in [0, 1]", column="pi_e")

    @property
    def weight(self) -> np.ndarray:
        """Importance weights w_i = pi_e / pscore, shape (n,)."""
        return self.pi_e / self.pscore

    def need_model(self, estimator: str) -> tuple[np.ndarray, np.ndarray]:
        """(q_logged, q_pi), or a ConfigError naming the estimator that needs them."""
        if self.q_logged is None or self.q_pi is None:
            raise ConfigError(f"estimator {estimator!r} needs a reward model (q_logged and q_pi)")
        return self.q_logged, self.q_pi


RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""A reward model: (row indices (m,), positions (m,)) -> predicted rewards (m, n_actions)."""
Terms = tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]
"""Per-round columns (n, k) and the statistic mapping their means (B, k) to estimates (B,)."""


def ope_input(
    feedback: LoggedFeedback,
    action_dist: np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray],
    reward_model: RewardFn | None = None,
    chunk: int = 65536,
) -> OPEInput:
    """Reduce an evaluation policy (and optionally a reward model) to the per-round arrays of :class:`OPEInput`.

    action_dist: (K,) or (K, L) for a context-free policy (probabilities over actions [per position]), (n, K) or (n, K, L)
    per round, or a function (rows (m,), positions (m,)) -> (m, K) distribution. The reward model is called on chunks of
    ``chunk`` rounds so memory stays bounded by chunk x K.
    """
    n, k_actions = feedback.n_rounds, feedback.n_actions
    rows, pos, act = np.arange(n), feedback.pos(), feedback.action

    def dist_rows(sl: slice) -> np.ndarray:
        if callable(action_dist):
            return np.asarray(action_dist(rows[sl], pos[sl]), dtype=np.float64)
        d = np.asarray(action_dist, dtype=np.float64)
        if d.shape == (k_actions,):
            return np.broadcast_to(d, (sl.stop - sl.start, k_actions))
        if d.ndim == 2 and d.shape == (k_actions, feedback.len_list):
            return d.T[pos[sl]]
        if d.ndim == 2 and d.shape == (n, k_actions):
            return d[sl]
        if d.ndim == 3 and d.shape == (n, k_actions, feedback.len_list):
            return d[rows[sl], :, pos[sl]]
        raise DataError(
            f"action_dist must have shape ({k_actions},), ({k_actions}, {feedback.len_list}), ({n}, {k_actions}) or "
            f"({n}, {k_actions}, {feedback.len_list}); got {d.shape}"
        )

    pi_e = np.empty(n)
    q_logged = np.empty(n) if reward_model is not None else None
    q_pi = np.empty(n) if reward_model is not None else None
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        dist = dist_rows(sl)
        if dist.shape != (sl.stop - sl.start, k_actions):
            raise DataError(f"action distribution rows must have shape (m, {k_actions}), got {dist.shape}")
        if not np.allclose(dist.sum(axis=1), 1.0, atol=1e-6):
            raise DataError("the evaluation policy's action distribution must sum to 1 over actions (per round and position)")
        local = np.arange(sl.stop - sl.start)
        pi_e[sl] = dist[local, act[sl]]
        if reward_model is not None:
            q = np.asarray(reward_model(rows[sl], pos[sl]), dtype=np.float64)
            q_logged[sl] = q[local, act[sl]]
            q_pi[sl] = np.einsum("mk,mk->m", dist, q)
    return OPEInput(feedback.reward, feedback.pscore, pi_e, q_logged, q_pi)


@dataclass(frozen=True)
class Estimate:
    """One off-policy estimate with its percentile bootstrap CI."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    n_rounds: int
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return {"estimator": self.estimator, "value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "n_rounds": self.n_rounds, **({"info": self.info} if self.info else {})}


def _mean(m: np.ndarray) -> np.ndarray:
    return m[:, 0]


def _ratio(m: np.ndarray) -> np.ndarray:
    return m[:, 0] / m[:, 1]


def _mean_plus_ratio(m: np.ndarray) -> np.ndarray:
    return m[:, 0] + m[:, 1] / m[:, 2]


@dataclass(frozen=True)
class EstimatorConfig:
    """An estimator with nothing to tune."""


class OffPolicyEstimator:
    """Base: subclasses return (columns (n, k), stat) from :meth:`terms`; :meth:`estimate` adds the bootstrap CI."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type] = EstimatorConfig

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise ConfigError(f"estimator {self.name!r} expects a {self.config_class.__name__}, "
                              f"got {type(self.config).__name__}")

    def terms(self, inp: OPEInput) -> Terms:
        raise NotImplementedError

    def estimate(self, inp: OPEInput, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> Estimate:
        cols, stat = self.terms(inp)
        value, lo, hi = bootstrap_stat(cols, stat, n_boot=n_boot, alpha=alpha, seed=seed)
        return Estimate(self.name, value, lo, hi, len(inp.reward), self.info())

    def info(self) -> dict:
        """Hyperparameters used (reported with the estimate)."""
        return {}


class DirectMethod(OffPolicyEstimator):
    """DM: V = (1/n) sum_i qpi_i. Unbiased only if the reward model is (Beygelzimer & Langford 2009; Dudik et al. 2011)."""

    name = "dm"

    def terms(self, inp: OPEInput) -> Terms:
        _, q_pi = inp.need_model(self.name)
        return q_pi[:, None], _mean


class IPS(OffPolicyEstimator):
    """IPS: V = (1/n) sum_i w_i r_i with w_i = pi_e(a_i|x_i)/p_i. Unbiased when p_i > 0 wherever pi_e > 0
    (Horvitz & Thompson 1952; Strehl et al. 2010)."""

    name = "ips"

    def terms(self, inp: OPEInput) -> Terms:
        return (inp.weight * inp.reward)[:, None], _mean


class SNIPS(OffPolicyEstimator):
    """Self-normalised IPS: V = sum_i w_i r_i / sum_i w_i. Slightly biased, lower variance (Swaminathan & Joachims 2015)."""

    name = "snips"

    def terms(self, inp: OPEInput) -> Terms:
        w = inp.weight
        return np.stack([w * inp.reward, w], axis=1), _ratio


class DoublyRobust(OffPolicyEstimator):
    """DR: V = (1/n) sum_i [qpi_i + w_i (r_i - q_i)]. Unbiased if either the propensities or the reward model are correct
    (Dudik, Langford & Li 2011)."""

    name = "dr"

    def shrink(self, w: np.ndarray) -> np.ndarray:
        """The weight used on the residual; identity for plain DR."""
        return w

    def terms(self, inp: OPEInput) -> Terms:
        q, q_pi = inp.need_model(self.name)
        return (q_pi + self.shrink(inp.weight) * (inp.reward - q))[:, None], _mean


class SNDR(OffPolicyEstimator):
    """Self-normalised DR: V = (1/n) sum_i qpi_i + sum_i w_i (r_i - q_i) / sum_i w_i (Kallus & Uehara 2019)."""

    name = "sndr"

    def terms(self, inp: OPEInput) -> Terms:
        q, q_pi = inp.need_model(self.name)
        w = inp.weight
        return np.stack([q_pi, w * (inp.reward - q), w], axis=1), _mean_plus_ratio


def _check_tuned(param: str, value: float, candidates: tuple[float, ...]) -> None:
    if not value > 0 or any(not c > 0 for c in candidates):
        raise ConfigError(f"{param} and its candidates must be > 0, got {value!r} / {list(candidates)!r}")


@dataclass(frozen=True)
class SwitchDRConfig:
    tau: float = 100.0  # weights above tau fall back to DM
    candidates: tuple[float, ...] = ()  # when given, tau is tuned among these (estimated MSE)

    def __post_init__(self) -> None:
        _check_tuned("tau", self.tau, self.candidates)


@dataclass(frozen=True)
class DRShrinkageConfig:
    lam: float = 100.0  # shrinkage lambda: inf = DR, 0 = DM
    candidates: tuple[float, ...] = ()  # when given, lambda is tuned among these (estimated MSE)

    def __post_init__(self) -> None:
        _check_tuned("lam", self.lam, self.candidates)


class _Tuned(DoublyRobust):
    """A DR variant with one hyperparameter (config field ``param_field``); ``candidates`` (when given) are tuned by
    minimising an estimated MSE: var(terms)/n + bias^2, with the bias estimated against plain DR's residual term (Su et
    al. 2020, Sec. 5). The value used is reported in ``info`` as ``param_name``."""

    param_field: ClassVar[str] = "param"
    param_name: ClassVar[str] = "param"

    def __init__(self, config: Any = None):
        super().__init__(config)
        self.chosen = float(getattr(self.config, self.param_field))

    def _shrink_with(self, w: np.ndarray, param: float) -> np.ndarray:
        raise NotImplementedError

    def shrink(self, w: np.ndarray) -> np.ndarray:
        return self._shrink_with(w, self.chosen)

    def terms(self, inp: OPEInput) -> Terms:
        if self.config.candidates:
            q, q_pi = inp.need_model(self.name)
            w, resid, n = inp.weight, inp.reward - q, len(inp.reward)
            best, best_mse = float(getattr(self.config, self.param_field)), np.inf
            for c in self.config.candidates:
                ws = self._shrink_with(w, c)
                bias = float(np.mean((w - ws) * resid))
                mse = float(np.var(q_pi + ws * resid)) / n + bias * bias
                if mse < best_mse:
                    best, best_mse = c, mse
            self.chosen = float(best)
        return super().terms(inp)

    def info(self) -> dict:
        return {self.param_name: self.chosen}


class SwitchDR(_Tuned):
    """Switch-DR: V = (1/n) sum_i [qpi_i + w_i 1{w_i <= tau} (r_i - q_i)]; rounds with weights above tau fall back to DM
    (Wang, Agarwal & Dudik 2017)."""

    name = "switch-dr"
    config_class = SwitchDRConfig
    param_field = param_name = "tau"

    def _shrink_with(self, w: np.ndarray, param: float) -> np.ndarray:
        return np.where(w <= param, w, 0.0)


class DRShrinkage(_Tuned):
    """DR with optimistic shrinkage (DR-os): V = (1/n) sum_i [qpi_i + w~_i (r_i - q_i)], w~ = lambda w / (w^2 + lambda)
    (Su, Dimakopoulou, Krishnamurthy & Dudik 2020). lambda -> inf recovers DR, lambda -> 0 recovers DM."""

    name = "dr-os"
    config_class = DRShrinkageConfig
    param_field, param_name = "lam", "lambda"

    def _shrink_with(self, w: np.ndarray, param: float) -> np.ndarray:
        return param * w / (w * w + param)


def make_estimator(spec: Mapping[str, Any]) -> OffPolicyEstimator:
    """The estimator ``spec["name"]`` (``recforge.registry.ESTIMATORS``) with its config from the other fields, e.g.
    ``{"name": "switch-dr", "tau": 50.0}``."""
    cls, config = configured("estimator", spec, prefix=f"{spec.get('name', 'estimator')}.")
    return cls(config)


def estimate_all(
    inp: OPEInput, names: tuple[str, ...] = ("dm", "ips", "snips", "dr", "sndr", "switch-dr", "dr-os"),
    n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
) -> list[Estimate]:
    """Run several estimators on the same input (those needing a reward model are skipped when there is none)."""
    out = []
    for name in names:
        if inp.q_pi is None and name in ("dm", "dr", "sndr", "switch-dr", "dr-os"):
            logger.info("skipping %s: no reward model", name)
            continue
        out.append(make_estimator({"name": name}).estimate(inp, n_boot=n_boot, alpha=alpha, seed=seed))
    return out
