"""Beyond-accuracy metrics against a hand-computed table.

The table: 5 items, 4 training users, popularity (distinct users) = [_, 4, 2, 1, 1, 0] (item 5 never seen).
Two evaluated users with K = 3 lists:  u0 -> [1, 2, 5] (hits at ranks 0 and 2),  u1 -> [3, 1, empty] (hit at rank 1).
Held-out targets (not seen): u0 = {1, 4, 5}, u1 = {1, 2}.  Train items: u0 = {3}, u1 = {4}.
Discounts: 1, 1/log2(3) = 0.6309298, 0.5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.evaluate import beyond as b

POP = np.array([0, 4, 2, 1, 1, 0])
TOP = np.array([[1, 2, 5], [3, 1, 0]])
HITS = np.array([[True, False, True], [False, True, False]])
D1 = 1 / math.log2(3)
HEAD_HALF = b.head_items(POP, head_share=0.5)  # {1}
TARGETS = sp.csr_array(np.array([[0, 1, 0, 0, 1, 1], [0, 1, 1, 0, 0, 0]], dtype=np.float32))
SEEN = sp.csr_array(np.array([[0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]], dtype=np.float32))


def test_head_items_pareto_split():
    # sorted popularity 4, 2, 1, 1, 0 -> cumulative 4, 6, 7, 8 of 8
    assert np.flatnonzero(b.head_items(POP, 0.8)).tolist() == [1, 2, 3]  # 6.4 is crossed by item 3
    assert np.flatnonzero(HEAD_HALF).tolist() == [1]  # 4 reaches 50% exactly
    assert not b.head_items(POP, 0.8)[0]


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_head_items_bad_share(share):
    with pytest.raises(ConfigError, match="head_share"):
        b.head_items(POP, share)


def test_exposure_coverage_gini_entropy():
    assert b.exposure(TOP, 5).tolist() == [0, 2, 1, 1, 0, 1]
    assert b.catalog_coverage(TOP, 5) == pytest.approx(4 / 5)
    # shares ascending [0, .2, .2, .2, .4], weights (2j - 6) = -4, -2, 0, 2, 4 -> 1.6 / 4
    assert b.gini(TOP, 5) == pytest.approx(0.4)
    assert b.entropy(TOP, 5) == pytest.approx(-(0.4 * math.log(0.4) + 3 * 0.2 * math.log(0.2)))
    assert b.gini(np.array([[1, 2], [3, 4]]), 4) == pytest.approx(0.0)  # perfectly equal exposure
    assert b.gini(np.array([[1], [1]]), 4) == pytest.approx(1.0)  # all exposure on one item


def test_user_coverage():
    assert b.user_coverage(TOP, 2) == 1.0
    assert b.user_coverage(TOP, 4) == 0.5
    assert b.user_coverage(np.array([[1, 2], [0, 0]]), 2) == 0.5
    assert b.user_coverage(TOP, 2, hits=np.array([[False] * 3, [False, True, False]])) == 0.5


def test_epc_hand_table():
    # novelty 1 - pop/4 = [1, 0, .5, .75, .75, 1]
    rel = b.epc(TOP, POP, 4, HITS)
    assert rel[0] == pytest.approx((0 + 0.5 * 1) / (1 + D1 + 0.5))
    assert rel[1] == pytest.approx(0.0)  # the only hit is item 1 (novelty 0)
    free = b.epc(TOP, POP, 4)
    assert free[0] == pytest.approx((D1 * 0.5 + 0.5 * 1) / (1 + D1 + 0.5))
    assert free[1] == pytest.approx((0.75 + D1 * 0) / (1 + D1))


def test_efd_hand_table():
    # -log2(pop/8): item1 1, item2 2, item3 3, item4 3, item5 (unseen) = max = 3
    v = b.efd(TOP, POP, HITS)
    assert v[0] == pytest.approx((1 * 1 + 0.5 * 3) / (1 + D1 + 0.5))
    assert v[1] == pytest.approx(D1 * 1 / (1 + D1))


def test_arp_aplt_aclt_hand_table():
    assert b.arp(TOP, POP).tolist() == pytest.approx([(4 + 2 + 0) / 3, (1 + 4) / 2])
    assert b.aplt(TOP, HEAD_HALF).tolist() == pytest.approx([2 / 3, 1 / 2])
    assert b.aclt(TOP, HEAD_HALF).tolist() == [2.0, 1.0]


def test_pop_reo_pop_rsp_hand_table():
    # REO: hits head 2 / head targets 2 = 1; hits tail 1 / tail targets 3 -> std/mean of [1, 1/3] = (1/3)/(2/3)
    assert b.pop_reo(HITS, TOP, HEAD_HALF, TARGETS) == pytest.approx(0.5)
    # RSP: head recs 2 / (2*1 - 0) = 1; tail recs 3 / (2*4 - 2) = .5 -> .25 / .75
    assert b.pop_rsp(TOP, HEAD_HALF, SEEN) == pytest.approx(1 / 3)


def test_serendipity_against_popularity_lists():
    pm = b.popularity_top_k(POP, SEEN, 3)
    assert pm.tolist() == [[1, 2, 4], [1, 2, 3]]  # seen items skipped, ties (items 3, 4) by smaller id
    assert b.serendipity(HITS, TOP, pm).tolist() == pytest.approx([1 / 3, 0.0])
    shared = b.popularity_top_k(POP, None, 2)
    assert shared.tolist() == [[1, 2]]
    assert b.serendipity(HITS, TOP, shared).tolist() == pytest.approx([1 / 3, 0.0])


@pytest.mark.parametrize("as_sparse", [False, True])
def test_intra_list_diversity(as_sparse):
    feats = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0, 0], [1, 0]], dtype=np.float32)
    f = sp.csr_array(feats) if as_sparse else feats
    ild = b.intra_list_diversity(TOP, f)
    # u0 [1,2,5]: d(1,2)=1, d(1,5)=0, d(2,5)=1 -> 2/3;  u1 [3,1]: 1 - 1/sqrt(2)
    assert ild.tolist() == pytest.approx([2 / 3, 1 - 1 / math.sqrt(2)], abs=1e-6)
    with pytest.raises(ConfigError, match="features"):
        b.intra_list_diversity(TOP, feats[:3])


def test_hits_from_targets():
    targets = sp.csr_array(np.array([[0] * 6, [0, 1, 0, 0, 1, 1], [0, 1, 1, 0, 0, 0]], dtype=np.float32))
    assert b.hits_from_targets(np.array([1, 2]), TOP, targets).tolist() == HITS.tolist()


def test_beyond_accuracy_matches_the_parts():
    # train: 4 users; popularity = distinct users per item = [_, 4, 2, 1, 1, 0]
    train_rows = [("a", 1), ("a", 3), ("b", 1), ("b", 4), ("c", 1), ("c", 2), ("d", 1), ("d", 2), ("d", 1)]
    test_rows = [("a", 1), ("a", 4), ("a", 5), ("b", 1), ("b", 2)]
    users = [u for u, _ in train_rows + test_rows]
    items = [i for _, i in train_rows + test_rows]
    log = Interactions.from_arrays(users, items, np.arange(len(users)))
    iv = log.item_vocab
    n_train = len(train_rows)
    train, test = log.with_rows(log.time < n_train), log.with_rows(log.time >= n_train)
    dense = lambda ext: iv.encode(np.asarray(ext))  # noqa: E731
    top = np.stack([dense([1, 2, 5]), np.r_[dense([3, 1]), 0]])
    uids = log.user_vocab.encode(np.array(["a", "b"]))
    pop = b.item_popularity(train)
    assert pop[dense([1, 2, 3, 4, 5])].tolist() == [4, 2, 1, 1, 0]
    glob, per_user = b.beyond_accuracy(top, uids, train, test, k=3, head_share=0.5)
    head = b.head_items(pop, 0.5)
    # user a saw item 3 and 1 in train; target 1 was seen, so only {4, 5} can be hit for a
    hits = np.array([[False, False, True], [False, True, False]])
    assert per_user["epc@3"].tolist() == pytest.approx(b.epc(top, pop, 4, hits).tolist())
    assert per_user["aplt@3"].tolist() == pytest.approx(b.aplt(top, head).tolist())
    assert set(glob) == {f"{n}@3" for n in b.GLOBAL}
    assert set(per_user) == {f"{n}@3" for n in b.PER_USER if n != "ild"}
    assert glob["catalog_coverage@3"] == pytest.approx(4 / 5)
    with pytest.raises(ConfigError, match="top_items"):
        b.beyond_accuracy(top, uids, train, test, k=5)


def test_fast_paths_equal_plain_references():
    """ILD via ||sum of unit vectors||^2 and the searchsorted popularity lists equal naive per-user loops."""
    rng = np.random.default_rng(0)
    n_items, n_users, k = 30, 25, 6
    feats = (rng.random((n_items + 1, 7)) < 0.3).astype(np.float64)
    feats[5] = 0.0  # an item without attributes
    top = np.stack([rng.choice(np.arange(1, n_items + 1), k, replace=False) for _ in range(n_users)])
    top[0, 4:] = 0  # a short list
    ild = b.intra_list_diversity(top, sp.csr_array(feats))
    for u in range(n_users):
        items = [i for i in top[u] if i > 0]
        d = []
        for x in range(len(items)):
            for y in range(x + 1, len(items)):
                fa, fb = feats[items[x]], feats[items[y]]
                na, nb = np.linalg.norm(fa), np.linalg.norm(fb)
                d.append(1 - (fa @ fb / (na * nb) if na > 0 and nb > 0 else 0.0))
        assert ild[u] == pytest.approx(np.mean(d)), u
    pop = rng.integers(0, 5, n_items + 1)
    pop[0] = 0
    dense_seen = (rng.random((n_users, n_items + 1)) < 0.4).astype(np.float32)
    dense_seen[:, 0] = 0
    dense_seen[1, 1:] = 1  # a user who has seen everything gets an all-padding list
    seen = sp.csr_array(dense_seen)
    got = b.popularity_top_k(pop, seen, k)
    order = sorted(range(1, n_items + 1), key=lambda i: (-pop[i], i))
    for u in range(n_users):
        seen_u = set(seen[[u]].indices.tolist())
        want = [i for i in order if i not in seen_u][:k]
        assert got[u].tolist() == want + [0] * (k - len(want)), u
