"""Ties (one rule for every metric list, the ties report, tie-aware expected metrics) and repeat consumption (the
seen policy, masked targets, the split's count of seen targets); early stopping's metric equals the evaluator's."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from recforge.data.interactions import Interactions
from recforge.data.split import Split, leave_last_out
from recforge.errors import ConfigError
from recforge.evaluate import evaluate
from recforge.metrics.ranking import compute
from recforge.models.popular import MostPopular
from recforge.models.validation import validation_metric
from recforge.registry import get_model


class IntScores:
    """Fixed small-integer scores per (user, item): ties everywhere."""

    name = "int-scores"

    def __init__(self, n_users, n_items, levels=4, seed=0):
        self.s = np.random.default_rng(seed).integers(0, levels, (n_users + 1, n_items + 1)).astype(np.float32)

    def score(self, users):
        return torch.from_numpy(self.s[users])


@pytest.fixture()
def split(tiny_log):
    return leave_last_out(tiny_log)


@pytest.mark.parametrize("make", [lambda s: MostPopular().fit(s.train, s.valid),
                                  lambda s: IntScores(s.train.n_users, s.train.n_items)], ids=["popular", "int-scores"])
def test_one_metric_or_several_gives_identical_values(split, make):
    model = make(split)
    both = evaluate(model, split, ("ndcg@10", "ndcg@20", "recall@5", "map@50"), n_boot=0)
    for name in both.per_user:
        alone = evaluate(model, split, (name,), n_boot=0)
        np.testing.assert_array_equal(alone.per_user[name], both.per_user[name])
    assert both.info["tied_share"]["@10"] > 0  # the ties are real: the tie rule is what decides


def test_ties_report_counts_tied_boundaries(split):
    model = IntScores(split.train.n_users, split.train.n_items, levels=30)
    rep = evaluate(model, split, ("ndcg@1", "ndcg@10"), n_boot=0)
    hist = split.train.concat(split.valid).to_csr()
    for k in (1, 10):
        tied = 0
        for u in rep.users:
            row = model.s[u, 1:].copy()
            row[hist[[u]].indices[hist[[u]].indices > 0] - 1] = -np.inf
            best = np.sort(row[np.isfinite(row)])[::-1]
            tied += len(best) > k and best[k - 1] == best[k]
        assert rep.info["tied_share"][f"@{k}"] == pytest.approx(tied / len(rep.users))
    assert rep.info["ties"] == "index"


def brute_force_expected(scores: np.ndarray, relevant: set[int], names: list[str]) -> dict[str, float]:
    """Mean of each metric over every ranking consistent with the scores (all orders within tie groups)."""
    items = [i for i in range(1, len(scores)) if np.isfinite(scores[i])]
    totals, count = dict.fromkeys(names, 0.0), 0
    for order in itertools.permutations(items):
        if any(scores[a] < scores[b] for a, b in zip(order, order[1:])):
            continue
        hits = np.array([[i in relevant for i in order]])
        hits = np.pad(hits, ((0, 0), (0, max(0, 10 - hits.shape[1]))))
        for name, val in compute(names, hits, np.array([len(relevant)])).items():
            totals[name] += float(val[0])
        count += 1
    return {n: v / count for n, v in totals.items()}


def test_expected_metrics_match_brute_force_enumeration():
    # 6 users x 7 items with 3 score levels; three train events and two test targets per user (a target that is
    # also a train item is masked and dropped, as in the evaluator)
    rng = np.random.default_rng(3)
    users, items, times = [], [], []
    for u in range(6):
        users += [u] * 5
        items += rng.choice(np.arange(1, 8), size=3, replace=False).tolist() + rng.choice(np.arange(1, 8), 2).tolist()
        times += [1, 2, 3, 10, 10]
    data = Interactions.from_arrays(users, items, times)
    split = Split(train=data.with_rows(data.time < 10), test=data.with_rows(data.time >= 10))
    model = IntScores(split.train.n_users, split.train.n_items, levels=3, seed=5)
    names = ["ndcg@3", "recall@2", "precision@3", "f1@2", "rprec@3", "ndcg@10"]
    rep = evaluate(model, split, names, ties="expected", n_boot=0)
    seen = split.train.to_csr()
    target = split.test.to_csr()
    for row, u in enumerate(rep.users):
        scores = model.s[u].astype(np.float64).copy()
        scores[0] = -np.inf
        scores[seen[[u]].indices] = -np.inf
        relevant = {int(i) for i in target[[u]].indices if np.isfinite(scores[i])}
        want = brute_force_expected(scores, relevant, names)
        for name in names:
            assert rep.per_user[name][row] == pytest.approx(want[name], abs=1e-12), (u, name)
    assert rep.info["ties"] == "expected"
    # the expected value is independent of the metric list too
    alone = evaluate(model, split, ("ndcg@3",), ties="expected", n_boot=0)
    np.testing.assert_allclose(alone.per_user["ndcg@3"], rep.per_user["ndcg@3"], rtol=0, atol=1e-15)


def test_expected_metrics_equal_plain_ones_without_ties(split):
    model = IntScores(split.train.n_users, split.train.n_items, levels=10**6)
    plain = evaluate(model, split, ("ndcg@10", "recall@20"), n_boot=0)
    assert plain.info["tied_share"]["@10"] == 0
    expected = evaluate(model, split, ("ndcg@10", "recall@20"), ties="expected", n_boot=0)
    for name in plain.per_user:
        np.testing.assert_allclose(expected.per_user[name], plain.per_user[name], atol=1e-15)


def test_expected_ties_refuse_nonlinear_metrics(split):
    with pytest.raises(ConfigError, match="linear in the hits"):
        evaluate(MostPopular().fit(split.train), split, ("ndcg@10", "mrr@10"), ties="expected")
    with pytest.raises(ConfigError, match="ties must be"):
        evaluate(MostPopular().fit(split.train), split, ("ndcg@10",), ties="random")


def planted_repeats() -> Split:
    """8 users; users 0-2 consume their test item earlier too; item 'x' is consumed twice by user 7 in train."""
    rows = []
    for u in range(8):
        hist = [f"i{(u + j) % 10}" for j in range(4)]
        if u == 7:
            hist.append("x")
            hist.append("x")
        target = hist[1] if u < 3 else ("x" if u == 3 else f"t{u}")
        rows += [(f"u{u}", it, t) for t, it in enumerate(hist + [target])]
    users, items, times = zip(*rows)
    return leave_last_out(Interactions.from_arrays(list(users), list(items), list(times)), valid=False)


class Oracle:
    name = "oracle"

    def __init__(self, split):
        self.target = split.test.to_csr().toarray().astype(np.float32)

    def score(self, users):
        return torch.from_numpy(self.target[users])


def test_split_reports_seen_targets():
    split = planted_repeats()
    # user 3's target 'x' is not in user 3's own history: only users 0-2 repeat
    assert split.seen_targets("test") == {"events": 3, "events_total": 8, "users": 3, "users_total": 8}
    assert split.summary()["test_seen_targets"] == 3
    with pytest.raises(ConfigError, match="validation part"):
        split.seen_targets("valid")


def test_masked_targets_are_dropped_and_counted():
    split = planted_repeats()
    oracle = Oracle(split)
    dropped = evaluate(oracle, split, ("recall@1",), n_boot=0)
    assert dropped.info["n_targets_masked"] == 3 and dropped.info["n_users_all_targets_masked"] == 3
    assert dropped.info["n_users"] == 5 and dropped.mean("recall@1") == 1.0
    missed = evaluate(oracle, split, ("recall@1",), masked_targets="miss", n_boot=0)
    assert missed.info["n_users"] == 8 and missed.mean("recall@1") == pytest.approx(5 / 8)
    unmasked = evaluate(oracle, split, ("recall@1",), exclude_seen="none", n_boot=0)
    assert unmasked.info["n_targets_masked"] == 0 and unmasked.mean("recall@1") == 1.0
    with pytest.raises(ConfigError, match="masked_targets"):
        evaluate(oracle, split, ("recall@1",), masked_targets="keep")


def test_seen_except_repeatable_keeps_repeated_items_rankable():
    # user 7 consumed 'x' twice, so 'x' is repeatable; give user 3 'x' in the history too: the policy keeps it
    split = planted_repeats()
    x = split.train.item_vocab.encode(["x"])[0]
    u3 = split.train.user_vocab.encode(["u3"])[0]
    extra = Interactions(user=np.array([u3]), item=np.array([x]), time=np.array([-1]), value=np.ones(1, np.float32),
                         user_vocab=split.train.user_vocab, item_vocab=split.train.item_vocab)
    split = Split(train=split.train.concat(extra), test=split.test)
    oracle = Oracle(split)
    strict = evaluate(oracle, split, ("recall@1",), n_boot=0)
    assert strict.info["n_targets_masked"] == 4
    repeat = evaluate(oracle, split, ("recall@1",), exclude_seen="seen-except-repeatable", n_boot=0)
    assert repeat.info["n_repeatable"] == 1 and repeat.info["n_targets_masked"] == 3
    assert u3 in repeat.users and repeat.mean("recall@1") == 1.0
    explicit = evaluate(oracle, split, ("recall@1",), exclude_seen="seen-except-repeatable",
                        repeatable=split.train.item_vocab.encode(["i1", "i2", "i3"]), n_boot=0)
    assert explicit.info["n_targets_masked"] == 1  # users 0-2's targets are i1..i3; user 3's x is masked again


def test_true_false_are_aliases_of_the_policies(split):
    model = MostPopular().fit(split.train, split.valid)
    for alias, policy in ((True, "all-seen"), (False, "none")):
        a = evaluate(model, split, ("ndcg@10",), exclude_seen=alias, n_boot=0)
        b = evaluate(model, split, ("ndcg@10",), exclude_seen=policy, n_boot=0)
        np.testing.assert_array_equal(a.per_user["ndcg@10"], b.per_user["ndcg@10"])
        assert a.info["exclude_seen"] == policy
    with pytest.raises(ConfigError, match="exclude_seen must be one of"):
        evaluate(model, split, ("ndcg@10",), exclude_seen="seen")


@pytest.mark.parametrize("name", ["popular", "itemknn", "bpr", "sasrec", "hstu"])
def test_validation_metric_equals_the_evaluator(tiny_log, name):
    split = leave_last_out(tiny_log)
    cls = get_model(name)
    config = getattr(cls, "test_config", None)
    model = (cls(config) if config is not None else cls()).fit(split.train)
    report = evaluate(model, Split(train=split.train, test=split.valid, valid=split.valid, name="train/valid"),
                      ("ndcg@10",), on="valid", n_boot=0)
    assert report.info["n_targets_masked"] > 0  # the zipf log repeats items: the masked targets are handled alike
    assert validation_metric(model, split.train, split.valid, "ndcg@10", batch_size=7) == pytest.approx(
        report.mean("ndcg@10"), abs=1e-12)
