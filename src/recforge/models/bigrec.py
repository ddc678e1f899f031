"""BIGRec-style generate-then-ground (Bao et al., 2023): a language model names the next items by title, the titles are
grounded to the catalogue, and the grounded items are re-weighted by a collaborative model.

For each history the LLM (an :class:`~recforge.protocols.LLMToolkit` over the configured backend, handed over by the
run path or :meth:`BIGRec.use_llm`) is asked for ``n_titles`` titles; each is grounded (exact, then fuzzy match;
an invented title grounds to nothing and is counted). Item scores, with ``b(i)`` the base model's score of item i
turned into a rank-based value in [0, 1] (1 = its best item)::

    generated item i (first named at position j, 0-based):   2 + 1 / (j + 1) + gamma * b(i)
    any other item:                                          b(i)

so generated items come first, ordered by the LLM's order blended with the base model's opinion (``gamma`` = 0: the
LLM's order; large ``gamma``: the base model's order among them; the paper re-weights by popularity, the default
base), and the base model ranks everything below them. Items already in the history are never boosted. Without a
language model the model ranks exactly as its base.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.data.jagged import jagged_rows
from recforge.errors import ConfigError
from recforge.models.base import HistoryScoring, KeepsTrainSequences, history_scores
from recforge.protocols import LLMToolkit
from recforge.registry import configured


@dataclass(frozen=True)
class BIGRecConfig:
    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {"gamma": ("float", 0.0, 2.0), "n_titles": ("int", 5, 20)}

    base: dict[str, Any] = field(default_factory=lambda: {"name": "popular"})
    """The re-weighting model: {"name": <model key>, **its config} (popularity, as in the paper, or a CF model)."""
    llm: dict[str, Any] = field(default_factory=dict)
    """The language model: {"name": <llm backend key>, **its config}; {} = none (the base model's ranking)."""
    n_titles: int = 10
    """Titles asked for per history."""
    gamma: float = 0.5
    """Weight of the base model among the generated items (0 = the LLM's order)."""

    def __post_init__(self) -> None:
        if self.n_titles < 1:
            raise ConfigError(f"n_titles must be >= 1, got {self.n_titles}")
        if self.gamma < 0:
            raise ConfigError(f"gamma must be >= 0, got {self.gamma}")
        if self.base.get("name") == "bigrec":
            raise ConfigError("base: bigrec cannot re-weight itself")
        if self.llm and "name" not in self.llm:
            raise ConfigError("llm.name is required (a registered backend: mock, openai_compat, hf_local)")


def rank_values(scores: torch.Tensor) -> torch.Tensor:
    """Scores (B, n+1) -> rank-based values in [0, 1] (1 = the row's best item; ties by the lower id, the ranking
    rule), -inf columns -> 0."""
    finite = torch.isfinite(scores)
    safe = torch.where(finite, scores, torch.full_like(scores, -1e30))
    order = torch.argsort(torch.argsort(-safe, dim=1, stable=True), dim=1, stable=True)  # rank 0 = best
    n = max(scores.shape[1] - 1, 1)
    return torch.where(finite, 1.0 - order.float() / n, torch.zeros_like(scores))


class BIGRec(KeepsTrainSequences, HistoryScoring):
    """Generate titles, ground them, re-weight by a base model (see the module docstring)."""

    name = "bigrec"
    config_class = BIGRecConfig

    def __init__(self, config: BIGRecConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.toolkit: LLMToolkit | None = None
        cls, cfg = configured("model", self.config.base, prefix="base.")
        self.base_ = cls(cfg)

    def llm_spec(self) -> Mapping[str, Any] | None:
        return self.config.llm or None

    def use_llm(self, toolkit: LLMToolkit) -> None:
        self.toolkit = toolkit

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.base_.fit(train, valid)
        self._keep_sequences(train)

    def _combine(self, base: torch.Tensor, histories: list[np.ndarray]) -> torch.Tensor:
        scores = rank_values(base.float())
        if self.toolkit is None or self.toolkit.client is None:
            return scores
        named = self.toolkit.next_items(histories, self.config.n_titles)  # (B, n) dense ids, 0 = invented
        for b, row in enumerate(named):
            seen = set(np.asarray(histories[b]).tolist())
            boosted: set[int] = set()
            for j, item in enumerate(row.tolist()):
                if item and item not in seen and item not in boosted:
                    boosted.add(item)
                    scores[b, item] = 2.0 + 1.0 / (j + 1) + self.config.gamma * scores[b, item]
        return scores

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return self._combine(self.base_.score(users), self._train_histories(users))

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        hist = jagged_rows(items, offsets)
        return self._combine(history_scores(self.base_, (items, offsets)), hist)

    def _state(self) -> dict[str, torch.Tensor]:
        return {**{f"base.{k}": v for k, v in self.base_._state().items()}, **self._sequences_state()}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self._load_inner(self.base_, state, "base.")
        self._load_sequences(state)
