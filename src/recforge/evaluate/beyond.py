"""Beyond-accuracy metrics: coverage, exposure concentration, novelty, popularity bias, diversity, serendipity.

Inputs are the evaluator's outputs: ``top_items`` (U, K) dense item ids ranked best first (0 = empty slot, ignored),
``users`` (U,) dense user ids, plus training statistics: ``popularity`` (n_items+1,) = number of distinct training users
per item (index 0 is padding), and for the relevance-aware metrics a hit matrix ``hits`` (U, K) (True where the item at
that rank is a held-out target). Every function is vectorised over users (no Python loop per user); functions that
return per-user values return shape (U,) so they get bootstrap CIs and paired tests like accuracy metrics.

Definitions follow Elliot (Anelli et al., SIGIR 2021) and "Is ChatGPT a Good Recommender? / Evaluating ChatGPT as a
Recommender System" (Di Palma et al., RecSys 2023), which use the same formulas; each docstring states the formula.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError

log = logging.getLogger(__name__)

#: Per-user beyond-accuracy metrics (shape (U,)), reported with bootstrap CIs.
PER_USER = ("epc", "efd", "arp", "aplt", "aclt", "ild", "serendipity")
#: Global (list-set level) metrics, one number each.
GLOBAL = ("catalog_coverage", "user_coverage", "gini", "entropy", "pop_reo", "pop_rsp")


def _discounts(k: int) -> np.ndarray:
    """Logarithmic rank discount 1 / log2(r + 2) for ranks r = 0..k-1, shape (k,)."""
    return 1.0 / np.log2(np.arange(k) + 2.0)


def _valid(top_items: np.ndarray) -> np.ndarray:
    """(U, K) bool: True where a slot holds a real item (dense id >= 1)."""
    return np.asarray(top_items) > 0


def item_popularity(train: Interactions) -> np.ndarray:
    """Number of distinct training users per item, shape (n_items+1,) (index 0 = padding = 0)."""
    csr = train.to_csr(binary=True)
    return np.asarray(csr.sum(axis=0)).ravel().astype(np.int64)


def head_items(popularity: np.ndarray, head_share: float = 0.8) -> np.ndarray:
    """Short-head mask (n_items+1,) bool: the most popular items that together hold ``head_share`` of all training
    interactions (items sorted by popularity, descending, ties by id; the item that crosses the share is included).
    The long tail is every other catalog item, including never-seen ones. Definition of Elliot's ``pop`` helper
    (Abdollahpouri et al., "Managing popularity bias", RecSys 2017 use the same 80/20 Pareto split)."""
    if not 0.0 < head_share <= 1.0:
        raise ConfigError(f"head_share must be in (0, 1], got {head_share}")
    pop = np.asarray(popularity, dtype=np.float64).copy()
    pop[0] = 0.0
    total = pop.sum()
    head = np.zeros(len(pop), bool)
    if total <= 0:
        return head
    order = np.argsort(-pop[1:], kind="stable") + 1
    cum = np.cumsum(pop[order])
    n_head = int(np.searchsorted(cum, head_share * total - 1e-9) + 1)
    head[order[:n_head]] = True
    return head


def hits_from_targets(users: np.ndarray, top_items: np.ndarray, targets: sp.csr_array) -> np.ndarray:
    """(U, K) bool: ``top_items[u, r]`` is in user ``users[u]``'s row of ``targets`` (n_users+1, n_items+1)."""
    top = np.asarray(top_items, dtype=np.int64)
    n_cols = targets.shape[1]
    rows = sp.csr_array(targets)[np.asarray(users)]
    r, c = rows.nonzero()
    keys = np.sort(r.astype(np.int64) * n_cols + c)
    query = (np.arange(len(top), dtype=np.int64)[:, None] * n_cols + top).ravel()
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    found = keys[pos] == query if len(keys) else np.zeros(len(query), bool)
    return found.reshape(top.shape) & _valid(top)


# ---------------------------------------------------------------------------------------------- coverage / exposure
def exposure(top_items: np.ndarray, n_items: int) -> np.ndarray:
    """How often each item appears in the lists, shape (n_items+1,) (index 0 = empty slots, excluded = 0)."""
    counts = np.bincount(np.asarray(top_items, dtype=np.int64).ravel(), minlength=n_items + 1)
    counts[0] = 0
    return counts


