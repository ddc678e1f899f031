"""RandomRecommender: a seeded random ranking, the floor every model must beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import Recommender


@dataclass(frozen=True)
class RandomConfig:
    """seed: the same seed gives the same ranking for a user, whatever the batch it is scored in."""

    seed: int = 0
    #: hyper-parameter search space (see recforge.experiments.tune): nothing to search
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, in place on a uint32 array (a fast, well-mixed integer hash)."""
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


class RandomRecommender(Recommender):
    """Scores are a hash of (seed, user, item) mapped to [0, 1): random-looking, yet reproducible per user."""

    name = "random"
    config_class = RandomConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        """Nothing to learn."""

    def _score(self, users: np.ndarray) -> torch.Tensor:
        """(U,) dense user ids -> (U, n_items+1) uniform scores in [0, 1)."""
        n_cols = self.n_items + 1
        with np.errstate(over="ignore"):  # uint32 arithmetic wraps on purpose
            seed = _fmix32(np.array([self.config.seed * 0x9E3779B9 + 0x7F4A7C15], dtype=np.uint64).astype(np.uint32))
            row = _fmix32((users.astype(np.uint32) * np.uint32(0x27D4EB2F)) ^ seed)
            h = np.arange(n_cols, dtype=np.uint32)[None, :] + row[:, None] * np.uint32(n_cols)
            _fmix32(h)
            h ^= row[:, None]  # two rounds: items of one user stay decorrelated even when user * n_cols wraps
            _fmix32(h)
        h >>= np.uint32(8)  # top 24 bits fit a float32 mantissa exactly
        return torch.from_numpy(h.astype(np.float32)).mul_(1.0 / (1 << 24))

    def _state(self) -> dict[str, torch.Tensor]:
        return {}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Nothing learned: the config's seed is the whole state."""
