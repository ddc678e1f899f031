"""Preprocessing as explicit, reported steps: rating threshold -> implicit, duplicate policy, iterative k-core.

Each step returns ``(new Interactions, counts)`` and appends ``{"step": ..., **params, **counts}`` to
``meta["preprocess"]`` of the result, so a run records exactly what was removed. Steps that remove users or items
compact the vocabularies (dense ids stay contiguous; ids no longer present disappear) and say how many they dropped.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from recforge.data.interactions import Interactions
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError

log = logging.getLogger(__name__)

DUPLICATE_POLICIES = ("first", "last", "all", "sum")


def _rebuild(data: Interactions, rows: np.ndarray, step: dict[str, Any], value: np.ndarray | None = None) -> Interactions:
    """Rows ``rows`` (index or mask) of ``data`` with compacted vocabularies and ``step`` appended to the report."""
    rows = np.asarray(rows)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    user, item = data.user[rows], data.item[rows]
    used_u, new_u = np.unique(user, return_inverse=True)
    used_i, new_i = np.unique(item, return_inverse=True)
    uv = data.user_vocab if len(used_u) == data.n_users else Vocab(data.user_vocab.decode(used_u), name=data.user_vocab.name)
    iv = data.item_vocab if len(used_i) == data.n_items else Vocab(data.item_vocab.decode(used_i), name=data.item_vocab.name)
    meta = dict(data.meta)
    meta["preprocess"] = [*data.meta.get("preprocess", []), step]
    log.info("preprocess %s", step)
    return Interactions(
        user=new_u.astype(np.int64) + 1,
        item=new_i.astype(np.int64) + 1,
        time=data.time[rows],
        value=data.value[rows] if value is None else value,
        user_vocab=uv,
        item_vocab=iv,
        event=None if data.event is None else data.event[rows],
        meta=meta,
    )


def _entity_counts(data: Interactions, out: Interactions) -> dict[str, int]:
    return {"users_removed": data.n_users - out.n_users, "items_removed": data.n_items - out.n_items}


def binarize(data: Interactions, threshold: float) -> tuple[Interactions, dict[str, int]]:
    """Keep rows with ``value >= threshold`` and set their value to 1.0 (explicit ratings -> implicit feedback).

    Returns (log, {"rows_removed", "users_removed", "items_removed"}).
    """
    if not np.isfinite(threshold):
        raise ConfigError(f"rating threshold must be a finite number, got {threshold}")
    keep = data.value >= threshold
    counts = {"rows_removed": int((~keep).sum())}
    out = _rebuild(data, keep, {"step": "binarize", "threshold": float(threshold)}, value=np.ones(int(keep.sum()), np.float32))
    counts.update(_entity_counts(data, out))
    out.meta["preprocess"][-1].update(counts)
    return out, counts


def deduplicate(
    data: Interactions, policy: Literal["first", "last", "all", "sum"] = "first"
) -> tuple[Interactions, dict[str, int]]:
    """Repeated (user, item) pairs: keep the ``first`` or ``last`` event (by time), keep ``all``, or ``sum`` them into one
    row at the time of the first event whose value is the sum of the values.

    Returns (log, {"rows_removed", "duplicate_pairs"}).
    """
    if policy not in DUPLICATE_POLICIES:
        raise ConfigError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {policy!r}")
    n = len(data)
    # rows are sorted by (user, time, original order): within a pair, the first occurrence in this order is the earliest
    key = data.user.astype(np.int64) * (data.n_items + 1) + data.item
    order = np.lexsort((np.arange(n), key))
    sk = key[order]
    starts = np.concatenate([[True], sk[1:] != sk[:-1]]) if n else np.zeros(0, bool)
    ends = np.concatenate([sk[1:] != sk[:-1], [True]]) if n else np.zeros(0, bool)
    group = np.cumsum(starts) - 1
    sizes = np.bincount(group) if n else np.zeros(0, np.int64)
    dup_pairs = int((sizes > 1).sum())
    value = None
    if policy == "all":
        rows = np.arange(n)
    elif policy == "first":
        rows = np.sort(order[starts])
    elif policy == "last":
        rows = np.sort(order[ends])
    else:
        first_rows = order[starts]
        sums = np.bincount(group, weights=data.value[order].astype(np.float64))
        perm = np.argsort(first_rows)
        rows, value = first_rows[perm], sums[perm].astype(np.float32)
    counts = {"rows_removed": n - len(rows), "duplicate_pairs": dup_pairs}
    out = _rebuild(data, rows, {"step": "deduplicate", "policy": policy, **counts}, value=value)
    return out, counts


def k_core(
    data: Interactions, user_k: int = 5, item_k: int = 5, max_iter: int = 100
) -> tuple[Interactions, dict[str, int]]:
    """Iteratively remove users with fewer than ``user_k`` and items with fewer than ``item_k`` interactions until
    every remaining user and item meets its threshold (or ``max_iter`` rounds; ``converged`` says which).

    Counts rows (not distinct pairs). Returns (log, {"rows_removed", "users_removed", "items_removed", "iterations",
    "converged"}).
    """
    for name, k in (("user_k", user_k), ("item_k", item_k), ("max_iter", max_iter)):
        if not isinstance(k, int | np.integer) or k < (1 if name == "max_iter" else 0):
            raise ConfigError(f"{name} must be a non-negative integer (max_iter >= 1), got {k!r}")
    keep = np.ones(len(data), bool)
    it, converged = 0, False
    while it < max_iter:
        it += 1
        uc = np.bincount(data.user[keep], minlength=data.n_users + 1)
        ic = np.bincount(data.item[keep], minlength=data.n_items + 1)
        bad = keep & ((uc[data.user] < user_k) | (ic[data.item] < item_k))
        if not bad.any():
            converged = True
            break
        keep &= ~bad
    counts = {"rows_removed": int((~keep).sum()), "iterations": it, "converged": int(converged)}
    out = _rebuild(data, keep, {"step": "k_core", "user_k": user_k, "item_k": item_k})
    counts.update(_entity_counts(data, out))
    out.meta["preprocess"][-1].update(counts)
    if not converged:
        log.warning("k-core did not converge in %d iterations", max_iter)
    return out, counts


def preprocess(
    data: Interactions,
    *,
    rating_threshold: float | None = None,
    duplicates: Literal["first", "last", "all", "sum"] | None = None,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
) -> tuple[Interactions, list[dict[str, Any]]]:
    """Apply the requested steps in a fixed order: threshold, duplicates, k-core. Returns (log, step reports)."""
    start = len(data.meta.get("preprocess", []))
    if rating_threshold is not None:
        data, _ = binarize(data, float(rating_threshold))
    if duplicates is not None:
        data, _ = deduplicate(data, duplicates)
    if min_user_interactions or min_item_interactions:
        data, _ = k_core(data, int(min_user_interactions), int(min_item_interactions))
    return data, list(data.meta.get("preprocess", []))[start:]
