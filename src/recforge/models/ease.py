"""EASE (Steck, WWW 2019): a closed-form linear item-item autoencoder.

B = argmin ||X - X B||^2 + lambda ||B||^2 s.t. diag(B) = 0, solved by P = (X^T X + lambda I)^-1,
B_ij = -P_ij / P_jj (i != j). score(u) = x_u B. Needs a dense n_items x n_items matrix (n_items^2 x 4 bytes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models._sparse import sparse_dense_rows
from recforge.models.base import Recommender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EASEConfig:
    """Embarrassingly Shallow Autoencoder."""

    l2: float = 500.0  #: lambda, the L2 penalty on B; larger for bigger/denser data (tune on validation)
    binary: bool = True  #: use 1 per (user, item) pair; False uses summed interaction values

    def __post_init__(self) -> None:
        if not self.l2 > 0:
            raise ConfigError(f"l2 must be > 0, got {self.l2}")


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


class EASE(Recommender):
    """EASE; scores any history (new users and anonymous sessions need no refit)."""

    name = "ease"
    config_class = EASEConfig
    supports_histories = True

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        x = train.to_csr(binary=self.config.binary)[:, 1:]  # drop the padding column
        b = ease_weights(torch.from_numpy((x.T @ x).astype(np.float64).toarray()), self.config.l2)
        # Pad row/column 0 so that dense item ids index B directly.
        self.b_ = torch.nn.functional.pad(b, (1, 0, 1, 0))
        log.info("ease: %d items, lambda=%g", self.n_items, self.config.l2)

    def _score(self, users: np.ndarray) -> torch.Tensor:
        """(U,) dense user ids -> (U, n_items+1)."""
        return sparse_dense_rows(self.seen_[users], self.b_)

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        """Jagged histories (items (N,), offsets (B+1,)) -> (B, n_items+1)."""
        return sparse_dense_rows(self.histories_to_csr(items, offsets), self.b_)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"b": self.b_}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.b_ = state["b"]
