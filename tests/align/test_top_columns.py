"""The alignment top-k (model-hard negatives, IPA generation and lists) equals a stable sort of the negated scores:
best first, ties to the lower column, rows with few finite scores and NaN included."""

from __future__ import annotations

import numpy as np
import torch

from recforge.align.pairs import top_columns


def _reference(scores: torch.Tensor, k: int) -> np.ndarray:
    return torch.sort(-scores, dim=1, stable=True).indices[:, :k].numpy()


def test_top_columns_matches_the_stable_sort_with_ties_and_masks() -> None:
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.integers(0, 6, size=(300, 40)).astype(np.float32))  # heavy ties everywhere
    scores[rng.random(scores.shape) < 0.3] = -torch.inf
    scores[5, 3:] = -torch.inf  # fewer finite scores than k: falls back to the full sort
    scores[7, 11] = torch.nan
    scores[:, 0] = -torch.inf
    for k in (1, 3, 10, 40):
        got = top_columns(scores, k)
        assert got.shape == (300, k)
        np.testing.assert_array_equal(got, _reference(scores, k))


def test_top_columns_continuous_scores() -> None:
    scores = torch.randn(64, 1000, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(top_columns(scores, 10), _reference(scores, 10))
    assert top_columns(scores, 10)[0, 0] == int(scores[0].argmax())
