"""EASE (Steck, WWW 2019): a closed-form linear item-item autoencoder.

B = argmin ||X - X B||^2 + lambda ||B||^2 s.t. diag(B) = 0, solved by P = (X^T X + lambda I)^-1,
B_ij = -P_ij / P_jj (i != j). score(u) = x_u B. Needs a dense n_items x n_items matrix (n_items^2 x 4 bytes).

``recency < 1`` weights the user row x_u by position at scoring time: the k-th most recent history item counts
recency**k (the last one 1), as session-aware linear models do (SLIST, Choi et al., WWW 2021). On next-item data
such as Amazon reviews it helps a lot; ``recency = 1`` (the default) is the paper's EASE. B itself is unchanged.
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
from recforge.models._sparse import csr_from_state, csr_to_state, sparse_dense_rows
from recforge.models.base import HistoryScoring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EASEConfig:
    """Embarrassingly Shallow Autoencoder."""

    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {"l2": ("log", 10.0, 5000.0), "recency": ("float", 0.3, 1.0)}

    l2: float = 500.0  #: lambda, the L2 penalty on B; larger for bigger/denser data (tune on validation)
    binary: bool = True  #: use 1 per (user, item) pair; False uses summed interaction values
    recency: float = 1.0  #: weight decay per step back in the history at scoring time (1 = plain EASE)

    def __post_init__(self) -> None:
        if not self.l2 > 0:
            raise ConfigError(f"l2 must be > 0, got {self.l2}")
        if not 0.0 < self.recency <= 1.0:
            raise ConfigError(f"recency must be in (0, 1], got {self.recency}")


def recency_rows(items: np.ndarray, offsets: np.ndarray, decay: float, n_cols: int) -> sp.csr_array:
    """Time-ordered jagged histories (items (N,), offsets (B+1,)) -> csr (B, n_cols) where the k-th most recent
    item of a row weighs decay**k; a repeated item keeps its most recent (largest) weight."""
    lengths = np.diff(offsets)
    steps_back = np.repeat(offsets[1:], lengths) - 1 - np.arange(len(items))
    rows = np.repeat(np.arange(len(lengths)), lengths)
    m = sp.coo_array((decay ** steps_back.astype(np.float64), (rows, items)), shape=(len(lengths), n_cols))
    # duplicates: max, not sum, so that a repeated item is not counted above 1
    order = np.lexsort((-m.data, m.col, m.row))
    r, c, v = m.row[order], m.col[order], m.data[order]
    first = np.ones(len(r), bool)
    first[1:] = (r[1:] != r[:-1]) | (c[1:] != c[:-1])
    return sp.csr_array((v[first].astype(np.float32), (r[first], c[first])), shape=(len(lengths), n_cols))


def ease_weights(gram: torch.Tensor, l2: float) -> torch.Tensor:
    """Closed-form EASE weights from the item Gram matrix G = X^T X (N, N) float64 -> B (N, N) float32.

    ``gram`` is consumed (modified in place) so that at most two N x N float64 matrices are alive at once.
    """
    gram.diagonal().add_(l2)
    # G + lambda I is symmetric positive definite: Cholesky is the fastest stable inverse.
    chol = torch.linalg.cholesky(gram)
    del gram
    p = torch.cholesky_inverse(chol)
    del chol
    p.div_(-p.diagonal().clone()[None, :])
    p.diagonal().zero_()
    return p.float()


class EASE(HistoryScoring):
    """EASE; scores any history (new users and anonymous sessions need no refit)."""

    name = "ease"
    config_class = EASEConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        x = train.to_csr(binary=self.config.binary)[:, 1:]  # drop the padding column
        b = ease_weights(torch.from_numpy((x.T @ x).astype(np.float64).toarray()), self.config.l2)
        # Pad row/column 0 so that dense item ids index B directly.
        self.b_ = torch.nn.functional.pad(b, (1, 0, 1, 0))
        # the training users' rows as scored (recency-weighted when asked; otherwise the binary seen matrix)
        self.rows_ = self._rows(*train.sequences()) if self.config.recency < 1 else None
        log.info("ease: %d items, lambda=%g, recency=%g", self.n_items, self.config.l2, self.config.recency)

    def _rows(self, items: np.ndarray, offsets: np.ndarray) -> sp.csr_array:
        if self.config.recency < 1:
            return recency_rows(np.asarray(items), np.asarray(offsets), self.config.recency, self.n_items + 1)
        return self.histories_to_csr(items, offsets)

    def _score(self, users: np.ndarray) -> torch.Tensor:
        """(U,) dense user ids -> (U, n_items+1)."""
        return sparse_dense_rows((self.rows_ if self.rows_ is not None else self.seen_)[users], self.b_)

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        """Jagged time-ordered histories (items (N,), offsets (B+1,)) -> (B, n_items+1)."""
        return sparse_dense_rows(self._rows(items, offsets), self.b_)

    def _state(self) -> dict[str, torch.Tensor]:
        state = {"b": self.b_}
        if self.rows_ is not None:
            state.update(csr_to_state("rows", self.rows_))
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.b_ = state["b"]
        self.rows_ = csr_from_state("rows", state) if "rows.shape" in state else None
