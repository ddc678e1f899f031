"""The one ranking path: top-k over scores or candidates, seen/exclude masking, and one tie rule.

Every caller that turns scores into a ranked list goes through here: ``Recommender.recommend`` and
``recommend_history``, the server, the evaluator and early stopping on validation.

**Tie rule.** Items are ordered by score (higher first); equal scores are ordered by dense item index (lower first).
``NaN`` counts as masked. Masked items (``-inf``) are never returned: a row with fewer than ``k`` rankable items is
padded with item 0 and score ``-inf``. The order is a total order over the rankable items, so ``top_k(s, k1)`` is a
prefix of ``top_k(s, k2)`` for ``k1 < k2``: a metric at cut-off 10 does not depend on which other cut-offs were asked.

Speed: one ``torch.topk`` of ``k + 1`` per row; only rows where two of those ``k + 1`` finite scores are equal get the
exact treatment (a lexicographic sort of the ``k + 1`` candidates and, when the tie crosses the cut-off, one scan of the
row for the lowest-index members of the boundary group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from recforge.errors import ConfigError

#: Which already-consumed items are masked before ranking (see :func:`seen_policy`).
SeenPolicy = Literal["all-seen", "none", "seen-except-repeatable"]
SEEN_POLICIES: tuple[str, ...] = ("all-seen", "none", "seen-except-repeatable")


def seen_policy(value: SeenPolicy | bool) -> SeenPolicy:
    """Normalise an ``exclude_seen`` argument: ``True`` is ``"all-seen"``, ``False`` is ``"none"``.

    - ``"all-seen"``: every item in the user's history is masked.
    - ``"none"``: nothing is masked (re-consumption of anything can be recommended).
    - ``"seen-except-repeatable"``: history items are masked unless they are *repeatable* (an item set given by the
      caller; the evaluator's default is every item some user consumed more than once in the history it masks).
    """
    if value is True:
        return "all-seen"
    if value is False:
        return "none"
    if value not in SEEN_POLICIES:
        raise ConfigError(f"exclude_seen must be one of {', '.join(SEEN_POLICIES)} (or True/False), got {value!r}")
    return value


def repeated_items(user: np.ndarray, item: np.ndarray, n_items: int) -> np.ndarray:
    """Dense ids of the items some user consumed more than once in the log given as aligned (N,) arrays -> (R,)."""
    keys = user.astype(np.int64) * (n_items + 1) + item
    uniq, counts = np.unique(keys, return_counts=True)
    return np.unique(uniq[counts > 1] % (n_items + 1))


@dataclass(frozen=True)
class Ranked:
    """Top-k of a batch. ``items`` int64 (B, k) dense ids best first, 0 where a row ran out of rankable items;
    ``scores`` float (B, k), ``-inf`` at padding; ``next_score`` (B,) the (k+1)-th best score (``-inf`` if none)."""

    items: torch.Tensor
    scores: torch.Tensor
    next_score: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        """bool (B, k): True where a real item (not padding) is ranked."""
        return self.items > 0

    def tied_at(self, k: int) -> torch.Tensor:
        """bool (B,): the k-th and (k+1)-th best rankable scores are equal, so the tie rule decides what enters the
        top k."""
        if not 1 <= k <= self.scores.shape[1]:
            raise ConfigError(f"k must be in 1..{self.scores.shape[1]}, got {k}")
        kth = self.scores[:, k - 1]
        after = self.scores[:, k] if k < self.scores.shape[1] else self.next_score
        return (kth > -torch.inf) & (kth == after)

    def lists(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per row, (items int64 (n,), scores float (n,)) without the padding."""
        items, scores, valid = self.items.numpy(), self.scores.numpy(), self.valid.numpy()
        return [(i[v], s[v]) for i, s, v in zip(items, scores, valid)]


def _lexsort(vals: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder each row of (vals, idx) (R, m) by value descending, then index ascending."""
    order = np.lexsort((idx, -vals), axis=-1)
    return np.take_along_axis(vals, order, -1), np.take_along_axis(idx, order, -1)


def top_k(scores: torch.Tensor, k: int) -> Ranked:
    """Top ``k`` of each row of ``scores`` (B, n_items+1) under the tie rule. Column 0 (padding) is never returned.

    ``scores`` is not modified (rows with NaN are copied first). ``k`` may exceed the number of columns: the rest of
    each row is padding. The small (B, k+1) arrays are reordered in numpy: torch's per-call overhead on tiny tensors
    would cost more than the ranking itself.
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    b, n = scores.shape
    kk = min(k + 1, n)
    top = torch.topk(scores, kk, dim=1)  # NaN sorts above everything, so a row holding one shows it here
    vals, idx = top.values.numpy().copy(), top.indices.numpy().copy()
    if (np.isnan(vals) | (idx == 0) & (vals > -np.inf)).any():  # rare: clean a copy and rank again
        scores = torch.nan_to_num(scores, nan=-torch.inf, posinf=torch.inf, neginf=-torch.inf)
        scores[:, 0] = -torch.inf
        top = torch.topk(scores, kk, dim=1)
        vals, idx = top.values.numpy().copy(), top.indices.numpy().copy()
    rows = np.flatnonzero(((vals[:, 1:] == vals[:, :-1]) & (vals[:, 1:] > -np.inf)).any(1))
    if len(rows):
        vals[rows], idx[rows] = _lexsort(vals[rows], idx[rows])
        _resolve_boundary(scores, vals, idx, rows, min(k, n))
    idx[vals == -np.inf] = 0
    next_score = vals[:, k] if kk > k else np.full(b, -np.inf, dtype=vals.dtype)
    items, top_vals = idx[:, : min(k, kk)], vals[:, : min(k, kk)]
    if items.shape[1] < k:  # fewer columns than k: pad
        pad = ((0, 0), (0, k - items.shape[1]))
        items, top_vals = np.pad(items, pad), np.pad(top_vals, pad, constant_values=-np.inf)
    return Ranked(items=torch.from_numpy(np.ascontiguousarray(items)),
                  scores=torch.from_numpy(np.ascontiguousarray(top_vals)),
                  next_score=torch.from_numpy(np.ascontiguousarray(next_score)))


def _resolve_boundary(scores: torch.Tensor, vals: np.ndarray, idx: np.ndarray, rows: np.ndarray, k: int) -> None:
    """Where the k-th best finite score of a row is tied with one outside ``idx``, replace the boundary group's
    members in positions < k by the group's lowest-index items (in place on ``vals`` / ``idx``, (B, k+1))."""
    if k >= vals.shape[1]:
        return  # k covers every column: nothing lies outside
    t = vals[rows, k - 1]
    boundary = (t > -np.inf) & (vals[rows, k] == t)
    rows, t = rows[boundary], t[boundary]
    above = (vals[rows, :k] > t[:, None]).sum(1)  # members of higher groups: all already in the top-(k+1)
    full = scores.detach().cpu().numpy()
    for row, value, first in zip(rows.tolist(), t, above.tolist()):  # one view and one compare per row
        idx[row, first:k] = np.flatnonzero(full[row, 1:] == value)[: k - first] + 1  # ascending; column 0 is padding
        vals[row, first:k] = value


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def top_k_candidates(items: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray, k: int,
                     banned: list[np.ndarray] | None = None) -> Ranked:
    """Top ``k`` among per-row candidates (models and indexes that return candidates instead of a full row).

    ``items`` int (B, C) dense ids (0 = no candidate), ``scores`` (B, C); ``banned[b]`` lists dense ids masked in row
    b. Duplicated candidates keep their best score. Same tie rule and padding as :func:`top_k`.
    """
    ids = _numpy(items).astype(np.int64)  # copies: the caller's arrays are not modified
    vals = _numpy(scores).astype(np.float32)
    vals[np.isnan(vals) | (ids <= 0)] = -np.inf
    for row, ban in enumerate(banned or []):
        vals[row, np.isin(ids[row], ban)] = -np.inf
    vals, ids = _lexsort(vals, ids)  # (score desc, item asc): a repeated id's first occurrence holds its best score
    order = np.argsort(ids, axis=1, kind="stable")
    by_id = np.take_along_axis(ids, order, 1)
    repeat = np.zeros(ids.shape, bool)
    repeat[:, 1:] = by_id[:, 1:] == by_id[:, :-1]
    np.put_along_axis(vals, order, np.where(repeat, -np.inf, np.take_along_axis(vals, order, 1)), 1)
    vals, ids = _lexsort(vals, ids)
    ids[vals == -np.inf] = 0
    if ids.shape[1] < k + 1:
        pad = ((0, 0), (0, k + 1 - ids.shape[1]))
        ids, vals = np.pad(ids, pad), np.pad(vals, pad, constant_values=-np.inf)
    return Ranked(items=torch.from_numpy(np.ascontiguousarray(ids[:, :k])),
                  scores=torch.from_numpy(np.ascontiguousarray(vals[:, :k])), next_score=torch.from_numpy(vals[:, k].copy()))


def mask_pairs(scores: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> None:
    """Set ``scores[rows[i], cols[i]] = -inf`` in place (int arrays (N,))."""
    if len(rows):
        scores[torch.from_numpy(np.asarray(rows, np.int64)), torch.from_numpy(np.asarray(cols, np.int64))] = -torch.inf


def mask_columns(scores: torch.Tensor, cols: np.ndarray) -> None:
    """Mask dense item ids ``cols`` (N,) in every row, in place."""
    cols = np.asarray(cols, np.int64)
    if len(cols):
        scores[:, torch.from_numpy(cols)] = -torch.inf


def mask_seen(scores: torch.Tensor, seen: sp.csr_array, policy: SeenPolicy | bool = "all-seen",
              repeatable: np.ndarray | None = None) -> None:
    """Mask each row's history items in place under ``policy``.

    ``seen`` (B, n_items+1) csr: row b holds the history of score row b; ``repeatable`` (R,) dense ids kept rankable
    under ``"seen-except-repeatable"``.
    """
    policy = seen_policy(policy)
    if policy == "none":
        return
    r, c = seen.nonzero()
    if policy == "seen-except-repeatable":
        if repeatable is None:
            raise ConfigError('exclude_seen="seen-except-repeatable" needs the repeatable items')
        keep = ~np.isin(c, repeatable)
        r, c = r[keep], c[keep]
    mask_pairs(scores, r, c)
