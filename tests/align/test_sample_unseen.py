"""The public negative sampler: k distinct unseen items per row, uniform or by popularity, rows that cannot be filled
flagged."""

from __future__ import annotations

import numpy as np

from recforge.data.preferences import sample_unseen


def test_sample_unseen_draws_distinct_unseen_items() -> None:
    n_items, n1 = 20, 21
    users = np.array([1, 1, 2, 3, 3])
    seen_pairs = [(1, i) for i in range(1, 11)] + [(2, i) for i in range(1, 18)] + [(3, 5)]
    seen = np.unique([u * n1 + i for u, i in seen_pairs])
    out, ok = sample_unseen(users, 3, seen, n_items, rng=np.random.default_rng(4))
    assert ok.tolist() == [True, True, True, True, True]
    for u, row in zip(users, out):
        assert len(set(row.tolist())) == 3
        assert not any((u, int(i)) in seen_pairs for i in row)
    # user 2 has exactly 3 unseen items (18, 19, 20): drawn exactly
    assert sorted(out[2].tolist()) == [18, 19, 20]
    short, ok = sample_unseen(np.array([2]), 4, seen, n_items)
    assert not ok[0] and (short[0] == 0).all()


def test_sample_unseen_follows_counts() -> None:
    counts = np.zeros(11)
    counts[[3, 7]] = [1.0, 9.0]  # only items 3 and 7 can be drawn, 7 nine times as often
    out, ok = sample_unseen(np.ones(4000, np.int64), 1, np.array([], np.int64), 10, counts,
                            np.random.default_rng(0))
    assert ok.all() and set(np.unique(out).tolist()) == {3, 7}
    assert abs((out == 7).mean() - 0.9) < 0.02
