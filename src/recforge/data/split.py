"""Splits: leave-last-out, global temporal, seeded random holdout and cold-start user holdout.

Every splitter returns a :class:`Split` whose parts share the vocabularies of the input, checks that it leaks nothing
and records a split hash (sha256 over the parts) so that runs on different splits can be told apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class Split:
    """train / valid / test parts of one log. ``fold_in`` holds the known history of users absent from train
    (cold-start ``user_holdout``); models score those users from that history."""

    train: Interactions
    test: Interactions
    valid: Interactions | None = None
    fold_in: Interactions | None = None
    name: str = "custom"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """sha256 over the splitter name and every part's fingerprint (first 16 hex chars)."""
        h = hashlib.sha256(self.name.encode())
        for part in (self.train, self.valid, self.test, self.fold_in):
            h.update(b"|" + (part.fingerprint().encode() if part is not None else b"-"))
        return h.hexdigest()[:16]

    def part(self, on: str) -> Interactions:
        if on == "test":
            return self.test
        if on == "valid":
            if self.valid is None:
                raise ConfigError("this split has no validation part (use valid=True when splitting)")
            return self.valid
        raise ConfigError(f"on must be 'valid' or 'test', got {on!r}")

    def history(self, on: str) -> Interactions:
        """What is known before the ``on`` part: train (+ valid when ``on="test"``) (+ fold-in histories)."""
        self.part(on)  # checks ``on``
        hist = self.train
        if on == "test" and self.valid is not None:
            hist = hist.concat(self.valid)
        if self.fold_in is not None:
            hist = hist.concat(self.fold_in)
        return hist

    def seen_targets(self, on: str = "test") -> dict[str, int]:
        """Repeat consumption in the ``on`` part: held-out events whose item the user already has in
        :meth:`history` (``events``), and the users with at least one (``users``), out of ``events_total`` /
        ``users_total``. Masking seen items at evaluation ("all-seen") makes these targets unreachable."""
        target, hist = self.part(on), self.history(on)
        n = target.n_items + 1
        repeat = np.isin(target.user.astype(np.int64) * n + target.item, hist.user.astype(np.int64) * n + hist.item)
        return {"events": int(repeat.sum()), "events_total": len(target),
                "users": len(np.unique(target.user[repeat])), "users_total": len(target.active_users())}

    def summary(self) -> dict[str, Any]:
        """Splitter, parameters, hash, part sizes and the held-out events already seen in the history
        (``test_seen_targets`` / ``valid_seen_targets``, see :meth:`seen_targets`)."""
        out = {"splitter": self.name, **self.params, "hash": self.hash, "train": len(self.train), "test": len(self.test)}
        if self.valid is not None:
            out["valid"] = len(self.valid)
        if self.fold_in is not None:
            out["fold_in"] = len(self.fold_in)
        out["test_seen_targets"] = self.seen_targets("test")["events"]
        if self.valid is not None:
            out["valid_seen_targets"] = self.seen_targets("valid")["events"]
        return out


def _rank_from_end(data: Interactions) -> np.ndarray:
    """For each row, its position counted from the user's last event (0 = last). Rows are sorted by (user, time)."""
    offsets = data.user_offsets()
    ends = offsets[1:][data.user]  # exclusive end of each row's user block
    return ends - 1 - np.arange(len(data))


