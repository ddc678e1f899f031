"""TextKNN: zero-shot text recommender. A history's query is the mean text vector of its last ``n_last`` items; every
item is scored by cosine similarity to it, so items nobody has interacted with (cold items) are scored like the rest.

The model reads item text vectors (an ``ItemSideConsumer``): ``embedder`` names a registered text embedder and
``template`` the item sentence; whoever holds the catalogue (the run path, ``recforge.text.bind_items``) embeds it and
binds the vectors before ``fit``. Items without text have zero vectors and score 0. ``add_items`` scores new items
from their text (an ``ItemAdder``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import HistoryScoring, KeepsTrainSequences, check_bound_side, extend_items
from recforge.protocols import ItemSide, ItemSideSpec


@dataclass(frozen=True)
class TextKNNConfig:
    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {"n_last": ("int", 1, 20)}

    n_last: int = 5
    """How many of the most recent history items form the query."""
    embedder: dict[str, Any] = field(default_factory=lambda: {"name": "minilm"})
    """The text embedder: {"name": <embedder key>, **its config} ("minilm" needs the [text] extra; "hashing" none)."""
    template: str = "kv"
    """Item sentence template (see recforge.text.TEMPLATES)."""

    def __post_init__(self) -> None:
        if self.n_last < 1:
            raise ConfigError(f"n_last must be >= 1, got {self.n_last}")
        if not isinstance(self.embedder, dict) or not self.embedder.get("name"):
            raise ConfigError(f"embedder must be a table with a name, e.g. {{name = 'hashing'}}, got {self.embedder!r}")


class TextKNN(KeepsTrainSequences, HistoryScoring):
    """Cosine between the mean vector of the last ``n_last`` history items and every item's text vector."""

    name = "text_knn"
    config_class = TextKNNConfig
    #: the contract suite runs without the optional MiniLM weights
    test_config = {"embedder": {"name": "hashing", "dim": 64}}

    def __init__(self, config: TextKNNConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.side_: ItemSide | None = None
        self.vectors_: torch.Tensor | None = None

    def item_side_spec(self) -> ItemSideSpec:
        return ItemSideSpec(embedder=dict(self.config.embedder), template=self.config.template)

    def bind_items(self, side: ItemSide) -> None:
        if side.vectors is None:
            raise ConfigError("text_knn needs item text vectors")
        self.side_ = side

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        check_bound_side(self.side_, train, "text_knn", "the item text vectors", "item vectors describe")
        self.vectors_ = torch.nn.functional.normalize(torch.as_tensor(self.side_.vectors, dtype=torch.float32), dim=1)
        self._keep_sequences(train)

    def add_items(self, side: ItemSide) -> None:
        """Append new items (``side.vectors``: (n_new+1, d), row 0 padding), scored from their text."""
        self._check_fitted()
        if side.vectors is None or side.vectors.shape[1] != self.vectors_.shape[1]:
            raise ConfigError(f"new items need text vectors of width {self.vectors_.shape[1]}")
        extend_items(self, side.item_ids)
        new = torch.nn.functional.normalize(torch.as_tensor(side.vectors[1:], dtype=torch.float32), dim=1)
        self.vectors_ = torch.cat([self.vectors_, new])

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
        return self._score_histories(*self._train_jagged(users))

    def _state(self) -> dict[str, torch.Tensor]:
        return {"vectors": self.vectors_, **self._sequences_state()}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.vectors_ = state["vectors"]
        self._load_sequences(state)
