"""Full-ranking validation inside the model layer: what early stopping measures, and the evaluator's building blocks.

``validation_metric`` returns exactly what ``recforge.evaluate.evaluate(model, split, (metric,), on="valid",
n_boot=0)`` reports for ``split = Split(train, test=valid, valid=valid)`` (tested), without importing the evaluator:
the same scoring (:func:`score_users`), the same masking and ranking (``models.rank``), the same relevant sets
(:class:`Targets`) and the same metric functions (``metrics.ranking``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.data.jagged import gather_jagged
from recforge.metrics.ranking import compute, parse_metric
from recforge.models.rank import SeenPolicy, mask_seen, repeated_items, seen_policy, top_k
from recforge.protocols import HistoryScorer, TimedHistoryScorer

#: What happens to a held-out target the seen policy masks (it can never be ranked): dropped from the user's relevant
#: set (a user left with none is not evaluated), or kept as a guaranteed miss.
MaskedTargets = Literal["drop", "miss"]


@dataclass(frozen=True)
class Targets:
    """Relevant (user, item) pairs of one held-out part after the seen policy.

    ``keys`` int64 (P,) sorted ``user * (n_items + 1) + item`` of the relevant pairs; ``n_rel`` int (n_users+1,)
    relevant items per user; ``users`` (U,) the users evaluated (n_rel > 0); ``n_masked`` target pairs masked by the
    policy, ``n_users_dropped`` users whose every target was masked (both 0 unless ``masked="drop"``)."""

    keys: np.ndarray
    n_rel: np.ndarray
    users: np.ndarray
    n_items: int
    n_masked: int
    n_users_dropped: int

    @classmethod
    def build(cls, target: Interactions, history: Interactions, policy: SeenPolicy | bool = "all-seen",
              repeatable: np.ndarray | None = None, masked: MaskedTargets = "drop") -> Targets:
        """Distinct (user, item) targets of ``target``; those ``policy`` masks in ``history`` are dropped or kept."""
        n = target.n_items + 1
        keys = np.unique(target.user.astype(np.int64) * n + target.item)
        hit_by_mask = np.zeros(len(keys), bool)
        policy = seen_policy(policy)
        if policy != "none":
            hit_by_mask = np.isin(keys, history.user.astype(np.int64) * n + history.item)
            if policy == "seen-except-repeatable":
                hit_by_mask &= ~np.isin(keys % n, repeatable)
        all_users = np.unique(keys // n)
        if masked == "drop":
            keys = keys[~hit_by_mask]
        n_rel = np.bincount(keys // n, minlength=target.n_users + 1)
        users = np.flatnonzero(n_rel)
        return cls(keys=keys, n_rel=n_rel, users=users, n_items=target.n_items,
                   n_masked=int(hit_by_mask.sum()), n_users_dropped=int(len(all_users) - len(users)))

    def hits(self, users: np.ndarray, items: torch.Tensor) -> np.ndarray:
        """bool (B, k): ``items[b, r]`` (dense ids, 0 = padding) is relevant for ``users[b]``."""
        keys = users.astype(np.int64)[:, None] * (self.n_items + 1) + items.numpy()
        if not len(self.keys):
            return np.zeros(keys.shape, bool)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return (self.keys[pos] == keys) & (items.numpy() > 0)


def repeatable_items(history: Interactions, repeatable: np.ndarray | None) -> np.ndarray | None:
    """The repeatable items of ``"seen-except-repeatable"``: ``repeatable`` when given, else every item some user
    consumed more than once in ``history``."""
    if repeatable is not None:
        return np.asarray(repeatable, dtype=np.int64)
    return repeated_items(history.user, history.item, history.n_items)


def score_users(model: Any, users: np.ndarray, history: Interactions | None) -> torch.Tensor:
    """Scores (B, n_items+1) of dense ``users``: from their ``history`` rows when given (a HistoryScorer; a
    TimedHistoryScorer also gets the timestamps), else from what the model was trained on."""
    if history is None:
        return model.score(users)
    items, offsets = history.sequences()
    jagged = gather_jagged(items, offsets, users)
    if isinstance(model, TimedHistoryScorer):  # e.g. HSTU's time-gap bias needs the timestamps
        return model.score_timed_histories(jagged, gather_jagged(history.time, offsets, users)[0])
    return model.score_histories(jagged)


def validation_metric(model: Any, train: Interactions, valid: Interactions, metric: str,
                      batch_size: int = 1024) -> float:
    """Mean ``metric`` over the users of ``valid``: full ranking, train items masked (targets among them dropped),
    histories from ``train`` for models that score ad-hoc histories. ``nan`` when no user is left."""
    _, k = parse_metric(metric)
    targets = Targets.build(valid, train)
    history = train if isinstance(model, HistoryScorer) else None
    seen = train.to_csr()
    per_user = []
    for start in range(0, len(targets.users), batch_size):
        batch = targets.users[start : start + batch_size]
        scores = score_users(model, batch, history).clone()  # an inference tensor cannot be edited in place
        mask_seen(scores, seen[batch])
        hits = targets.hits(batch, top_k(scores, k).items)
        per_user.append(compute([metric], hits, targets.n_rel[batch])[metric])
    return float(np.concatenate(per_user).mean()) if per_user else float("nan")


def early_stopping_metric(model: Any, train: Interactions, valid: Interactions | None, metric: str,
                          eval_users: int = 0, seed: int = 0) -> Callable[[], float] | None:
    """The Trainer's validation callback: :func:`validation_metric` of ``model`` on ``valid`` (None without
    validation data). With ``eval_users`` > 0 it measures a fixed, seeded sample of that many validation users: the
    same users every epoch, so epochs stay comparable."""
    if valid is None or not len(valid):
        return None
    users = valid.active_users()
    if eval_users and len(users) > eval_users:
        chosen = np.random.default_rng(seed).choice(users, eval_users, replace=False)
        valid = valid.with_rows(np.isin(valid.user, chosen))
    return lambda: validation_metric(model, train, valid, metric)
