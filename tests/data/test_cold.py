"""Cold-start items: training never sees a cold item, held-out events are on cold items and come after their user's
training events; random and temporal choice; a hand-built log with known targets; bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from recforge import registry
from recforge.data import cold as cold_module
from recforge.data.cold import choose_cold_items, cold_item_holdout, cold_items
from recforge.data.interactions import Interactions
from recforge.data.synthetic import planted_clusters
from recforge.errors import ConfigError, DataError
from recforge.testing import check_splitter


@pytest.fixture(scope="module")
def log() -> Interactions:
    return planted_clusters(n_users=200, n_items=100, events_per_user=25, seed=1)


def test_registered_and_passes_the_splitter_contract():
    assert registry.resolve("splitter", "cold_item_holdout") is cold_item_holdout
    check_splitter("cold_item_holdout", cold_item_holdout)


@pytest.mark.parametrize("mode", ["random", "temporal"])
def test_no_cold_item_in_training_and_every_target_is_cold(log, mode):
    split = cold_item_holdout(log, frac=0.2, mode=mode, seed=3)
    cold = cold_items(split)
    assert len(cold) == 20 and split.params["n_cold_items"] == 20
    assert not np.isin(split.train.item, cold).any()
    for part in (split.valid, split.test):
        assert len(part) and np.isin(part.item, cold).all()
        assert len(np.unique(part.user)) == len(part)  # one target per user
        last_train = np.zeros(log.n_users + 1, np.int64)
        np.maximum.at(last_train, split.train.user, split.train.time)
        assert (part.time >= last_train[part.user]).all()
        assert (split.train.user_counts()[part.user] >= 5).all()
    assert not np.intersect1d(split.valid.user, split.test.user).size
    assert split.hash == cold_item_holdout(log, frac=0.2, mode=mode, seed=3).hash


def test_seeds_change_random_but_not_temporal_choice(log):
    assert not np.array_equal(choose_cold_items(log, 0.2, "random", 0), choose_cold_items(log, 0.2, "random", 1))
    np.testing.assert_array_equal(choose_cold_items(log, 0.2, "temporal", 0), choose_cold_items(log, 0.2, "temporal", 1))


def test_temporal_picks_the_newest_items():
    # item k first appears at time 10 * k
    users = np.repeat(np.arange(10), 10)
    items = np.tile(np.arange(10), 10)
    times = items * 10 + users
    data = Interactions.from_arrays(users, items, time=times)
    cold = choose_cold_items(data, 0.3, "temporal")
    assert sorted(data.item_vocab.decode(cold)) == [7, 8, 9]


def test_hand_built_log_targets_and_dropped_events(monkeypatch):
    # user a: w1 w2 w3 C1 w4 C2 w5 -> target C2 (last cold), C1 dropped, w5 dropped (after the target)
    # user b: w1 C1 w2 -> one warm event before C1: too short, keeps its warm events
    rows = [("a", "w1", 1), ("a", "w2", 2), ("a", "w3", 3), ("a", "C1", 4), ("a", "w4", 5), ("a", "C2", 6),
            ("a", "w5", 7), ("b", "w1", 1), ("b", "C1", 2), ("b", "w2", 3)]
    u, i, t = zip(*rows)
    data = Interactions.from_arrays(np.array(u), np.array(i), time=np.array(t))
    cold = data.item_vocab.encode(["C1", "C2"])
    monkeypatch.setattr(cold_module, "choose_cold_items", lambda *a, **k: np.sort(cold))
    split = cold_item_holdout(data, valid=False, min_history=3)
    assert data.item_vocab.decode(split.test.item) == ["C2"] and data.user_vocab.decode(split.test.user) == ["a"]
    assert sorted(zip(data.user_vocab.decode(split.train.user), data.item_vocab.decode(split.train.item))) == [
        ("a", "w1"), ("a", "w2"), ("a", "w3"), ("a", "w4"), ("b", "w1"), ("b", "w2")]
    assert split.params["warm_events_after_target_dropped"] == 1 and split.params["cold_events_dropped"] == 2


@pytest.mark.parametrize("kwargs,match", [
    ({"frac": 0.0}, "frac"), ({"frac": 1.0}, "frac"), ({"mode": "newest"}, "mode"), ({"min_history": 0}, "min_history"),
    ({"valid_frac": 1.5}, "valid_frac"),
])
def test_bad_arguments(log, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cold_item_holdout(log, **kwargs)


def test_no_eligible_user_is_a_data_error(log):
    with pytest.raises(DataError, match="no user has 500 warm events"):
        cold_item_holdout(log, min_history=500)


def test_cold_items_of_another_split(log):
    from recforge.data.split import leave_last_out

    with pytest.raises(ConfigError, match="no cold items"):
        cold_items(leave_last_out(log))