def catalog_coverage(top_items: np.ndarray, n_items: int) -> float:
    """Catalog (item) coverage = |union of all top-k lists| / |I| (Ge et al., RecSys 2010; Elliot ItemCoverage
    reports the numerator)."""
    return float((exposure(top_items, n_items) > 0).sum() / n_items) if n_items else float("nan")


def user_coverage(top_items: np.ndarray, n_users: int, hits: np.ndarray | None = None) -> float:
    """User coverage = |users with a non-empty list| / ``n_users`` (Elliot UserCoverage, normalised). With ``hits``
    it counts users who got at least one relevant item in their list instead (Ge et al. 2010, "useful" coverage)."""
    has = hits.any(axis=1) if hits is not None else _valid(top_items).any(axis=1)
    return float(has.sum() / n_users) if n_users else float("nan")


def gini(top_items: np.ndarray, n_items: int) -> float:
    """Gini index of the exposure distribution over the whole catalog:
    G = 1/(n-1) * sum_{j=1..n} (2j - n - 1) p_(j), with p_(j) the exposure shares sorted ascending and n = |I|.
    0 = every item recommended equally often, 1 = all exposure on one item (Elliot reports 1 - G as "Gini")."""
    counts = exposure(top_items, n_items)[1:].astype(np.float64)
    n, total = len(counts), counts.sum()
    if n < 2 or total == 0:
        return float("nan")
    p = np.sort(counts) / total
    j = np.arange(1, n + 1)
    return float(((2 * j - n - 1) * p).sum() / (n - 1))


