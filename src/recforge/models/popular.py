"""MostPopular: every user gets the items with the most training interactions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.models.base import HistoryScoring


@dataclass(frozen=True)
class PopularConfig:
    """MostPopular has nothing to tune."""

    #: hyper-parameter search space (see recforge.experiments.tune): nothing to search
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {}


class MostPopular(HistoryScoring):
    """Scores every item by its training interaction count (the same list for every user, whatever the history)."""

    name = "popular"
    config_class = PopularConfig

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.counts_ = torch.from_numpy(train.item_counts().astype(np.float32))

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return self.counts_.expand(len(users), -1).clone()

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        return self.counts_.expand(len(offsets) - 1, -1).clone()

    def _state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts_}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.counts_ = state["counts"]
