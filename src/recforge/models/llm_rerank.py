"""LLMRerank: a base recommender's top-N candidates reordered by a reranker (an LLM through
:class:`recforge.protocols.CandidateReranker`, e.g. ``recforge.llm.ranker.LLMRanker``).

The base model is a registered model spelled ``{"name": key, **config}``; it is fitted on the same log. For each
user (or history) the base model's top ``n_candidates`` unseen items are handed to the reranker with the history;
the reranked candidates score above every other item (in the reranker's order), the other items keep the base
model's order below them. The reranker is an object built outside the model: pass one, or name a backend in the
config (``llm = {name = "openai_compat", base_url = ...}``) and the run path (``recforge train``/``evaluate``) builds
an :class:`~recforge.protocols.LLMToolkit` over it and the dataset's item texts (:meth:`LLMRerank.use_llm`). It is
not saved with the model. Without one, the candidates keep the base order, so the model ranks exactly as its base.
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
from recforge.models.rank import top_k
from recforge.protocols import CandidateReranker, LLMToolkit
from recforge.registry import configured


@dataclass(frozen=True)
class LLMRerankConfig:
    base: dict[str, Any] = field(default_factory=lambda: {"name": "popular"})
    """The base model: {"name": <model key>, **its config}."""
    n_candidates: int = 20
    """Candidates per user handed to the reranker."""
    llm: dict[str, Any] = field(default_factory=dict)
    """The language model: {"name": <llm backend key>, **its config}; {} = none (base order kept)."""
    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {"n_candidates": ("int", 10, 50)}

    def __post_init__(self) -> None:
        if self.n_candidates < 2:
            raise ConfigError(f"n_candidates must be >= 2, got {self.n_candidates}")
        if self.base.get("name") == "llm_rerank":
            raise ConfigError("base: llm_rerank cannot rerank itself")
        if self.llm and "name" not in self.llm:
            raise ConfigError("llm.name is required (a registered backend: mock, openai_compat, hf_local)")


class LLMRerank(KeepsTrainSequences, HistoryScoring):
    """Base model's top-``n_candidates`` reordered by ``reranker`` (see the module docstring)."""

    name = "llm_rerank"
    config_class = LLMRerankConfig

    def __init__(self, config: LLMRerankConfig | None = None, reranker: CandidateReranker | None = None,
                 **overrides: Any):
        super().__init__(config, **overrides)
        if reranker is not None and not isinstance(reranker, CandidateReranker):
            raise ConfigError(f"reranker must implement CandidateReranker.rerank, got {type(reranker).__name__}")
        self.reranker = reranker
        self.toolkit: LLMToolkit | None = None
        cls, cfg = configured("model", self.config.base, prefix="base.")
        self.base_ = cls(cfg)

    def llm_spec(self) -> Mapping[str, Any] | None:
        """The configured backend (None when ``llm`` is empty)."""
        return self.config.llm or None

    def use_llm(self, toolkit: LLMToolkit) -> None:
        """Rerank with ``toolkit`` (a toolkit without a client leaves the reranker as it was)."""
        self.toolkit = toolkit
        if toolkit.client is not None:
            self.reranker = toolkit

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.base_.fit(train, valid)
        self._keep_sequences(train)

    def _rerank(self, base: torch.Tensor, histories: list[np.ndarray]) -> torch.Tensor:
        """Base scores (B, n_items+1) -> scores with the reranked candidates on top."""
        scores = base.float().clone()
        scores[:, 0] = -torch.inf
        masked = scores.clone()
        lengths = [len(h) for h in histories]
        if sum(lengths):  # candidates are never items the user already has
            rows = torch.from_numpy(np.repeat(np.arange(len(histories)), lengths))
            masked[rows, torch.from_numpy(np.concatenate(histories).astype(np.int64))] = -torch.inf
        n = min(self.config.n_candidates, self.n_items)
        cand = top_k(masked, n).items.numpy()  # (B, n) best first; 0 pads rows with fewer rankable items
        full = np.flatnonzero((cand > 0).all(axis=1))
        if not len(full):
            return scores
        order = np.tile(np.arange(n), (len(full), 1))
        if self.reranker is not None:
            order = np.asarray(self.reranker.rerank([histories[b] for b in full], cand[full]), dtype=np.int64)
        ranked = torch.from_numpy(np.take_along_axis(cand[full], order, axis=1))  # (F, n) best first
        finite = torch.where(torch.isfinite(scores), scores, torch.zeros(()))
        top = finite.abs().amax(dim=1, keepdim=True)[torch.from_numpy(full)] + 1.0  # above every base score
        scores[torch.from_numpy(full)[:, None], ranked] = top + torch.arange(n, 0, -1, dtype=torch.float32)
        return scores

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return self._rerank(self.base_.score(users), self._train_histories(users))

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        return self._rerank(history_scores(self.base_, (items, offsets)), jagged_rows(items, offsets))

    def _state(self) -> dict[str, torch.Tensor]:
        return {**{f"base.{k}": v for k, v in self.base_._state().items()}, **self._sequences_state()}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self._load_inner(self.base_, state, "base.")
        self._load_sequences(state)