def leave_last_out(data: Interactions, n: int = 1, valid: bool = True, min_train: int = 1) -> Split:
    """Per user, the last ``n`` events go to test and (if ``valid``) the ``n`` before them to validation.

    Users with fewer than ``min_train + n (+ n)`` events stay entirely in train (counted in ``params``).
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    rank = _rank_from_end(data)
    counts = data.user_counts()[data.user]
    need = min_train + n * (2 if valid else 1)
    eligible = counts >= need
    if len(data) and not eligible.any():
        raise DataError(
            f"no user has >= {need} interactions; leave_last_out holds out the last {n} event(s) of users with at "
            f"least min_train + n{' + n (validation)' if valid else ''} = {need} (the most any user has is "
            f"{int(counts.max())}): use more data{', valid=False' if valid else ''} or a smaller min_train")
    test_mask = eligible & (rank < n)
    valid_mask = eligible & (rank >= n) & (rank < 2 * n) if valid else np.zeros(len(data), bool)
    train_mask = ~(test_mask | valid_mask)
    split = Split(
        train=data.with_rows(train_mask),
        valid=data.with_rows(valid_mask) if valid else None,
        test=data.with_rows(test_mask),
        name="leave_last_out",
        params={"n": n, "valid": valid, "users_too_short": int(len(np.unique(data.user[~eligible])))},
    )
    _check_per_user_order(split)
    return split


def _check_per_user_order(split: Split) -> None:
    """No held-out event may precede a train event of the same user (leave-last-out's promise)."""
    last_train = np.full(split.train.n_users + 1, np.iinfo(np.int64).min)
    np.maximum.at(last_train, split.train.user, split.train.time)
    for part_name, part in (("valid", split.valid), ("test", split.test)):
        if part is None or len(part) == 0:
            continue
        bad = part.time < last_train[part.user]
        if bad.any():
            u = part.user_vocab.decode(part.user[bad][:1])[0]
            raise DataError(f"leakage: {int(bad.sum())} {part_name} events precede a train event of their user (e.g. {u!r})")
    if split.valid is not None and len(split.valid) and len(split.test):
        last_valid = np.full(split.train.n_users + 1, np.iinfo(np.int64).min)
        np.maximum.at(last_valid, split.valid.user, split.valid.time)
        if (split.test.time < last_valid[split.test.user]).any():
            raise DataError("leakage: test events precede validation events of the same user")


def _cutoff_time(data: Interactions, cutoff: str | int | float | None, quantile: float | None) -> int:
    if cutoff is not None:
        if isinstance(cutoff, str):
            try:
                return int(datetime.fromisoformat(cutoff).timestamp())
            except ValueError:
                raise ConfigError(f"cutoff must be an ISO date or a timestamp, got {cutoff!r}") from None
        return int(cutoff)
    if quantile is None or not 0.0 < quantile < 1.0:
        raise ConfigError(f"quantile must be in (0, 1), got {quantile!r}")
    return int(np.quantile(data.time, quantile, method="lower"))


def temporal(
    data: Interactions,
    cutoff: str | int | None = None,
    quantile: float | None = 0.8,
    valid_quantile: float | None = None,
    drop_cold_users: bool = True,
) -> Split:
    """Global time split: events at or before the cutoff train, later events test.

    ``cutoff`` (ISO date or timestamp) wins over ``quantile``. With ``valid_quantile`` the train part is split again
    at that quantile of the *training* times. Test users with no train event are dropped when ``drop_cold_users``
    (they cannot be scored by history-based models), and the count is recorded.
    """
    t = _cutoff_time(data, cutoff, quantile)
    train_mask = data.time <= t
    train = data.with_rows(train_mask)
    test = data.with_rows(~train_mask)
    valid = None
    params: dict[str, Any] = {"cutoff": t}
    if valid_quantile is not None:
        tv = _cutoff_time(train, None, valid_quantile)
        valid = train.with_rows(train.time > tv)
        train = train.with_rows(train.time <= tv)
        params["valid_cutoff"] = tv
    if drop_cold_users:
        known = np.zeros(data.n_users + 1, bool)
        known[train.user] = True
        params["test_rows_cold_users_dropped"] = int((~known[test.user]).sum())
        test = test.with_rows(known[test.user])
        if valid is not None:
            params["valid_rows_cold_users_dropped"] = int((~known[valid.user]).sum())
            valid = valid.with_rows(known[valid.user])
    if len(train) and len(test) and train.time.max() >= test.time.min():
        raise DataError("leakage: a train event is not before every test event")
    if len(train) == 0 or len(test) == 0:
        raise ConfigError(f"temporal cutoff {t} leaves an empty part (train={len(train)}, test={len(test)})")
    return Split(train=train, valid=valid, test=test, name="temporal", params=params)


def random_holdout(data: Interactions, test_frac: float = 0.2, valid_frac: float = 0.0, seed: int = 0) -> Split:
    """Seeded random holdout of individual events (not time-aware; use for rating-style protocols)."""
    if not 0.0 < test_frac < 1.0 or not 0.0 <= valid_frac < 1.0 or test_frac + valid_frac >= 1.0:
        raise ConfigError(f"need 0 < test_frac, 0 <= valid_frac, sum < 1 (got {test_frac}, {valid_frac})")
    rng = np.random.default_rng(seed)
    u = rng.random(len(data))
    test_mask = u < test_frac
    valid_mask = (u >= test_frac) & (u < test_frac + valid_frac)
    train_mask = ~(test_mask | valid_mask)
    return Split(
        train=data.with_rows(train_mask),
        valid=data.with_rows(valid_mask) if valid_frac > 0 else None,
        test=data.with_rows(test_mask),
        name="random",
        params={"test_frac": test_frac, "valid_frac": valid_frac, "seed": seed},
    )


def user_holdout(data: Interactions, test_frac: float = 0.1, n_test_items: int = 1, seed: int = 0) -> Split:
    """Cold-start users: a seeded fraction of users is removed from train. For each of them the last
    ``n_test_items`` events are test targets and the earlier ones form ``fold_in`` (history given at scoring time)."""
    if not 0.0 < test_frac < 1.0:
        raise ConfigError(f"test_frac must be in (0, 1), got {test_frac}")
    rng = np.random.default_rng(seed)
    users = data.active_users()
    counts = data.user_counts()
    candidates = users[counts[users] > n_test_items]
    n_hold = max(1, int(round(test_frac * len(users))))
    held = np.zeros(data.n_users + 1, bool)
    held[rng.choice(candidates, size=min(n_hold, len(candidates)), replace=False)] = True
    rank = _rank_from_end(data)
    row_held = held[data.user]
    split = Split(
        train=data.with_rows(~row_held),
        test=data.with_rows(row_held & (rank < n_test_items)),
        fold_in=data.with_rows(row_held & (rank >= n_test_items)),
        name="user_holdout",
        params={"test_frac": test_frac, "n_test_items": n_test_items, "seed": seed, "held_users": int(held.sum())},
    )
    if np.intersect1d(split.train.active_users(), split.test.active_users()).size:
        raise DataError("leakage: a held-out user has train events")
    return split
