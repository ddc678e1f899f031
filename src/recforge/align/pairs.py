"""Pairs for reward models and alignment beyond the training-part builders of :mod:`recforge.data.preferences`:
held-out pairs (a validation/test event against sampled items) for evaluation, model-hard negatives (a model's best
unseen non-target items), and the checks that pairs, models and reward models belong to one split.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from recforge.data.batches import last_window
from recforge.data.preferences import PreferencePairs, sample_unseen
from recforge.data.split import Split
from recforge.errors import ConfigError, DataError
from recforge.protocols import HistoryScorer

log = logging.getLogger(__name__)

#: histories scored per model call when picking hard negatives
HARD_BATCH = 1024


def top_columns(scores: torch.Tensor, k: int) -> np.ndarray:
    """The ``k`` best columns of each row of ``scores`` (B, C), best first, ties to the lower column (the order of a
    stable sort of the negated scores) -> int64 (B, k).

    ``torch.topk`` finds each row's k-th best score; only the columns at or above it (k plus any ties) are ordered.
    Rows where that is not a small set (fewer than k finite scores, NaN) fall back to a full stable sort: on a
    12,000-item catalogue this is ~30x faster than sorting every row.
    """
    n = scores.shape[1]
    k = min(k, n)
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    mask = scores >= kth
    counts = mask.sum(1).numpy()
    out = np.zeros((len(scores), k), np.int64)
    small = (counts >= k) & (counts <= 4 * k + 64) & np.isfinite(kth[:, 0].numpy())
    if small.any():
        rows, cols = (mask & torch.from_numpy(small)[:, None]).nonzero(as_tuple=True)
        rows, cols = rows.numpy(), cols.numpy()
        order = np.lexsort((cols, -scores[rows, cols].numpy(), rows))  # row, then score desc, then column asc
        rows, cols = rows[order], cols[order]
        starts = np.concatenate([[0], np.cumsum(counts[small])])[:-1]
        out[small] = cols[starts[:, None] + np.arange(k)]
    if not small.all():
        rest = np.flatnonzero(~small)
        out[rest] = torch.sort(-scores[torch.from_numpy(rest)], dim=1, stable=True).indices[:, :k].numpy()
    return out


def heldout_pairs(split: Split, on: str = "test", rejected: str = "random", k: int = 1, max_history: int = 50,
                  seed: int = 0) -> PreferencePairs:
    """One pair per held-out event of the ``on`` part (evaluation only): history = the user's known items before it
    (``split.history(on)``, last ``max_history``), chosen = the held-out item, rejected = ``k`` items the user has
    never interacted with (train, valid or test), uniform (``random``) or by training popularity (``popular``)."""
    if rejected not in ("random", "popular"):
        raise ConfigError(f"held-out pairs reject 'random' or 'popular' items, got {rejected!r}")
    target, hist = split.part(on), split.history(on)
    every = split.history("test").concat(split.test)  # every known event: none of them is rejected
    n1 = every.n_items + 1
    seen = np.unique(every.user.astype(np.int64) * n1 + every.item)
    order = np.lexsort((target.time if target.time is not None else np.arange(len(target)), target.user))
    users, chosen = target.user[order].astype(np.int64), target.item[order].astype(np.int64)
    counts = split.train.item_counts() if rejected == "popular" else None
    neg, ok = sample_unseen(users, k, seen, every.n_items, counts, np.random.default_rng(seed))
    items, offsets = hist.sequences()
    window = last_window(items, offsets, max_history)[users[ok]]
    lengths = (window > 0).sum(1)
    history = window[window > 0]
    return PreferencePairs(user=users[ok], history=history,
                           history_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                           chosen=chosen[ok], rejected=neg[ok], user_vocab=split.train.user_vocab,
                           item_vocab=split.train.item_vocab, sources=(f"{on}-{rejected}",),
                           meta={"split_hash": split.hash, "heldout": on, "seed": seed})


def model_hard_pairs(pairs: PreferencePairs, model: Any, k: int = 1, split: Split | None = None) -> PreferencePairs:
    """The same histories and chosen items with ``k`` model-hard rejected items: the ``k`` best-scored items of
    ``model`` (a HistoryScorer) for each history that are neither in the history, nor the chosen item, nor (when
    ``split`` is given) any training item of the pair's user. Ties: lower item id first."""
    if not isinstance(model, HistoryScorer):
        raise ConfigError(f"model-hard negatives need a model that scores histories (HistoryScorer); "
                          f"{getattr(model, 'name', type(model).__name__)!r} is not one")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    seen_rows = None
    if split is not None:
        seen_rows = split.train.to_csr(binary=True)
    out = np.zeros((len(pairs), k), np.int64)
    for s in range(0, len(pairs), HARD_BATCH):
        rows = np.arange(s, min(s + HARD_BATCH, len(pairs)))
        sub = pairs.select(rows)
        scores = model.score_histories(sub.histories()).clone()  # (b, n_items+1), col. 0 -inf
        lengths = np.diff(sub.history_offsets)
        scores[torch.from_numpy(np.repeat(np.arange(len(rows)), lengths)), torch.from_numpy(np.array(sub.history))] = \
            -torch.inf
        scores[torch.arange(len(rows)), torch.from_numpy(np.array(sub.chosen))] = -torch.inf
        if seen_rows is not None:
            part = seen_rows[np.asarray(sub.user)].tocoo()
            scores[torch.from_numpy(part.row.astype(np.int64)), torch.from_numpy(part.col.astype(np.int64))] = -torch.inf
        out[rows] = top_columns(scores, k)  # lower item id wins a tie
    return pairs.with_rejected(out, "model-hard")


def check_same_split(what: str, recorded: str | None, split: Split) -> None:
    """DataError when ``what`` (a reward model, a reference model, a pair file) was built on another split."""
    if recorded is not None and recorded != split.hash:
        raise DataError(f"{what} was built on another split or catalogue (split hash {recorded} != {split.hash}); "
                        "rebuild it on this run's split")


def unseen_items(split: Split, users: np.ndarray, n: int, on: str = "test", seed: int = 0) -> np.ndarray:
    """``n`` distinct items per user (U, n) that the user has no event with in ``split.history(on)``, uniform and
    seeded: the fixed comparison items of a list's reward-model score. A catalogue too small for ``n`` gives every
    user as many as the user with the most events has left (logged)."""
    hist = split.history(on)
    n1 = hist.n_items + 1
    seen = np.unique(hist.user.astype(np.int64) * n1 + hist.item)
    room = hist.n_items - int(np.bincount(seen // n1, minlength=int(np.max(users, initial=0)) + 1)[users].max(
        initial=0))
    if room < n:
        log.info("comparison items: %d instead of %d (a user has only %d unseen items)", room, n, room)
        n = room
    if n < 1:
        raise DataError("a user has no unseen item to compare with")
    out, _ = sample_unseen(np.asarray(users, np.int64), n, seen, hist.n_items, None, np.random.default_rng(seed))
    return out
