"""dataset_info: the summary statistics shown by ``recforge data info`` (all JSON-serialisable)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recforge.data.interactions import Interactions

# Clocks at or above this many seconds are read as unix seconds; smaller ones as positions/orders.
_UNIX_FLOOR = 250_000_000  # 1977-12-03: every real log with unix seconds is later; position clocks are far smaller


_MIN_DATE, _MAX_DATE = -62_135_596_800, 253_402_300_799  # 0001-01-01 .. 9999-12-31 in unix seconds


def time_kind(time: np.ndarray) -> str:
    """"unix" when the clock reads as unix seconds, "order" for positions / counters, "none" when all zero.

    Decided on the whole column (its median), so a unix-seconds log with a few 0 or 1 values stays "unix"."""
    t = np.asarray(time)
    if not len(t) or not t.any():
        return "none"
    return "unix" if float(np.median(t)) >= _UNIX_FLOOR else "order"


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = perfectly even, -> 1 = concentrated on one entity)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    # G = sum_i (2i - n - 1) x_(i) / (n * sum x), i = 1..n over sorted values
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def dataset_info(
    data: Interactions,
    *,
    name: str | None = None,
    partial: bool = False,
    notes: Sequence[str] = (),
    quantiles: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0),
) -> dict[str, Any]:
    """Users / items / interactions (counting entities with at least one row), density, time span, history-length
    quantiles, popularity Gini (over items with at least one interaction), value range, partial flag and notes."""
    uc = data.user_counts()[1:]
    ic = data.item_counts()[1:]
    uc, ic = uc[uc > 0], ic[ic > 0]
    n = len(data)
    pairs = n_pairs(data)
    out: dict[str, Any] = {}
    if name is not None:
        out["name"] = name
    out.update({
        "users": int(len(uc)),
        "items": int(len(ic)),
        "interactions": int(n),
        "vocab_users": data.n_users,
        "vocab_items": data.n_items,
        "density": float(pairs / (len(uc) * len(ic))) if len(uc) and len(ic) else 0.0,
        "duplicate_pairs_rows": int(n - pairs),
    })
    if n:
        tmin, tmax = int(data.time.min()), int(data.time.max())
        kind = data.meta.get("time_kind") or time_kind(data.time)
        if kind == "unix" and not (tmin >= _MIN_DATE and tmax <= _MAX_DATE):
            kind = "number"  # not representable as dates: a clock in another unit
        span: dict[str, Any] = {"kind": kind, "min": tmin, "max": tmax}
        if kind == "unix":
            span["first"] = datetime.fromtimestamp(tmin, UTC).strftime("%Y-%m-%d")
            span["last"] = datetime.fromtimestamp(tmax, UTC).strftime("%Y-%m-%d")
            span["days"] = round((tmax - tmin) / 86400, 1)
        out["time"] = span
        qs = np.quantile(uc, list(quantiles))
        out["history_length"] = {"mean": float(uc.mean()), **{f"q{round(q * 100):d}": float(v) for q, v in zip(quantiles, qs)}}
        out["item_popularity"] = {"mean": float(ic.mean()), "max": int(ic.max()), "gini": gini(ic)}
        out["value"] = {"min": float(data.value.min()), "max": float(data.value.max()),
                        "distinct": int(len(np.unique(data.value)))}
    out["partial"] = bool(partial)
    if notes:
        out["notes"] = list(notes)
    return out


def n_pairs(data: Interactions) -> int:
    """Number of distinct (user, item) pairs."""
    if not len(data):
        return 0
    # rows are sorted by user, so a pair repeats only within its user's block: sort keys and count changes
    key = np.sort(data.user.astype(np.int64) * (data.n_items + 1) + data.item)
    return int(1 + np.count_nonzero(key[1:] != key[:-1]))
