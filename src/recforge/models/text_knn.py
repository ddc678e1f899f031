"""TextKNN: zero-shot text recommender. A history's query is the mean text vector of its last ``n_last`` items; every
item is scored by cosine similarity to it, so items nobody has interacted with (cold items) are scored like the rest.

The item vectors come from outside (``recforge.text.embed_items`` renders and embeds the catalogue; a model never
imports the text package): pass them as ``item_vectors`` (n_items+1, d), aligned to the training log's item vocabulary.
Items without text have zero vectors and score 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import HistoryScoring


@dataclass(frozen=True)
class TextKNNConfig:
    n_last: int = 5
    """How many of the most recent history items form the query."""

    def __post_init__(self) -> None:
        if self.n_last < 1:
            raise ConfigError(f"n_last must be >= 1, got {self.n_last}")


class TextKNN(HistoryScoring):
    """Cosine between the mean vector of the last ``n_last`` history items and every item's text vector."""

    name = "text_knn"
    config_class = TextKNNConfig

    def __init__(self, config: TextKNNConfig | None = None, item_vectors: np.ndarray | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.vectors_: torch.Tensor | None = None
        if item_vectors is not None:
            v = torch.as_tensor(np.asarray(item_vectors, dtype=np.float32))
            self.vectors_ = torch.nn.functional.normalize(v, dim=1)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if self.vectors_ is None:
            raise ConfigError("text_knn needs item_vectors (n_items+1, d): see recforge.text.embed_items")
        if self.vectors_.shape[0] != train.n_items + 1:
            raise ConfigError(f"item_vectors has {self.vectors_.shape[0]} rows, the log has n_items+1="
                              f"{train.n_items + 1}")
        items, offsets = train.sequences()
        self.train_items_, self.train_offsets_ = items, offsets

    def _query(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        """(B, d): mean of the last n_last items' vectors per history (zeros for an empty history)."""
        lengths = np.diff(offsets)
        take = np.minimum(lengths, self.config.n_last)
        rows = np.repeat(np.arange(len(lengths)), take)
        pos = np.concatenate([np.arange(e - t, e) for e, t in zip(offsets[1:], take)]) if take.sum() else \
            np.zeros(0, np.int64)
        q = torch.zeros(len(lengths), self.vectors_.shape[1])
        q.index_add_(0, torch.from_numpy(rows), self.vectors_[torch.from_numpy(items[pos].astype(np.int64))])
        return torch.nn.functional.normalize(q, dim=1)

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        return self._query(items, offsets) @ self.vectors_.T

    def _score(self, users: np.ndarray) -> torch.Tensor:
        starts, ends = self.train_offsets_[users], self.train_offsets_[users + 1]
        lengths = ends - starts
        idx = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if lengths.sum() else \
            np.zeros(0, np.int64)
        return self._score_histories(self.train_items_[idx], np.concatenate([[0], np.cumsum(lengths)]))

    def _state(self) -> dict[str, torch.Tensor]:
        return {"vectors": self.vectors_, "train_items": torch.tensor(self.train_items_),
                "train_offsets": torch.tensor(self.train_offsets_)}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.vectors_ = state["vectors"]
        self.train_items_, self.train_offsets_ = state["train_items"].numpy(), state["train_offsets"].numpy()