def entropy(top_items: np.ndarray, n_items: int) -> float:
    """Shannon entropy of the exposure shares, H = -sum_i p_i ln p_i (nats; Elliot ShannonEntropy). Max = ln |I|."""
    counts = exposure(top_items, n_items)[1:].astype(np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


# ---------------------------------------------------------------------------------------------- novelty / popularity
def epc(top_items: np.ndarray, popularity: np.ndarray, n_train_users: int, hits: np.ndarray | None = None) -> np.ndarray:
    """Expected Popularity Complement (Vargas & Castells, RecSys 2011; Elliot EPC), per user:
    EPC@k = sum_r disc(r) rel(u, i_r) (1 - pop(i_r) / |U_train|) / sum_r disc(r), disc(r) = 1/log2(r+2).
    ``hits`` gives rel (binary); without it rel = 1 (the relevance-free variant)."""
    top = np.asarray(top_items, dtype=np.int64)
    nov = 1.0 - np.asarray(popularity, dtype=np.float64) / max(n_train_users, 1)
    return _discounted_mean(nov[top], top, hits)


def efd(top_items: np.ndarray, popularity: np.ndarray, hits: np.ndarray | None = None) -> np.ndarray:
    """Expected Free Discovery (Vargas & Castells, RecSys 2011; Elliot EFD), per user:
    EFD@k = sum_r disc(r) rel(u, i_r) (-log2 p(i_r)) / sum_r disc(r), p(i) = pop(i) / sum_j pop(j);
    an item never seen in training gets the largest observed novelty -log2(min_j pop(j) / sum_j pop(j))."""
    top = np.asarray(top_items, dtype=np.int64)
    pop = np.asarray(popularity, dtype=np.float64)
    total = pop[1:].sum()
    positive = pop[1:][pop[1:] > 0]
    if total == 0 or not len(positive):
        return np.full(len(top), np.nan)
    nov = np.full(len(pop), -np.log2(positive.min() / total))
    nz = pop > 0
    nov[nz] = -np.log2(pop[nz] / total)
    return _discounted_mean(nov[top], top, hits)


def _discounted_mean(values: np.ndarray, top: np.ndarray, hits: np.ndarray | None) -> np.ndarray:
    """sum_r disc(r) rel_r v_r / sum_r disc(r) over the valid slots of each row; (U, K) -> (U,)."""
    valid = _valid(top)
    disc = _discounts(top.shape[1])[None, :] * valid
    rel = valid if hits is None else (np.asarray(hits, bool) & valid)
    norm = disc.sum(axis=1)
    num = (disc * rel * values).sum(axis=1)
    return np.divide(num, norm, out=np.zeros(len(top)), where=norm > 0)


def arp(top_items: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Average Recommendation Popularity (Yin et al., VLDB 2012; Abdollahpouri et al. 2019; Elliot ARP), per user:
    ARP_u = sum_{i in L_u} pop(i) / |L_u|."""
    top = np.asarray(top_items, dtype=np.int64)
    valid = _valid(top)
    n = valid.sum(axis=1)
    s = (np.asarray(popularity, dtype=np.float64)[top] * valid).sum(axis=1)
    return np.divide(s, n, out=np.zeros(len(top)), where=n > 0)


def aplt(top_items: np.ndarray, is_head: np.ndarray) -> np.ndarray:
    """Average Percentage of Long Tail items (Abdollahpouri et al., RecSys 2017; Elliot APLT), per user:
    APLT_u = |L_u ∩ Tail| / |L_u|."""
    top = np.asarray(top_items, dtype=np.int64)
    valid = _valid(top)
    n = valid.sum(axis=1)
    tail = (~np.asarray(is_head, bool)[top] & valid).sum(axis=1)
    return np.divide(tail, n, out=np.zeros(len(top)), where=n > 0)


def aclt(top_items: np.ndarray, is_head: np.ndarray) -> np.ndarray:
    """Average Coverage of Long Tail items (Abdollahpouri et al., FLAIRS 2019; Elliot ACLT), per user:
    ACLT_u = |L_u ∩ Tail| (a count, not a share)."""
    top = np.asarray(top_items, dtype=np.int64)
    return (~np.asarray(is_head, bool)[top] & _valid(top)).sum(axis=1).astype(np.float64)


def _std_over_mean(p: np.ndarray) -> float:
    """Relative standard deviation (population std / mean) of the per-group probabilities."""
    mean = p.mean()
    return float(p.std() / mean) if mean > 0 else float("nan")


def pop_reo(hits: np.ndarray, top_items: np.ndarray, is_head: np.ndarray, targets: sp.csr_array) -> float:
    """Popularity-based Ranking-based Equal Opportunity (Zhu et al., SIGIR 2020/2021; Elliot PopREO):
    P(R@k | g, y=1) = sum_u |top_k(u) ∩ g ∩ T_u| / sum_u |g ∩ T_u|  for g in {head, tail}  (a per-group recall);
    PopREO = std(P_head, P_tail) / mean(P_head, P_tail) (population std). 0 = equal chances, larger = biased.
    ``targets`` (U, n_items+1) holds each evaluated user's held-out items with train items already removed (the
    evaluator masks seen items, so such targets could never be hit)."""
    top = np.asarray(top_items, dtype=np.int64)
    head = np.asarray(is_head, bool)
    h = np.asarray(hits, bool)
    num = np.array([(h & head[top]).sum(), (h & ~head[top] & _valid(top)).sum()], dtype=np.float64)
    t = sp.csr_array(targets)
    tail = ~head
    tail[0] = False
    den = np.array([(t @ head.astype(np.float64)).sum(), (t @ tail.astype(np.float64)).sum()])
    if (den == 0).any():
        return float("nan")
    return _std_over_mean(num / den)


def pop_rsp(top_items: np.ndarray, is_head: np.ndarray, seen: sp.csr_array) -> float:
    """Popularity-based Ranking-based Statistical Parity (Zhu et al. 2021; Elliot PopRSP):
    P(R@k | g) = sum_u |top_k(u) ∩ g| / sum_u |g \\ I_u^train|  for g in {head, tail};
    PopRSP = std(P_head, P_tail) / mean(P_head, P_tail). ``seen`` (U, n_items+1) = each evaluated user's train items."""
    top = np.asarray(top_items, dtype=np.int64)
    head = np.asarray(is_head, bool)
    tail = ~head
    tail[0] = False
    valid = _valid(top)
    num = np.array([(head[top] & valid).sum(), (tail[top] & valid).sum()], dtype=np.float64)
    s = sp.csr_array(seen)
    n_users = s.shape[0]
    den = np.array([
        n_users * head.sum() - (s @ head.astype(np.float64)).sum(),
        n_users * tail.sum() - (s @ tail.astype(np.float64)).sum(),
    ])
    if (den <= 0).any():
        return float("nan")
    return _std_over_mean(num / den)


# ---------------------------------------------------------------------------------------------- diversity / serendipity
def intra_list_diversity(top_items: np.ndarray, features: np.ndarray | sp.spmatrix | sp.sparray) -> np.ndarray:
    """Intra-list diversity (Ziegler et al., WWW 2005; Smyth & McClave 2001), per user:
    ILD_u = 2 / (n (n-1)) * sum_{a<b} (1 - cos(f_a, f_b)) over the n valid items of L_u, with ``features``
    (n_items+1, F) item attributes (multi-hot, dense or sparse) or embeddings. An item with an all-zero feature row
    has cosine 0 to everything (distance 1). Lists with fewer than 2 items get 0.

    Computed without forming pairs: with unit rows x_i and s_u = sum_{i in L_u} x_i,
    sum_{a != b} cos(a, b) = ||s_u||^2 - sum_i ||x_i||^2, so the cost is one sparse (U, n_items+1) x (n_items+1, F)
    product, O(U K F) at most (lists hold distinct items, as top-k lists do).
    """
    top = np.asarray(top_items, dtype=np.int64)
    if features.shape[0] < int(top.max(initial=0)) + 1:
        raise ConfigError(f"features has {features.shape[0]} rows, need one per dense item id (>= {top.max() + 1})")
    valid = _valid(top)
    if sp.issparse(features):
        f = sp.csr_array(features, dtype=np.float64)
        norms = np.sqrt(np.asarray(f.multiply(f).sum(axis=1)).ravel())
    else:
        f = np.asarray(features, dtype=np.float64)
        norms = np.linalg.norm(f, axis=1)
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    u, r = np.nonzero(valid)
    membership = sp.csr_array((np.ones(len(u)), (u, top[u, r])), shape=(len(top), f.shape[0]))
    unit = sp.diags_array(inv) @ f if sp.issparse(f) else f * inv[:, None]
    sums = membership @ unit  # (U, F): s_u
    sq = np.asarray(sums.multiply(sums).sum(axis=1)).ravel() if sp.issparse(sums) else (sums * sums).sum(axis=1)
    self_sim = ((norms[top] > 0) & valid).sum(axis=1)  # sum_i ||x_i||^2: 1 per item with a non-zero row
    n = valid.sum(axis=1).astype(np.float64)
    n_pairs = n * (n - 1)
    return np.divide(n_pairs - (sq - self_sim), n_pairs, out=np.zeros(len(top)), where=n_pairs > 0)


def popularity_top_k(popularity: np.ndarray, seen: sp.csr_array | None, k: int) -> np.ndarray:
    """The popularity baseline's lists: the k most popular items each user has not seen, (U, k) dense ids
    (``seen`` (U, n_items+1) rows of the evaluated users; ties broken towards the smaller id; 0 pads when a user
    has seen all but fewer than k items).

    No per-user ranking: with the seen items' popularity ranks sorted per user, s_0 < s_1 < ..., and t_i = s_i - i
    (unseen items ranked before s_i), the j-th unseen item has rank j + #{i : t_i <= j}; one searchsorted for all users.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    n = len(pop) - 1
    order = np.lexsort((np.arange(1, n + 1), -pop[1:])) + 1  # items by popularity desc, id asc
    kk = min(k, n)
    if seen is None:
        return order[None, :kk].astype(np.int64)
    s = sp.csr_array(seen)
    s.sum_duplicates()
    n_users = s.shape[0]
    rank = np.empty(n + 1, np.int64)
    rank[order] = np.arange(n)
    rows = np.repeat(np.arange(n_users), np.diff(s.indptr))
    cols = s.indices.astype(np.int64)
    keep = cols > 0
    rows, seen_rank = rows[keep], rank[cols[keep]]
    srt = np.lexsort((seen_rank, rows))
    rows, seen_rank = rows[srt], seen_rank[srt]
    starts = np.searchsorted(rows, np.arange(n_users))
    t = seen_rank - (np.arange(len(rows)) - starts[rows])
    big = n + kk + 1
    keys = rows * big + t
    j = np.arange(kk)
    query = np.arange(n_users)[:, None] * big + j[None, :]
    ans = j[None, :] + (np.searchsorted(keys, query.ravel(), side="right").reshape(n_users, kk) - starts[:, None])
    return np.where(ans < n, order[np.minimum(ans, n - 1)], 0).astype(np.int64)


def serendipity(hits: np.ndarray, top_items: np.ndarray, baseline_top: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Serendipity against a primitive (popularity) recommender (Murakami et al. 2008; Ge et al., RecSys 2010), per user:
    SER_u = |(L_u \\ PM_u) ∩ Rel_u| / |L_u|, where PM_u is the popularity baseline's list for u. ``baseline_top`` is
    (U, K') per user or (1, K') shared by all users (see :func:`popularity_top_k`)."""
    top = np.asarray(top_items, dtype=np.int64)
    base = np.asarray(baseline_top, dtype=np.int64)
    h = np.asarray(hits, bool)
    valid = _valid(top)
    n = valid.sum(axis=1)
    out = np.zeros(len(top))
    for s in range(0, len(top), chunk):
        t = top[s : s + chunk]
        b = base if len(base) == 1 else base[s : s + chunk]
        in_pm = (t[:, :, None] == b[:, None, :]).any(axis=2)
        out[s : s + len(t)] = (h[s : s + chunk] & ~in_pm & valid[s : s + chunk]).sum(axis=1)
    return np.divide(out, n, out=np.zeros(len(top)), where=n > 0)


# ---------------------------------------------------------------------------------------------- all at once
def beyond_accuracy(
    top_items: np.ndarray,
    users: np.ndarray,
    train: Interactions,
    targets: Interactions,
    k: int = 10,
    seen: Interactions | None = None,
    item_features: Any = None,
    head_share: float = 0.8,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every beyond-accuracy metric at cut-off ``k`` for one evaluation.

    ``top_items`` (U, >=k) and ``users`` (U,) come from :class:`~recforge.evaluate.evaluator.Report`; popularity and
    the head/tail split are computed on ``train``; ``targets`` is the evaluated part (test or valid); ``seen`` is what
    the evaluator masked (defaults to ``train``). ``item_features`` (n_items+1, F), when given, enables ILD.
    Returns (global metrics {name@k: value}, per-user metrics {name@k: (U,)}).
    """
    top = np.asarray(top_items, dtype=np.int64)
    if top.ndim != 2 or top.shape[1] < k:
        raise ConfigError(f"top_items must be (U, >= {k}), got shape {top.shape}")
    top = top[:, :k]
    users = np.asarray(users, dtype=np.int64)
    n_items = train.n_items
    pop = item_popularity(train)
    head = head_items(pop, head_share)
    seen_rows = (seen if seen is not None else train).to_csr(binary=True)[users]
    target_rows = targets.to_csr(binary=True)[users]
    target_new = target_rows - target_rows.multiply(seen_rows)  # targets the user had not seen (could be hit)
    target_new.eliminate_zeros()
    hits = hits_from_targets(np.arange(len(users)), top, target_new)
    n_train_users = int((train.user_counts() > 0).sum())
    per_user = {
        f"epc@{k}": epc(top, pop, n_train_users, hits),
        f"efd@{k}": efd(top, pop, hits),
        f"arp@{k}": arp(top, pop),
        f"aplt@{k}": aplt(top, head),
        f"aclt@{k}": aclt(top, head),
        f"serendipity@{k}": serendipity(hits, top, popularity_top_k(pop, seen_rows, k)),
    }
    if item_features is not None:
        per_user[f"ild@{k}"] = intra_list_diversity(top, item_features)
    glob = {
        f"catalog_coverage@{k}": catalog_coverage(top, n_items),
        f"user_coverage@{k}": user_coverage(top, len(users)),
        f"gini@{k}": gini(top, n_items),
        f"entropy@{k}": entropy(top, n_items),
        f"pop_reo@{k}": pop_reo(hits, top, head, target_new),
        f"pop_rsp@{k}": pop_rsp(top, head, seen_rows),
    }
    return glob, per_user
