"""ToolRec-style planning (Zhao et al., 2024, in miniature): a planner reads a history and decides which registered
recommender to call (a "tool") and which item attributes to filter by (e.g. genres); the chosen tool's ranking,
restricted to items with those attributes, is the answer.

Planners:

- ``rule``: the first tool for histories shorter than ``min_history`` items, the last tool otherwise; as filters the
  ``n_filters`` attributes (of group ``attribute_group``) most frequent among the history's ``recent`` last items,
  kept only when they cover at least ``min_share`` of them.
- ``llm``: the ``plan`` prompt through an :class:`~recforge.protocols.LLMToolkit` (tools by name, the catalogue's
  attributes of the group); an answer without a known tool falls back to the rule planner's step (counted in the
  toolkit's ``plan_fallback_rate``), unknown attributes are dropped.

Filtering never hides items: items with none of the filter attributes are ranked below every item that has one, in
the tool's order. Attributes come from the item catalogue the run path hands over (:meth:`ToolRec.use_llm`); without a
catalogue no filter applies. Every tool is fitted on the same log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.data.jagged import jagged_rows
from recforge.errors import ConfigError
from recforge.models.base import HistoryScoring, KeepsTrainSequences, history_scores
from recforge.protocols import LLMToolkit
from recforge.registry import configured


@dataclass(frozen=True)
class ToolRecConfig:
    #: hyper-parameter search space (see recforge.experiments.tune)
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {"recent": ("int", 3, 30), "min_share": ("float", 0.2, 0.9)}

    tools: tuple[dict[str, Any], ...] = ({"name": "popular"}, {"name": "itemknn"})
    """The recommenders the planner may call, each {"name": <model key>, **its config}; names must differ."""
    planner: Literal["rule", "llm"] = "rule"
    """Who plans each step."""
    llm: dict[str, Any] = field(default_factory=dict)
    """The language model of the ``llm`` planner: {"name": <llm backend key>, **its config}."""
    attribute_group: str = "genre"
    """The catalogue's attribute group the filters come from ("" = every attribute)."""
    min_history: int = 5
    """Rule planner: histories shorter than this call the first tool."""
    n_filters: int = 1
    """Rule planner: attributes to filter by."""
    recent: int = 10
    """Rule planner: the last items whose attributes are counted."""
    min_share: float = 0.5
    """Rule planner: an attribute filters only when at least this share of the recent items has it."""

    def __post_init__(self) -> None:
        if not self.tools:
            raise ConfigError("tools must name at least one model")
        names = [t.get("name") for t in self.tools]
        if None in names or len(set(names)) != len(names):
            raise ConfigError(f"every tool needs a distinct name, got {names}")
        if "toolrec" in names:
            raise ConfigError("tools: toolrec cannot call itself")
        if self.planner == "llm" and not self.llm:
            raise ConfigError("planner = 'llm' needs llm = {name = ...} (a registered backend)")
        if self.llm and "name" not in self.llm:
            raise ConfigError("llm.name is required (a registered backend: mock, openai_compat, hf_local)")
        if self.min_history < 0 or self.n_filters < 0 or self.recent < 1 or not 0 <= self.min_share <= 1:
            raise ConfigError("need min_history >= 0, n_filters >= 0, recent >= 1 and 0 <= min_share <= 1")


