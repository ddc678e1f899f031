"""Bootstrap CIs that also resample the reward model.

:meth:`Estimator.estimate` bootstraps with the reward model held fixed, which ignores the model's own estimation error
(DM's interval is then far too narrow). Here every bootstrap replicate resamples the logged rows, refits the model on the
replicate and recomputes every estimator: B model fits, so it is slower and opt-in (``recforge ope --refit-boot B``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recforge.bandits.estimators import Estimate, make_estimator, ope_input
from recforge.data.feedback import LoggedFeedback
from recforge.errors import ConfigError

ModelFactory = Callable[[LoggedFeedback], Callable[[np.ndarray, np.ndarray], np.ndarray]]


def refit_bootstrap(
    feedback: LoggedFeedback,
    action_dist: np.ndarray,
    fit_model: ModelFactory,
    names: tuple[str, ...] = ("dm", "ips", "snips", "dr", "sndr", "switch-dr", "dr-os"),
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[Estimate]:
    """Point estimates on the full log and percentile CIs over ``n_boot`` replicates that refit the reward model.

    action_dist: a context-free distribution, (K,) or (K, L) (per-round distributions would need resampling too).
    fit_model: logged feedback -> reward function (rows, positions) -> (m, K) on that feedback's rows."""
    if n_boot < 2:
        raise ConfigError(f"n_boot must be >= 2, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    estimators = [make_estimator({"name": n}) for n in names]
    full = ope_input(feedback, action_dist, fit_model(feedback))
    values = [e.estimate(full, n_boot=0).value for e in estimators]
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, len(estimators)))
    for b in range(n_boot):
        fb = feedback.subset(rng.integers(0, feedback.n_rounds, feedback.n_rounds))
        inp = ope_input(fb, action_dist, fit_model(fb))
        reps[b] = [e.estimate(inp, n_boot=0).value for e in estimators]
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2], axis=0)
    return [Estimate(e.name, v, float(a), float(c), feedback.n_rounds, {**e.info(), "ci": "refit-bootstrap", "n_boot": n_boot})
            for e, v, a, c in zip(estimators, values, lo, hi)]
