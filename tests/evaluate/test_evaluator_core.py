"""The evaluator: full ranking, seen masking, batch invariance, sampled protocol warning, CIs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.data.jagged import gather_jagged
from recforge.data.split import leave_last_out, user_holdout
from recforge.errors import ConfigError
from recforge.evaluate import evaluate
from recforge.metrics.stats import bootstrap_ci
from recforge.models.popular import MostPopular


class Oracle:
    """Scores each user's test items highest: a perfect model, for checking the plumbing."""

    supports_histories = False
    name = "oracle"

    def __init__(self, split, noise=0.0, seed=0):
        self.target = split.test.to_csr().toarray().astype(np.float32)
        rng = np.random.default_rng(seed)
        self.noise = rng.random(self.target.shape).astype(np.float32) * noise

    def score(self, users):
        return torch.from_numpy(self.target[users] + self.noise[users])


class Fixed:
    """Fixed random scores per (user, item), so that batch invariance can be checked on a non-trivial model."""

    supports_histories = False
    name = "fixed"

    def __init__(self, n_users, n_items, seed=0):
        self.s = np.random.default_rng(seed).random((n_users + 1, n_items + 1)).astype(np.float32)

    def score(self, users):
        return torch.from_numpy(self.s[users])


@pytest.fixture()
def split(tiny_log):
    return leave_last_out(tiny_log)


def test_oracle_scores_one(split):
    # the random log repeats items, so some targets are also train items: unmask them for the oracle
    r = evaluate(Oracle(split), split, ("ndcg@10", "recall@5", "hit@1", "mrr@10"), exclude_seen=False)
    for m in r.metrics.values():
        assert m["mean"] == pytest.approx(1.0)
    assert r.info["n_users"] == len(np.unique(split.test.user))


@pytest.mark.parametrize("batch_size", [1, 3, 17, 4096])
def test_batch_size_invariance(split, batch_size):
    model = Fixed(split.train.n_users, split.train.n_items)
    ref = evaluate(model, split, ("ndcg@10", "recall@20", "map@5"), batch_size=1000)
    other = evaluate(model, split, ("ndcg@10", "recall@20", "map@5"), batch_size=batch_size)
    for name in ref.per_user:
        np.testing.assert_array_equal(ref.per_user[name], other.per_user[name])
    np.testing.assert_array_equal(ref.top_items, other.top_items)


def test_seen_items_are_masked(split):
    model = MostPopular().fit(split.train, split.valid)
    r = evaluate(model, split, ("ndcg@10",))
    hist = split.train.concat(split.valid).to_csr()
    for u, top in zip(r.users, r.top_items):
        assert not hist[[u]][:, top].toarray().any()
    unmasked = evaluate(model, split, ("ndcg@10",), exclude_seen=False)
    assert unmasked.info["exclude_seen"] == "none"  # True/False are aliases of the policies "all-seen"/"none"


def test_sampled_protocol_warns_and_is_optimistic(split):
    model = Fixed(split.train.n_users, split.train.n_items)
    full = evaluate(model, split, ("ndcg@10",))
    sampled = evaluate(model, split, ("ndcg@10",), protocol="sampled-uniform", n_negatives=10)
    assert sampled.info["warnings"] and "SAMPLED" in sampled.info["warnings"][0]
    assert sampled.mean("ndcg@10") > full.mean("ndcg@10")


def test_cold_users_need_history_models(tiny_log):
    s = user_holdout(tiny_log, test_frac=0.3)
    with pytest.raises(ConfigError, match="holds out whole users"):
        evaluate(Fixed(s.train.n_users, s.train.n_items), s)
    r = evaluate(MostPopular().fit(s.train), s, ("recall@10",))
    # the zipf log repeats items: users whose every target is in their fold-in history are not evaluated, and counted
    assert r.info["n_users_all_targets_masked"] > 0
    assert r.info["n_users"] + r.info["n_users_all_targets_masked"] == len(np.unique(s.test.user))


def test_gather_jagged():
    items, offsets = np.arange(10), np.array([0, 3, 3, 7, 10])
    got, off = gather_jagged(items, offsets, np.array([2, 0, 1]))
    assert got.tolist() == [3, 4, 5, 6, 0, 1, 2] and off.tolist() == [0, 4, 7, 7]


def test_bootstrap_ci_covers_mean_and_is_seeded():
    vals = np.random.default_rng(1).random(500)
    lo, hi = bootstrap_ci(vals, seed=3)
    assert lo < vals.mean() < hi and hi - lo < 0.1
    assert (lo, hi) == bootstrap_ci(vals, seed=3)


@pytest.mark.parametrize(("kwargs", "message"), [({"metrics": ()}, "must not be empty"), ({"batch_size": 0}, "batch_size"),
                                                 ({"protocol": "sampled"}, "protocol must be"), ({"on": "train"}, "on must be")])
def test_bad_arguments(split, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        evaluate(Fixed(split.train.n_users, split.train.n_items), split, **kwargs)