class ToolRec(KeepsTrainSequences, HistoryScoring):
    """A planner calling registered recommenders with attribute filters (see the module docstring)."""

    name = "toolrec"
    config_class = ToolRecConfig
    #: the contract's log has no catalogue: the rule planner picks between popularity and ItemKNN by history length
    test_config = {"min_history": 19}

    def __init__(self, config: ToolRecConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.toolkit: LLMToolkit | None = None
        self.tools_ = []
        for j, spec in enumerate(self.config.tools):
            cls, cfg = configured("model", spec, prefix=f"tools[{j}].")
            self.tools_.append(cls(cfg))
        self.tool_names = [t["name"] for t in self.config.tools]
        self.plans_: list[dict[str, Any]] = []

    def llm_spec(self) -> Mapping[str, Any] | None:
        return self.config.llm or None

    def use_llm(self, toolkit: LLMToolkit) -> None:
        """The toolkit gives the catalogue (attributes for filters) and, for the ``llm`` planner, the model."""
        self.toolkit = toolkit

    # ------------------------------------------------------------------ attributes
    def _attributes(self) -> tuple[sp.csr_array | None, list[str]]:
        """(item x attribute multi-hot of the group (n_items+1, A) or None, the attributes' names)."""
        catalog = self.toolkit.catalog if self.toolkit is not None else None
        if catalog is None or catalog.n_items != self.n_items:
            return None, []
        codes, groups = catalog.groups()
        cols = np.arange(1, len(codes))
        if self.config.attribute_group:
            if self.config.attribute_group not in groups:
                raise ConfigError(f"the catalogue has no attribute group {self.config.attribute_group!r} "
                                  f"(it has {groups})")
            cols = cols[codes[1:] == groups.index(self.config.attribute_group)]
        names = [str(catalog.attr_vocab.ids[c - 1]) for c in cols]
        return sp.csr_array(catalog.attributes[:, cols]), names

    # ------------------------------------------------------------------ planning
    def _rule_step(self, history: np.ndarray, attrs: sp.csr_array | None, names: list[str]) -> dict[str, Any]:
        cfg = self.config
        tool = self.tool_names[0] if len(history) < cfg.min_history else self.tool_names[-1]
        filters: list[str] = []
        recent = np.asarray(history)[-cfg.recent :]
        if attrs is not None and cfg.n_filters and len(recent):
            counts = np.asarray(attrs[recent].sum(axis=0)).ravel()
            best = np.argsort(-counts, kind="stable")[: cfg.n_filters]
            filters = [names[a] for a in best if counts[a] >= cfg.min_share * len(recent) and counts[a] > 0]
        return {"tool": tool, "filters": filters}

    def plan(self, history: np.ndarray) -> dict[str, Any]:
        """The planner's step for a history (dense ids, oldest first): {"tool": name, "filters": [attribute names]}."""
        attrs, names = self._attributes()
        rule = self._rule_step(history, attrs, names)
        if self.config.planner == "rule" or self.toolkit is None or self.toolkit.client is None:
            return rule
        step = self.toolkit.plan(history, self.tool_names, names)
        return rule if step["tool"] not in self.tool_names else step

    # ------------------------------------------------------------------ scoring
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        for tool in self.tools_:
            tool.fit(train, valid)
        self._keep_sequences(train)

    def _run(self, histories: list[np.ndarray], tool_scores: list[torch.Tensor]) -> torch.Tensor:
        attrs, names = self._attributes()
        index = {n: j for j, n in enumerate(names)}
        out = torch.empty_like(tool_scores[0])
        self.plans_ = [self.plan(h) for h in histories]
        for b, step in enumerate(self.plans_):
            row = tool_scores[self.tool_names.index(step["tool"])][b].float()
            if step["filters"] and attrs is not None:
                cols = [index[f] for f in step["filters"]]
                keep = torch.from_numpy(np.asarray(attrs[:, cols].sum(axis=1)).ravel() > 0)
                finite = torch.isfinite(row)
                span = (row[finite].max() - row[finite].min()).item() + 1.0 if finite.any() else 1.0
                row = torch.where(keep, row, row - span)  # items without a filter attribute rank below the others
            out[b] = row
        return out

    def _score(self, users: np.ndarray) -> torch.Tensor:
        return self._run(self._train_histories(users), [t.score(users) for t in self.tools_])

    def _score_histories(self, items: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        return self._run(jagged_rows(items, offsets), [history_scores(t, (items, offsets)) for t in self.tools_])

    def _state(self) -> dict[str, torch.Tensor]:
        state = {f"tool{j}.{k}": v for j, t in enumerate(self.tools_) for k, v in t._state().items()}
        return {**state, **self._sequences_state()}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        for j, tool in enumerate(self.tools_):
            self._load_inner(tool, state, f"tool{j}.")
        self._load_sequences(state)
