"""Replay: offline evaluation of a *learning* policy on uniformly random logs.

Li, Chu, Langford & Wang, "Unbiased offline evaluation of contextual-bandit-based news article recommendation
algorithms" (WSDM 2011): stream the log in order; whenever the policy's choice for the logged slot equals the logged
action, keep the round, reveal its reward to the policy and let it learn; otherwise skip the round. With uniform logging
the kept rounds are distributed as if the policy had been run online, so the mean kept reward estimates the policy's
online value after ~ n / n_actions rounds. Only valid for uniformly random logging policies (checked).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from recforge.bandits.bootstrap import bootstrap_stat
from recforge.data.feedback import LoggedFeedback
from recforge.errors import ConfigError
from recforge.protocols import Policy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayResult:
    """Rewards of the matched rounds (k,), their mean with a bootstrap CI, and how many rows were scanned."""

    rewards: np.ndarray
    value: float
    ci_low: float
    ci_high: float
    n_scanned: int

    @property
    def n_matched(self) -> int:
        return len(self.rewards)


def replay(
    policy: Policy, feedback: LoggedFeedback, batch_size: int = 1, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
    rtol: float = 1e-3,
) -> ReplayResult:
    """Replay ``policy`` on uniformly random logs (rows taken in their stored order, in batches of ``batch_size``).

    For slate logs the policy proposes a full slate and a row matches when the slate's item in the logged slot equals the
    logged action. The log's contexts (when it has them) are handed to the policy; a policy that needs contexts on a
    log without them raises a ConfigError. ``rtol``: how far propensities may deviate from 1/n_actions before the log
    is rejected as non-uniform.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if policy.n_actions != feedback.n_actions or policy.len_list != feedback.len_list:
        raise ConfigError(f"policy (n_actions={policy.n_actions}, len_list={policy.len_list}) does not match the log "
                          f"(n_actions={feedback.n_actions}, len_list={feedback.len_list})")
    uniform = 1.0 / feedback.n_actions
    if not np.allclose(feedback.pscore, uniform, rtol=rtol):
        raise ConfigError(f"replay needs uniformly random logs (pscore = 1/n_actions = {uniform:.6g}); got pscores in "
                          f"[{feedback.pscore.min():.6g}, {feedback.pscore.max():.6g}] -- use an off-policy estimator instead")
    ctx = feedback.context
    pos = feedback.pos()
    kept: list[np.ndarray] = []
    for start in range(0, feedback.n_rounds, batch_size):
        sl = slice(start, min(feedback.n_rounds, start + batch_size))
        m = sl.stop - sl.start
        x = None if ctx is None else ctx[sl]
        slates = policy.select(x, m)
        chosen = slates[np.arange(m), pos[sl]]
        match = chosen == feedback.action[sl]
        if match.any():
            r = feedback.reward[sl][match]
            policy.update(None if x is None else x[match], chosen[match][:, None], r[:, None])
            kept.append(r)
    rewards = np.concatenate(kept) if kept else np.zeros(0)
    if len(rewards) == 0:
        raise ConfigError(f"no logged row matched the policy's choices in {feedback.n_rounds} rows; use a longer log")
    value, lo, hi = bootstrap_stat(rewards[:, None], lambda mm: mm[:, 0], n_boot=n_boot, alpha=alpha, seed=seed)
    logger.info("replay %s: %d of %d rows matched", type(policy).__name__, len(rewards), feedback.n_rounds)
    return ReplayResult(rewards, value, lo, hi, feedback.n_rounds)
