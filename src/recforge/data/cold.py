"""Cold-start items: a split whose held-out events are on items that training never saw.

:func:`cold_item_holdout` picks a fraction of the items as cold (``mode="random"``: seeded; ``"temporal"``: the
newest items, by first appearance). Training holds no interaction with a cold item. Each eligible user's last event on
a cold item is held out, with the warm events before it as history; the user's warm events after it are dropped, so
that nothing from after the target reaches training (counted in ``params``). Eligible = at least ``min_history`` warm
events before the target. Eligible users are split (seeded, disjoint) between validation and test.

Evaluate cold items three ways: ranked among the cold items only (``cold_items(split)`` as candidates), among all
items, and the warm leave-last-out protocol on the same log for comparison. Validation targets are cold items too: a
model refitted on train + valid has seen them, so fit on ``train`` only when testing.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from recforge.data.interactions import Interactions
from recforge.data.split import Split
from recforge.errors import ConfigError, DataError

ColdMode = Literal["random", "temporal"]


def choose_cold_items(data: Interactions, frac: float, mode: ColdMode = "random", seed: int = 0) -> np.ndarray:
    """Dense ids (sorted int64) of ``round(frac * active items)`` cold items: seeded at random, or the newest by
    first appearance (ties: higher dense id first)."""
    if not 0.0 < frac < 1.0:
        raise ConfigError(f"frac must be in (0, 1), got {frac}")
    active = np.flatnonzero(data.item_counts())
    n_cold = max(1, int(round(frac * len(active))))
    if mode == "random":
        chosen = np.random.default_rng(seed).choice(active, size=n_cold, replace=False)
    elif mode == "temporal":
        first = np.full(data.n_items + 1, np.iinfo(np.int64).max)
        np.minimum.at(first, data.item, data.time)
        order = np.lexsort((-active, -first[active]))  # newest first appearance first
        chosen = active[order[:n_cold]]
    else:
        raise ConfigError(f"mode must be 'random' or 'temporal', got {mode!r}")
    return np.sort(chosen).astype(np.int64)


def cold_item_holdout(
    data: Interactions,
    frac: float = 0.2,
    mode: ColdMode = "random",
    seed: int = 0,
    min_history: int = 5,
    valid: bool = True,
    valid_frac: float = 0.1,
) -> Split:
    """Hold out events on cold items (see the module docstring). ``valid_frac``: share of eligible users whose
    target goes to validation (when ``valid``). ``params["cold_items"]`` holds the cold dense ids."""
    if min_history < 1:
        raise ConfigError(f"min_history must be >= 1, got {min_history}")
    if valid and not 0.0 < valid_frac < 1.0:
        raise ConfigError(f"valid_frac must be in (0, 1), got {valid_frac}")
    cold = choose_cold_items(data, frac, mode, seed)
    is_cold = np.zeros(data.n_items + 1, bool)
    is_cold[cold] = True
    row_cold = is_cold[data.item]
    n = len(data)
    # the last cold row of each user (rows are sorted by user, time): -1 where the user has none
    idx = np.arange(n)
    last_cold = np.full(data.n_users + 1, -1)
    np.maximum.at(last_cold, data.user[row_cold], idx[row_cold])
    warm_before = np.zeros(data.n_users + 1, np.int64)  # warm rows before that target
    target_of_row = last_cold[data.user]
    before = (~row_cold) & (idx < target_of_row)
    np.add.at(warm_before, data.user[before], 1)
    eligible = (last_cold >= 0) & (warm_before >= min_history)
    targets = last_cold[eligible]
    rng = np.random.default_rng(seed + 1)
    to_valid = np.zeros(len(targets), bool)
    if valid and len(targets) >= 2:
        n_valid = min(len(targets) - 1, max(1, int(round(valid_frac * len(targets)))))
        to_valid[rng.choice(len(targets), size=n_valid, replace=False)] = True
    elig_row = eligible[data.user]
    after = elig_row & (idx > target_of_row) & ~row_cold
    train_mask = ~row_cold & ~after
    if not len(targets):
        raise DataError(f"no user has {min_history} warm events before an event on a cold item "
                        f"({len(cold)} cold items); lower min_history or raise frac")
    split = Split(
        train=data.with_rows(train_mask),
        valid=data.with_rows(np.sort(targets[to_valid])) if valid else None,
        test=data.with_rows(np.sort(targets[~to_valid])),
        name="cold_item_holdout",
        params={"frac": frac, "mode": mode, "seed": seed, "min_history": min_history, "valid_frac": valid_frac,
                "n_cold_items": len(cold), "cold_events_dropped": int(row_cold.sum()) - len(targets),
                "warm_events_after_target_dropped": int(after.sum()),
                "users_without_eligible_target": int(len(data.active_users()) - len(targets)),
                "cold_items": cold},
    )
    _check(split, is_cold)
    return split


def cold_items(split: Split) -> np.ndarray:
    """The cold dense item ids of a :func:`cold_item_holdout` split (ConfigError for another split)."""
    if "cold_items" not in split.params:
        raise ConfigError(f"split {split.name!r} has no cold items (make it with cold_item_holdout)")
    return np.asarray(split.params["cold_items"], dtype=np.int64)


def _check(split: Split, is_cold: np.ndarray) -> None:
    """Training holds no cold item; every held-out event is on a cold item and not before its user's training."""
    if is_cold[split.train.item].any():
        raise DataError("leakage: a cold item has a training interaction")
    last_train = np.full(split.train.n_users + 1, np.iinfo(np.int64).min)
    np.maximum.at(last_train, split.train.user, split.train.time)
    for name, part in (("valid", split.valid), ("test", split.test)):
        if part is None or not len(part):
            continue
        if not is_cold[part.item].all():
            raise DataError(f"cold split: a {name} event is on a warm item")
        if (part.time < last_train[part.user]).any():
            raise DataError(f"leakage: a {name} event precedes a training event of its user")
