"""In-slate Thompson sampling for slate recommendation.

Eide & Zhou, "Dynamic Slate Recommendation with Gated Recurrent Units and Thompson Sampling" (2021) fill a slate slot by
slot, drawing a *fresh* posterior sample for every slot and taking its best action not yet in the slate. Compared with the
greedy slate (top-k of one sample, what :class:`~recforge.bandits.policies.mab.BernoulliTS` does with ``len_list > 1``)
this spreads exploration over the slate. Here the posterior is the Beta-Bernoulli one of each action's click rate; the
paper's GRU user model is out of scope (a context-free posterior keeps the policy testable against known truth).
"""

from __future__ import annotations

import numpy as np

from recforge.bandits.policies.mab import BernoulliTS


class InSlateTS(BernoulliTS):
    """Slot-by-slot Thompson sampling: slot k gets argmax of a new Beta posterior draw over actions not in slots < k."""

    name = "in-slate-ts"

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        a, b = self.posterior()
        out = np.empty((n, self.len_list), dtype=np.int64)
        taken = np.zeros((n, self.n_actions), dtype=bool)
        rows = np.arange(n)
        for slot in range(self.len_list):
            draw = self.rng.beta(a, b, size=(n, self.n_actions))
            draw[taken] = -np.inf
            out[:, slot] = draw.argmax(axis=1)
            taken[rows, out[:, slot]] = True
        return out
