"""Toolkit: what a language model does for a recommender (a :class:`recforge.protocols.LLMToolkit`).

It holds the client (or None), the item texts (``texts[i]`` describes dense item i) and the catalogue, and offers the
verbs the LLM recommenders use: ``rerank`` (an :class:`~recforge.llm.ranker.LLMRanker`), ``next_items`` (the
``next_titles`` prompt, answers grounded to the catalogue by :class:`~recforge.llm.grounding.TitleGrounder`),
``rate`` (the ``rate`` prompt, the first number of the answer) and ``plan`` (the ``plan`` prompt, an unusable answer
falls back to the first tool without filters). Every fallback is counted; :meth:`Toolkit.report` is what a run
folder records under ``llm``. :func:`build_toolkit` builds one from a backend spelled ``{"name": <llm key>, ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recforge.errors import ConfigError
from recforge.llm.grounding import TitleGrounder, parse_plan, parse_rating, parse_titles
from recforge.llm.prompts import next_titles_prompt, plan_prompt, rate_prompt
from recforge.llm.ranker import LLMRanker, RankerConfig
from recforge.protocols import LLMClient
from recforge.registry import configured

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolkitConfig(RankerConfig):
    """The ranker's settings (prompt and answer budgets, history length, seed), used by every verb, validated."""

    def __post_init__(self) -> None:
        if self.budget_tokens < 64 or self.history < 1 or self.max_tokens < 1:
            raise ConfigError(f"need budget_tokens >= 64, history >= 1, max_tokens >= 1 (got {self.budget_tokens}, "
                              f"{self.history}, {self.max_tokens})")


class Toolkit:
    """LLM verbs grounded in one item catalogue (see the module docstring)."""

    def __init__(self, client: LLMClient | None, texts: Sequence[str], catalog: Any = None,
                 config: ToolkitConfig | None = None):
        if client is not None and not isinstance(client, LLMClient):
            raise ConfigError(f"client must be an LLMClient, got {type(client).__name__}")
        self.client, self.texts, self.catalog = client, list(texts), catalog
        self.config = config or ToolkitConfig()
        titles = list(catalog.titles) if catalog is not None else [None, *self.texts[1:]]
        if len(titles) != len(self.texts):
            raise ConfigError(f"the catalogue has {len(titles)} rows, the texts {len(self.texts)}")
        self.grounder = TitleGrounder(titles)
        self._ranker: LLMRanker | None = None
        self.counts: dict[str, int] = {"titles_asked": 0, "titles_given": 0, "titles_grounded": 0,
                                       "titles_invented": 0, "titles_in_history": 0, "ratings_asked": 0,
                                       "ratings_unparsed": 0, "plans": 0, "plans_fallback": 0, "errors": 0}
        self.grounded_by: dict[str, int] = {}

    def _client(self, verb: str) -> LLMClient:
        if self.client is None:
            raise ConfigError(f"{verb} needs a language model: configure one, e.g. llm = {{name = \"mock\"}}")
        return self.client

    def _recent(self, history: np.ndarray) -> list[str]:
        return [self.texts[int(i)] for i in np.asarray(history)[-self.config.history :]]

    # ------------------------------------------------------------------------------------------------------ verbs
    def rerank(self, histories: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
        if self._ranker is None:
            self._ranker = LLMRanker(self._client("rerank"), self.texts, self.config)
        return self._ranker.rerank(histories, candidates)

    def next_items(self, histories: list[np.ndarray], n: int) -> np.ndarray:
        client = self._client("next_items")
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        prompts = [next_titles_prompt(self._recent(h), n, self.config.budget_tokens, self.config.max_tokens)
                   for h in histories]
        answers = client.generate([p.request for p in prompts])
        out = np.zeros((len(histories), n), np.int64)
        for b, (hist, ans) in enumerate(zip(histories, answers)):
            self.counts["errors"] += int(ans.error is not None)
            titles, _ = parse_titles(ans.text, n)
            self.counts["titles_asked"] += n
            self.counts["titles_given"] += len(titles)
            seen = set(np.asarray(hist).tolist())
            for j, title in enumerate(titles):
                g = self.grounder.ground(title)
                self.grounded_by[g.how] = self.grounded_by.get(g.how, 0) + 1
                if g.item == 0:
                    self.counts["titles_invented"] += 1
                    continue
                self.counts["titles_grounded"] += 1
                self.counts["titles_in_history"] += int(g.item in seen)
                out[b, j] = g.item
        return out

    def rate(self, histories: list[np.ndarray], ratings: list[np.ndarray], items: np.ndarray) -> np.ndarray:
        client = self._client("rate")
        prompts = []
        for hist, rat, item in zip(histories, ratings, np.asarray(items)):
            hist, rat = np.asarray(hist)[-self.config.history :], np.asarray(rat)[-self.config.history :]
            lines = [f"{self.texts[int(i)]}: {float(r):g}" for i, r in zip(hist, rat)]
            prompts.append(rate_prompt(lines, self.texts[int(item)], self.config.budget_tokens))
        answers = client.generate([p.request for p in prompts])
        out = np.full(len(prompts), np.nan)
        for b, ans in enumerate(answers):
            self.counts["errors"] += int(ans.error is not None)
            value = parse_rating(ans.text)
            self.counts["ratings_asked"] += 1
            if value is None:
                self.counts["ratings_unparsed"] += 1
            else:
                out[b] = value
        return out

    def plan(self, history: np.ndarray, tools: Sequence[str], attributes: Sequence[str]) -> dict[str, Any]:
        if not tools:
            raise ConfigError("plan needs at least one tool")
        client = self._client("plan")
        p = plan_prompt(self._recent(history), tools, attributes, self.config.budget_tokens)
        ans = client.generate([p.request])[0]
        self.counts["errors"] += int(ans.error is not None)
        self.counts["plans"] += 1
        step = parse_plan(ans.text, tools, attributes)
        if step is None:
            self.counts["plans_fallback"] += 1
            step = {"tool": tools[0], "filters": []}
        return step

    def report(self) -> dict[str, Any]:
        c = self.counts
        out: dict[str, Any] = {"counts": dict(c), "grounded_by": dict(self.grounded_by)}
        if c["titles_given"]:
            out["grounding_rate"] = c["titles_grounded"] / c["titles_given"]
            out["invention_rate"] = c["titles_invented"] / c["titles_given"]
        if c["ratings_asked"]:
            out["rating_parse_rate"] = 1.0 - c["ratings_unparsed"] / c["ratings_asked"]
        if c["plans"]:
            out["plan_fallback_rate"] = c["plans_fallback"] / c["plans"]
        if self._ranker is not None:
            out["ranking"] = self._ranker.stats.to_dict()
        if self.client is not None:
            out["backend"] = self.client.name
            usage = getattr(self.client, "usage", None)
            if usage is not None:
                out["usage"] = usage.to_dict()
        return out


def build_toolkit(spec: Mapping[str, Any] | None, texts: Sequence[str], catalog: Any = None,
                  config: ToolkitConfig | None = None) -> Toolkit:
    """A Toolkit over the backend ``spec`` (``{"name": <llm key>, **its config}``; None = no backend)."""
    client = None
    if spec is not None:
        cls, cfg = configured("llm", spec, prefix="model.llm.")
        client = cls(cfg)
    log.info("LLM toolkit: backend %s, %d items", client.name if client else "none", len(texts) - 1)
    return Toolkit(client, texts, catalog, config)
