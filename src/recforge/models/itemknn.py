"""ItemKNN: item-item cosine similarity with shrinkage, pruned to the top-k neighbours of every item (sparse).

score(u, j) = sum over items i in u's history of W[i, j], where W[i, j] = x_i . x_j / (|x_i| |x_j| + shrink) for
the ``k`` items i most similar to j (x_i is item i's column of the user x item matrix), and 0 otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models._sparse import csr_from_state, csr_to_state, topk_rows
from recforge.models.base import HistoryScoring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemKNNConfig:
    """Item-based nearest neighbours."""

    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {"k": ("logint", 10, 1000), "shrink": ("float", 0.0, 200.0)}

    k: int = 100  #: neighbours kept per item
    shrink: float = 10.0  #: added to the cosine denominator; damps similarities built on few co-occurrences
    binary: bool = True  #: use 1 per (user, item) pair; False sums the interaction values (e.g. ratings, counts)
    block_size: int = 2048  #: items per similarity block; peak memory ~ block_size x n_items floats

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if self.shrink < 0:
            raise ConfigError(f"shrink must be >= 0, got {self.shrink}")
        if self.block_size < 1:
            raise ConfigError(f"block_size must be >= 1, got {self.block_size}")


def cosine_topk(x: sp.csr_array, k: int, shrink: float, block_size: int) -> sp.csr_array:
    """Column-cosine similarity of ``x`` (rows x N) with shrinkage, top-k per target column, diagonal excluded.

    Returns W (N, N) csr where column j holds the <= k largest positive similarities of column j to other columns.
    """
    x = sp.csr_array(x, dtype=np.float32)
    xt = x.T.tocsr()  # (N, rows): one row per item
    n = x.shape[1]
    norms = np.sqrt(np.asarray(xt.multiply(xt).sum(axis=1)).ravel()).astype(np.float32)
    norms_t = torch.from_numpy(norms)
    rows, cols, vals = [], [], []
    for start in range(0, n, block_size):  # blocks of target items: memory bounded by block_size x N
        stop = min(start + block_size, n)
        co = torch.from_numpy((xt[start:stop] @ x).toarray())  # (b, N) co-occurrence counts
        denom = norms_t[start:stop, None] * norms_t[None, :] + shrink
        sim = torch.where(denom > 0, co / denom.clamp_min(1e-12), torch.zeros(()))
        idx = torch.arange(stop - start)
        sim[idx, idx + start] = 0.0  # an item is not its own neighbour
        r, c, v = topk_rows(sim, k, row_offset=start)
        rows.append(r)
        cols.append(c)
        vals.append(v)
    # (r = target, c = source): transpose so that W[source, target] and scoring is history @ W.
    w = sp.csr_array(
        (np.concatenate(vals), (np.concatenate(cols), np.concatenate(rows))), shape=(n, n), dtype=np.float32
    )
    w.sort_indices()
    return w


class ItemKNN(HistoryScoring):
    """Item-based kNN with cosine similarity and shrinkage; scores any history, so new users need no refit."""

    name = "itemknn"
    config_class = ItemKNNConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        x = train.to_csr(binary=cfg.binary)
        self.w_ = cosine_topk(x, cfg.k, cfg.shrink, cfg.block_size)
        log.info("itemknn: %d items, %d neighbour links (k=%d, shrink=%g)", self.n_items, self.w_.nnz, cfg.k, cfg.shrink)

    def _score_matrix(self, h: sp.csr_array) -> torch.Tensor:
        """(B, n_items+1) history matrix -> (B, n_items+1) scores."""
        return torch.from_numpy((h @ self.w_).toarray())

    def _score(self, users: np.ndarray) -> torch.Tensor:
        """(U,) dense user ids -> (U, n_items+1), from the training histories."""
        return self._score_matrix(self.seen_[users])

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        """Jagged histories (items (N,), offsets (B+1,)) -> (B, n_items+1)."""
        return self._score_matrix(self.histories_to_csr(items, offsets))

    def _state(self) -> dict[str, torch.Tensor]:
        return csr_to_state("w", self.w_)

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.w_ = csr_from_state("w", state)
