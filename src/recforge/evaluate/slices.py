"""Metrics per segment: user segments (history-length buckets, cold users) and item segments (short head / long tail).

A model that wins on average can lose badly on cold users or never recommend long-tail items; slices show where.
User segments average any per-user metric over the users of the segment (with a bootstrap CI). Item segments recompute
the ranking metrics as if only the held-out items of that segment were relevant (users without such items are left out),
so "recall@10 on tail" is the share of held-out long-tail items that reached the top 10.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.evaluate.beyond import head_items, hits_from_targets, item_popularity
from recforge.metrics.ranking import compute, parse_metric
from recforge.metrics.stats import bootstrap_cis

#: Default history-length bucket edges: [1, 5), [5, 10), [10, 20), [20, 50), [50, inf).
DEFAULT_EDGES = (1, 5, 10, 20, 50)


def user_segments(history_len: np.ndarray, edges: tuple[int, ...] = DEFAULT_EDGES, train_len: np.ndarray | None = None,
                  cold_max: int = 5) -> dict[str, np.ndarray]:
    """Boolean masks (U,) per user segment.

    ``history_len`` (U,) = events the model could see for each evaluated user; buckets ``"hist a-b"`` follow ``edges``
    (ascending; users below the first edge go to ``"hist 0"``). ``train_len`` (U,) = training events; users with at most
    ``cold_max`` of them form ``"cold (<=N train)"`` (it overlaps the buckets on purpose: it is the segment people ask about).
    """
    h = np.asarray(history_len)
    e = list(edges)
    if not e or any(b <= a for a, b in zip(e, e[1:])) or e[0] < 0:
        raise ConfigError(f"edges must be strictly increasing non-negative ints, got {edges}")
    segs: dict[str, np.ndarray] = {}
    if e[0] > 0:
        segs["hist 0"] = h < e[0]
    for lo, hi in zip(e, e[1:] + [None]):
        label = f"hist {lo}+" if hi is None else f"hist {lo}-{hi - 1}"
        segs[label] = (h >= lo) & (h < hi) if hi is not None else h >= lo
    if train_len is not None:
        segs[f"cold (<={cold_max} train)"] = np.asarray(train_len) <= cold_max
    return {k: v for k, v in segs.items() if v.any()}


def item_segment_values(names: list[str] | tuple[str, ...], hits: np.ndarray, top_items: np.ndarray,
                        targets: sp.csr_array, in_segment: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Metrics restricted to one item segment.

    ``hits``/``top_items`` (U, K); ``targets`` (U, n_items+1) held-out items of the same users; ``in_segment``
    (n_items+1,) bool. Returns (mask (U,) of users with >= 1 target in the segment, {name: values over those users}).
    """
    seg = np.asarray(in_segment, bool)
    n_rel = np.asarray(sp.csr_array(targets) @ seg.astype(np.float64)).astype(np.int64)
    keep = n_rel > 0
    h = np.asarray(hits, bool) & seg[np.asarray(top_items, dtype=np.int64)]
    return keep, compute(list(names), h[keep], n_rel[keep])


def _rows(kind: str, segment: str, values: dict[str, np.ndarray], n_boot: int, seed: int) -> list[dict[str, Any]]:
    names = list(values)
    if not names:
        return []
    mat = np.stack([values[n] for n in names], axis=1)
    cis = bootstrap_cis(mat, n_boot=n_boot, seed=seed)
    return [
        {"kind": kind, "segment": segment, "n_users": int(mat.shape[0]), "metric": n,
         "mean": float(mat[:, j].mean()) if len(mat) else float("nan"), "ci_low": lo, "ci_high": hi}
        for j, (n, (lo, hi)) in enumerate(zip(names, cis))
    ]


def slice_metrics(
    users: np.ndarray,
    top_items: np.ndarray,
    per_user: dict[str, np.ndarray],
    train: Interactions,
    targets: Interactions,
    history: Interactions | None = None,
    edges: tuple[int, ...] = DEFAULT_EDGES,
    cold_max: int = 5,
    head_share: float = 0.8,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Every metric in ``per_user`` per user segment, and every ranking metric among them per item segment.

    ``users`` (U,), ``top_items`` (U, K), ``per_user`` {name: (U,)} come from a Report (beyond-accuracy per-user values
    may be added to ``per_user``); ``history`` is what the evaluator used as history (default ``train``). Returns rows
    {kind: "user"|"item", segment, n_users, metric, mean, ci_low, ci_high}.
    """
    users = np.asarray(users, dtype=np.int64)
    hist = history if history is not None else train
    rows: list[dict[str, Any]] = []
    segs = user_segments(hist.user_counts()[users], edges, train.user_counts()[users], cold_max)
    for i, (label, mask) in enumerate(segs.items()):
        rows += _rows("user", label, {n: v[mask] for n, v in per_user.items()}, n_boot, seed + i)
    ranking = []
    for n in per_user:
        try:
            parse_metric(n)
        except ConfigError:
            continue
        ranking.append(n)
    ranking = [n for n in ranking if parse_metric(n)[1] <= np.asarray(top_items).shape[1]]
    if ranking:
        target_rows = targets.to_csr(binary=True)[users]
        hits = hits_from_targets(np.arange(len(users)), top_items, target_rows)
        head = head_items(item_popularity(train), head_share)
        tail = ~head
        tail[0] = False
        for j, (label, seg) in enumerate((("head items", head), ("long-tail items", tail))):
            keep, vals = item_segment_values(ranking, hits, top_items, target_rows, seg)
            if keep.any():
                rows += _rows("item", label, vals, n_boot, seed + 100 + j)
    return rows
