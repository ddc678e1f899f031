"""LLMRanker: reorders a base model's candidates with an LLMClient (a :class:`recforge.protocols.CandidateReranker`).

Each row becomes a ``rank`` prompt (opaque shuffled ids, recency-marked history cut to the budget). With
``method = "generate"`` the model writes its answer, which becomes a permutation through
:func:`recforge.llm.grounding.parse_ranking`; with ``method = "score"`` nothing is generated: the prompt (as
"role: content" lines) followed by ``assistant: ["`` is the context, and each candidate is ranked by the log-prob of
its id as the answer's first entry (``score`` verb: one pass per row on a local model, every candidate ranked, none
invented or appended). A request the backend failed keeps the base-model order (counted in ``stats.errors``). :meth:`LLMRanker.position_bias` asks again under other candidate
shuffles and reports the mean Kendall tau between the answers (1 = the order does not depend on the listing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np

from recforge.errors import ConfigError, RecforgeError
from recforge.llm.grounding import RankAnswer, RankingStats, kendall_tau, parse_ranking
from recforge.llm.prompts import Prompt, rank_prompt
from recforge.protocols import LLMClient


@dataclass(frozen=True)
class RankerConfig:
    budget_tokens: int = 2048
    """Prompt budget (history is cut from its oldest end to fit)."""
    max_tokens: int = 256
    """Answer budget."""
    history: int = 20
    """Most recent history items offered to the prompt."""
    seed: int = 0
    """Seeds the opaque ids and the candidate shuffles."""
    method: Literal["generate", "score"] = "generate"
    """generate: parse the model's written ranking; score: rank by the log-prob of each id as the first answer."""


def score_context(p: Prompt) -> str:
    """The ``score`` method's context: the prompt's messages as "role: content" lines, then the answer's opening."""
    return "\n".join(f"{role}: {content}" for role, content in p.request.messages) + '\nassistant: ["'


class LLMRanker:
    """``rerank(histories, candidates)`` with an LLM; ``texts[i]`` describes dense item i (index 0 unused)."""

    def __init__(self, client: LLMClient, texts: Sequence[str], config: RankerConfig | None = None):
        method = (config or RankerConfig()).method
        if method not in ("generate", "score"):
            raise ConfigError(f"ranker method must be 'generate' or 'score', got {method!r}")
        if method not in client.capabilities:
            raise ConfigError(f"reranking needs {method!r} (method {method!r}), which the {client.name} backend "
                              f"does not support (it supports {sorted(client.capabilities)})")
        self.client, self.texts, self.config = client, list(texts), config or RankerConfig()
        self.stats = RankingStats()
        self.history_dropped = 0
        self._rng = np.random.default_rng(self.config.seed)

    def rerank(self, histories: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
        """B histories (dense ids, oldest first) and candidates (B, N) -> (B, N) permutations, best first."""
        return self._rank(histories, candidates, self._rng)[0]

    def _rank(self, histories: list[np.ndarray], candidates: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, list[bool]]:
        candidates = np.asarray(candidates, dtype=np.int64)
        if len(histories) != len(candidates):
            raise ConfigError(f"{len(histories)} histories for {len(candidates)} candidate rows")
        prompts = []
        for hist, row in zip(histories, candidates):
            recent = [self.texts[i] for i in np.asarray(hist)[-self.config.history :]]
            p = rank_prompt(recent, [self.texts[i] for i in row], rng, self.config.budget_tokens, self.config.max_tokens)
            self.history_dropped += p.history_dropped
            prompts.append(p)
        if self.config.method == "score":
            return self._rank_by_score(prompts, candidates)
        answers = self.client.generate([p.request for p in prompts])
        out = np.empty_like(candidates)
        failed = []
        for b, (p, ans) in enumerate(zip(prompts, answers)):
            parsed = parse_ranking(ans.text, p.ids)
            self.stats.add(parsed, error=ans.error is not None)
            out[b] = parsed.order
            failed.append(ans.error is not None)
        return out, failed

    def _rank_by_score(self, prompts: list[Prompt], candidates: np.ndarray) -> tuple[np.ndarray, list[bool]]:
        """Each row's candidates by the log-prob of their id opening the answer (ties keep the base order)."""
        out = np.empty_like(candidates)
        failed = []
        for b, p in enumerate(prompts):
            n = len(p.ids)
            try:
                logp = np.asarray(self.client.score(score_context(p), [f'{cid}"' for cid in p.ids]), np.float64)
                error = False
            except RecforgeError:  # the backend failed this row (NaN log-probs, a network error): base order
                logp, error = np.zeros(n), True
            order = np.argsort(-logp, kind="stable")
            self.stats.add(RankAnswer(order, False, 0 if error else n, 0, 0, n if error else 0), error=error)
            out[b] = order
            failed.append(error)
        return out, failed

    def position_bias(self, histories: list[np.ndarray], candidates: np.ndarray, shuffles: int = 3) -> float:
        """Mean Kendall tau between the orders answered under ``shuffles`` candidate listings (rows whose request
        failed are left out); also recorded in ``stats``."""
        if shuffles < 2:
            raise ConfigError(f"position_bias needs at least 2 shuffles, got {shuffles}")
        runs = [self._rank(histories, candidates, np.random.default_rng(self.config.seed + 1000 + s))
                for s in range(shuffles)]
        taus = []
        for b in range(len(candidates)):
            for (oa, fa), (ob, fb) in combinations(runs, 2):
                if not fa[b] and not fb[b]:
                    taus.append(kendall_tau(oa[b], ob[b]))
        self.stats.taus.extend(taus)
        return float(np.mean(taus)) if taus else float("nan")
