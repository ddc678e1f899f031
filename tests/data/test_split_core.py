"""Splitters: what goes where, leakage checks, hashes, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.interactions import Interactions
from recforge.data.split import Split, leave_last_out, random_holdout, temporal, user_holdout
from recforge.errors import ConfigError, DataError


def test_leave_last_out_holds_out_last_events():
    log = Interactions.from_arrays(["a"] * 4 + ["b"] * 2, [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 1, 2])
    s = leave_last_out(log, n=1, valid=True)
    dec = log.item_vocab.decode
    assert dec(s.test.item) == [4]  # b has only 2 events: too short for train+valid+test, stays in train
    assert dec(s.valid.item) == [3]
    assert sorted(dec(s.train.item)) == [1, 2, 5, 6]
    assert s.params["users_too_short"] == 1


def test_leave_last_out_no_leakage_and_partition(tiny_log):
    s = leave_last_out(tiny_log, n=2, valid=True)
    assert len(s.train) + len(s.valid) + len(s.test) == len(tiny_log)
    last_train = {}
    for u, t in zip(s.train.user, s.train.time):
        last_train[u] = max(last_train.get(u, t), t)
    assert all(t >= last_train[u] for u, t in zip(s.test.user, s.test.time))


def test_split_hash_is_stable_and_sensitive(tiny_log):
    assert leave_last_out(tiny_log).hash == leave_last_out(tiny_log).hash
    assert leave_last_out(tiny_log).hash != leave_last_out(tiny_log, n=2).hash
    assert random_holdout(tiny_log, seed=1).hash != random_holdout(tiny_log, seed=2).hash


def test_temporal_cutoff(tiny_log):
    s = temporal(tiny_log, quantile=0.7, valid_quantile=0.8)
    assert s.train.time.max() <= s.params["valid_cutoff"] < s.valid.time.min()
    assert s.valid.time.max() <= s.params["cutoff"] < s.test.time.min()
    known = set(s.train.user.tolist())
    assert set(s.test.user.tolist()) <= known


def test_temporal_iso_cutoff():
    log = Interactions.from_arrays([1, 1, 2, 2], [1, 2, 1, 3], [0, 2_000_000_000, 10, 2_000_000_001])
    s = temporal(log, cutoff="2020-01-01")
    assert len(s.train) == 2 and len(s.test) == 2


def test_random_holdout_seeded(tiny_log):
    a, b = random_holdout(tiny_log, 0.2, 0.1, seed=3), random_holdout(tiny_log, 0.2, 0.1, seed=3)
    assert np.array_equal(a.test.item, b.test.item)
    assert abs(len(a.test) / len(tiny_log) - 0.2) < 0.06


def test_user_holdout_cold_users(tiny_log):
    s = user_holdout(tiny_log, test_frac=0.25, seed=0)
    held = set(s.test.user.tolist())
    assert held and not held & set(s.train.user.tolist())
    assert set(s.fold_in.user.tolist()) <= held


def test_leakage_is_detected():
    log = Interactions.from_arrays([1, 1], [1, 2], [5, 1])
    late, early = log.with_rows(np.array([False, True])), log.with_rows(np.array([True, False]))
    s = Split(train=late, test=early)  # the "test" event precedes the train event
    from recforge.data.split import _check_per_user_order

    with pytest.raises(DataError, match="leakage"):
        _check_per_user_order(s)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: leave_last_out(d, n=0), "n must be >= 1"),
        (lambda d: temporal(d, quantile=1.5), "quantile must be in"),
        (lambda d: temporal(d, cutoff="yesterday"), "ISO date"),
        (lambda d: temporal(d, cutoff=0), "empty part"),
        (lambda d: random_holdout(d, test_frac=0.0), "0 < test_frac"),
        (lambda d: random_holdout(d, test_frac=0.6, valid_frac=0.5), "sum < 1"),
        (lambda d: user_holdout(d, test_frac=1.0), "test_frac must be in"),
        (lambda d: leave_last_out(d).part("train"), "on must be"),
        (lambda d: leave_last_out(d, valid=False).part("valid"), "no validation part"),
    ],
)
def test_bad_split_parameters(tiny_log, call, message):
    with pytest.raises(ConfigError, match=message):
        call(tiny_log)


def test_split_counts_held_out_events_already_seen():
    log = Interactions.from_arrays(["u1"] * 4 + ["u2"] * 4, ["a", "x", "a", "x", "b", "y", "b", "y"], list(range(8)))
    split = leave_last_out(log, n=1, valid=True)
    # u1: train a, x | valid a (seen in train) | test x (seen in train); u2: train b, y | valid b | test y
    assert split.seen_targets("valid") == {"events": 2, "events_total": 2, "users": 2, "users_total": 2}
    assert split.seen_targets("test")["events"] == 2
    assert len(split.history("test")) == len(split.train) + len(split.valid)
    summary = split.summary()
    assert summary["test_seen_targets"] == 2 and summary["valid_seen_targets"] == 2
    fresh = leave_last_out(Interactions.from_arrays(["u"] * 3, ["a", "b", "c"], [0, 1, 2]), n=1, valid=True)
    assert fresh.summary()["test_seen_targets"] == 0


def test_seen_targets_through_the_validation_part_only():
    # the test item was consumed in the validation event only: it counts as seen for test, not for valid
    log = Interactions.from_arrays(["u"] * 3, ["a", "b", "b"], [0, 1, 2])
    split = leave_last_out(log, n=1, valid=True)
    assert split.seen_targets("valid")["events"] == 0 and split.seen_targets("test")["events"] == 1
