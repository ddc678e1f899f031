"""RandomRecommender: a seeded random ranking, the floor every model must beat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import Recommender

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class RandomConfig:
    """seed: the same seed gives the same ranking for a user, whatever the batch it is scored in."""

    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A fast, well-mixed integer hash (SplitMix64 finaliser), elementwise on uint64."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


class RandomRecommender(Recommender):
    """Scores are a hash of (seed, user, item) mapped to [0, 1): random-looking, yet reproducible per user."""

    name = "random"
    config_class = RandomConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        """Nothing to learn."""

    def _score(self, users: np.ndarray) -> torch.Tensor:
        """(U,) dense user ids -> (U, n_items+1) uniform scores in [0, 1)."""
        n_cols = self.n_items + 1
        with np.errstate(over="ignore"):
            key = (users.astype(np.uint64)[:, None] * np.uint64(n_cols) + np.arange(n_cols, dtype=np.uint64)[None, :])
            key = key + np.uint64(self.config.seed) * np.uint64(0xD1B54A32D192ED03)
        bits = _splitmix64(key) >> np.uint64(40)  # top 24 bits fit a float32 mantissa exactly
        return torch.from_numpy(bits.astype(np.float32) / np.float32(1 << 24))

    def _state(self) -> dict[str, torch.Tensor]:
        return {}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Nothing learned: the config's seed is the whole state."""
