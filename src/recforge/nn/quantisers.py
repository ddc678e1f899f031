"""Vector quantisers that turn item vectors into short code sequences (semantic IDs).

Residual k-means (``rkmeans``): level 1 clusters the vectors into K centroids, level l clusters what the earlier
levels left unexplained (the residual), so an item's code ``(c_1, ..., c_L)`` names a coarse-to-fine path.
``balanced-rkmeans`` assigns under a capacity of ceil(N / K) items per centroid, so clusters have equal sizes
(fewer items share a prefix, so fewer collisions). Both are registered in the ``tokenizer`` table and fit with
a seeded torch generator (the same input and seed give the same codes).

Shapes: ``x`` float32 (N, d) -> ``codes`` int64 (N, L); ``codebooks`` float32 (L, K, d).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from recforge.config import from_dict
from recforge.errors import ConfigError, DataError


@dataclass(frozen=True)
class RKMeansConfig:
    """Residual k-means settings."""

    levels: int = 3  # L: code length (number of residual levels)
    codebook_size: int = 256  # K: centroids per level
    iters: int = 20  # Lloyd iterations per level
    seed: int = 0  # seeds the k-means++ initialisation

    def __post_init__(self) -> None:
        if self.levels < 1 or self.codebook_size < 1:
            raise ConfigError(f"levels (L) and codebook_size (K) must be >= 1, got L={self.levels}, "
                              f"K={self.codebook_size}")
        if self.iters < 1:
            raise ConfigError(f"iters must be >= 1, got {self.iters}")


def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (N, d) x (K, d) -> (N, K), clamped at 0."""
    return ((x * x).sum(1, keepdim=True) - 2 * x @ c.T + (c * c).sum(1)[None, :]).clamp_min_(0)


def _kmeanspp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: (N, d) -> (k, d) (k <= N)."""
    n = len(x)
    centres = [x[int(torch.randint(n, (1,), generator=gen))]]
    d2 = _sq_dist(x, centres[0][None]).squeeze(1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # every point already sits on a centre: duplicates fill the rest
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial(d2 / total, 1, generator=gen))
        centres.append(x[idx])
        d2 = torch.minimum(d2, _sq_dist(x, x[idx][None]).squeeze(1))
    return torch.stack(centres)


def capacity_assign(dist: torch.Tensor, cap: int) -> torch.Tensor:
    """Nearest-centroid assignment with at most ``cap`` points per centroid: dist (N, K) -> int64 (N,).

    Rounds of proposals: every pending point proposes to its nearest centroid that still has room, and each centroid
    keeps its closest proposers up to its remaining room; at least one centroid fills (or every point is placed) per
    round, so there are at most K rounds, each vectorised. Needs ``cap * K >= N``."""
    n, k = dist.shape
    assign = torch.full((n,), -1, dtype=torch.int64)
    load = torch.zeros(k, dtype=torch.int64)
    pending = torch.arange(n)
    while len(pending):
        d = dist[pending].masked_fill((load >= cap)[None, :], torch.inf)
        best, choice = d.min(1)
        order = torch.argsort(best, stable=True)
        order = order[torch.argsort(choice[order], stable=True)]  # grouped by centroid, closest first
        c_sorted = choice[order]
        first = torch.searchsorted(c_sorted, c_sorted, right=False)
        rank = torch.arange(len(order)) - first
        ok = rank < (cap - load)[c_sorted]
        taken = pending[order[ok]]
        assign[taken] = c_sorted[ok]
        load += torch.bincount(c_sorted[ok], minlength=k)
        keep = torch.ones(len(pending), dtype=torch.bool)
        keep[order[ok]] = False
        pending = pending[keep]
    return assign


def kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator, balanced: bool = False
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from k-means++ seeds: x (N, d) -> (centroids (k, d), assignment int64 (N,)).

    ``balanced`` assigns under a capacity of ceil(N / k) points per centroid (:func:`capacity_assign`), so clusters
    have equal sizes up to one point. An emptied cluster is re-seeded at the worst-served point."""
    k = min(k, len(x))
    cent = _kmeanspp(x, k, gen)
    cap = -(-len(x) // k)

    def assign_to(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = _sq_dist(x, c)
        return dist, capacity_assign(dist, cap) if balanced else dist.argmin(1)

    for _ in range(iters):
        dist, assign = assign_to(cent)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        empty = counts == 0
        cent = torch.where(empty[:, None], cent, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            worst = dist.gather(1, assign[:, None]).squeeze(1).argsort(descending=True)[: int(empty.sum())]
            cent[empty] = x[worst]
    return cent, assign_to(cent)[1]


def residual_kmeans(x: torch.Tensor, levels: int, k: int, iters: int, gen: torch.Generator, balanced: bool = False
                    ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """k-means on x (N, d), then on what each level's centroids leave over, ``levels`` times -> (each level's
    centroids, (<= k, d) each; codes int64 (N, levels))."""
    resid = x.clone()
    centres: list[torch.Tensor] = []
    codes = torch.zeros((len(x), levels), dtype=torch.int64)
    for level in range(levels):
        cent, assign = kmeans(resid, k, iters, gen, balanced)
        centres.append(cent)
        codes[:, level] = assign
        resid -= cent[assign]
    return centres, codes


class ResidualKMeans:
    """Residual k-means tokenizer (registered as ``rkmeans``)."""

    name: ClassVar[str] = "rkmeans"
    config_class: ClassVar[type] = RKMeansConfig
    balanced: ClassVar[bool] = False

    def __init__(self, config: RKMeansConfig | None = None, **overrides: Any):
        if config is None:
            config = from_dict(self.config_class, overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.codebooks_: torch.Tensor | None = None

    def fit(self, x: np.ndarray) -> np.ndarray:
        """Fit the L codebooks on ``x`` float (N, d) and return its codes int64 (N, L)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise DataError(f"quantiser input must be a non-empty (N, d) matrix, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise DataError("quantiser input holds NaN or infinite values")
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed)
        centres, codes = residual_kmeans(torch.from_numpy(x), cfg.levels, cfg.codebook_size, cfg.iters, gen,
                                         self.balanced)
        books = torch.zeros((cfg.levels, cfg.codebook_size, x.shape[1]))
        for level, cent in enumerate(centres):
            books[level, : len(cent)] = cent
        self.codebooks_ = books
        return codes.numpy()

    def residual(self, x: np.ndarray, codes: np.ndarray, level: int) -> np.ndarray:
        """What levels ``0..level-1`` of ``codes`` leave of ``x``: (N, d) float32."""
        resid = torch.from_numpy(np.asarray(x, dtype=np.float32)).clone()
        for lv in range(level):
            resid -= self.codebooks_[lv][torch.from_numpy(codes[:, lv])]
        return resid.numpy()

    def distances(self, x: np.ndarray, codes: np.ndarray, level: int) -> np.ndarray:
        """Squared distance of each row's residual before ``level`` to every centroid of that level: (N, K)."""
        resid = torch.from_numpy(self.residual(x, codes, level))
        return _sq_dist(resid, self.codebooks_[level]).numpy()


class BalancedResidualKMeans(ResidualKMeans):
    """Residual k-means with size-balanced clusters at every level (registered as ``balanced-rkmeans``)."""

    name: ClassVar[str] = "balanced-rkmeans"
    balanced: ClassVar[bool] = True
