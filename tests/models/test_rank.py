"""The one ranking path: tie rule (score desc, then lower item index), prefix property, masking, candidates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.errors import ConfigError
from recforge.models.rank import (
    mask_seen,
    repeated_items,
    seen_policy,
    top_k,
    top_k_candidates,
)


def reference(row: np.ndarray, k: int) -> list[int]:
    """The documented order, written the slow obvious way: finite-or-+inf scores, (-score, index) ascending."""
    order = sorted((i for i in range(1, len(row)) if not np.isnan(row[i]) and row[i] > -np.inf), key=lambda i: (-row[i], i))
    return order[:k]


score_rows = st.integers(1, 6).flatmap(lambda b: st.integers(2, 30).flatmap(lambda n: st.lists(
    st.lists(st.one_of(st.integers(-3, 3).map(float), st.just(-np.inf), st.just(np.nan)), min_size=n, max_size=n),
    min_size=b, max_size=b)))


@settings(max_examples=300, deadline=None)
@given(rows=score_rows, k1=st.integers(1, 35), k2=st.integers(1, 35))
def test_top_k_follows_the_tie_rule_and_is_prefix_closed(rows, k1, k2):
    scores = torch.tensor(rows, dtype=torch.float32)
    k1, k2 = min(k1, k2), max(k1, k2)
    a, b = top_k(scores, k1), top_k(scores, k2)
    np.testing.assert_array_equal(a.items.numpy(), b.items[:, :k1].numpy())  # prefix: independent of the cut-off
    for r, row in enumerate(np.array(rows)):
        want = reference(row, k2)
        got = b.items[r].numpy()
        assert got[: len(want)].tolist() == want
        assert (got[len(want):] == 0).all() and np.isneginf(b.scores[r, len(want):].numpy()).all()
        finite = sorted((v for v in row[1:] if v > -np.inf), reverse=True)  # NaN compares False: dropped
        tied = len(finite) > k1 and finite[k1 - 1] == finite[k1]
        assert bool(a.tied_at(k1)[r]) == tied


def test_top_k_large_rows_match_a_stable_sort():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 50, (64, 2001), generator=gen).float()
    scores[:, 0] = -torch.inf
    scores[torch.rand(64, 2001, generator=gen) < 0.3] = -torch.inf
    want = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :100]
    assert torch.equal(top_k(scores, 100).items, want)
    assert top_k(scores, 100).tied_at(10).all()  # 50 distinct values over ~1400 items: every boundary is tied


def test_top_k_does_not_modify_its_input_and_never_returns_column_zero():
    scores = torch.tensor([[9.0, 1.0, float("nan"), 1.0], [5.0, -torch.inf, -torch.inf, 2.0]])
    before = scores.clone()
    got = top_k(scores, 3)
    assert torch.equal(scores.isnan(), before.isnan()) and torch.equal(scores.nan_to_num(), before.nan_to_num())
    assert got.items.tolist() == [[1, 3, 0], [3, 0, 0]]
    assert [i.tolist() for i, _ in got.lists()] == [[1, 3], [3]]
    with pytest.raises(ConfigError, match="k must be"):
        top_k(scores, 0)


def test_candidates_follow_the_same_rule():
    items = torch.tensor([[5, 2, 7, 2, 0], [3, 4, 1, 9, 8]])
    scores = torch.tensor([[1.0, 1.0, 2.0, 3.0, 9.0], [0.5, 0.5, 0.5, -torch.inf, 0.1]])
    got = top_k_candidates(items, scores, 3, banned=[np.array([7]), np.array([], np.int64)])
    # row 0: item 2 keeps its best score (3.0), 7 is banned, 5 next; padding id 0 never ranked
    assert got.items.tolist() == [[2, 5, 0], [1, 3, 4]]
    assert got.tied_at(2).tolist() == [False, True]


def test_seen_policies():
    assert seen_policy(True) == "all-seen" and seen_policy(False) == "none"
    with pytest.raises(ConfigError, match="exclude_seen must be one of"):
        seen_policy("seen")
    seen = sp.csr_array(np.array([[0, 1, 1, 0], [0, 0, 1, 1]], np.float32))
    for policy, want in [("all-seen", [[3], [1]]), ("none", [[1, 2, 3], [1, 2, 3]]),
                         ("seen-except-repeatable", [[2, 3], [1, 2]])]:
        scores = torch.zeros(2, 4)
        mask_seen(scores, seen, policy, repeatable=np.array([2]))
        assert [i.tolist() for i, _ in top_k(scores, 4).lists()] == want
    with pytest.raises(ConfigError, match="repeatable"):
        mask_seen(torch.zeros(2, 4), seen, "seen-except-repeatable")


def test_repeated_items():
    user, item = np.array([1, 1, 1, 2, 2, 3]), np.array([4, 4, 5, 5, 6, 4])
    assert repeated_items(user, item, n_items=6).tolist() == [4]
