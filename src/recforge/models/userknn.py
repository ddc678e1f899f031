"""UserKNN: user-user cosine similarity with shrinkage; a user's scores sum the histories of her top-k neighbours.

score(u, j) = sum over the k users v most similar to u (v != u) of sim(u, v) * x_vj,
sim(u, v) = x_u . x_v / (|x_u| |x_v| + shrink). Neighbours are found per scoring batch (memory ~ batch x n_users).
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
from recforge.models.base import Recommender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserKNNConfig:
    """User-based nearest neighbours."""

    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {"k": ("logint", 10, 1000), "shrink": ("float", 0.0, 200.0)}

    k: int = 50  #: neighbours per user
    shrink: float = 10.0  #: added to the cosine denominator; damps similarities built on few shared items
    binary: bool = True  #: use 1 per (user, item) pair; False sums the interaction values

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if self.shrink < 0:
            raise ConfigError(f"shrink must be >= 0, got {self.shrink}")


class UserKNN(Recommender):
    """User-based kNN. Only training users can be scored (a new user would need her own neighbour search)."""

    name = "userknn"
    config_class = UserKNNConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.x_ = sp.csr_array(train.to_csr(binary=self.config.binary), dtype=np.float32)
        self._prepare()
        log.info("userknn: %d users x %d items, k=%d", self.n_users, self.n_items, self.config.k)

    def _prepare(self) -> None:
        """Derived views: the transposed matrix for similarity products and user norms."""
        self.xt_ = self.x_.T.tocsr()
        self.norms_ = torch.from_numpy(np.sqrt(np.asarray(self.x_.multiply(self.x_).sum(axis=1)).ravel()))

    def _score(self, users: np.ndarray) -> torch.Tensor:
        """(U,) dense user ids -> (U, n_items+1)."""
        co = torch.from_numpy((self.x_[users] @ self.xt_).toarray())  # (U, n_users+1) shared-item weights
        denom = self.norms_[users][:, None] * self.norms_[None, :] + self.config.shrink
        sim = torch.where(denom > 0, co / denom.clamp_min(1e-12), torch.zeros(()))
        sim[torch.arange(len(users)), torch.from_numpy(users)] = 0.0  # a user is not her own neighbour
        r, c, v = topk_rows(sim, self.config.k)
        s = sp.csr_array((v, (r, c)), shape=(len(users), self.x_.shape[0]), dtype=np.float32)
        return torch.from_numpy((s @ self.x_).toarray())

    def _state(self) -> dict[str, torch.Tensor]:
        return csr_to_state("x", self.x_)

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.x_ = csr_from_state("x", state)
        self._prepare()
