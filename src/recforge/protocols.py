"""Capabilities, declared as small typed protocols. Callers ask ``isinstance(obj, Protocol)``, never ``hasattr``.

A model, policy or estimator declares a capability by implementing the method(s) below (the base classes and mixins in
``recforge.models.base`` do the id checks around them). Serving, the evaluator and run folders branch on these
protocols only, and ``recforge.testing`` checks each one's contract over every registry table.

Conventions shared by all of them: ids are dense 1-based ints (0 = padding, see ``recforge.data.vocab``); a score
matrix has ``n_items + 1`` columns with column 0 at ``-inf``; histories are oldest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

#: A batch of histories: a list of dense item-id arrays, or the jagged pair (items (N,), offsets (B+1,)).
Histories = list[np.ndarray] | tuple[np.ndarray, np.ndarray]


@runtime_checkable
class Scorer(Protocol):
    """Scores every item for known users: the full score matrix."""

    def score(self, users: np.ndarray) -> torch.Tensor:
        """Dense user ids (U,) -> float32 scores (U, n_items+1); column 0 is -inf."""
        ...


@runtime_checkable
class HistoryScorer(Protocol):
    """Scores every item for histories it was not trained on (cold-start users, serving sessions, fold-in splits)."""

    def score_histories(self, histories: Histories) -> torch.Tensor:
        """B histories -> float32 scores (B, n_items+1); column 0 is -inf."""
        ...


@runtime_checkable
class TimedHistoryScorer(HistoryScorer, Protocol):
    """A history scorer that also uses each event's timestamp (e.g. HSTU's time-gap bias)."""

    def score_timed_histories(self, histories: Histories, times: np.ndarray) -> torch.Tensor:
        """B histories plus ``times`` (N,) aligned with the jagged items -> scores (B, n_items+1)."""
        ...


@runtime_checkable
class TopK(Protocol):
    """Ranks without a full score matrix (beam search over semantic ids, multi-vector retrieval)."""

    def topk(self, users: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Dense user ids (U,) -> (items int64 (U, k), scores float32 (U, k)), best first; 0 pads a short row.

        ``exclude[u]`` lists dense item ids that must not appear in row u."""
        ...


@runtime_checkable
class Steerable(Protocol):
    """Generation conditioned on a stated preference (Mender-style steering): attribute values such as
    ``genre=Comedy`` given at request time."""

    def preference_values(self) -> list[str]:
        """The values the model can be steered with ("group=value"); empty when it was trained without them."""
        ...

    def steer(self, preference: Sequence[str]) -> AbstractContextManager[None]:
        """A context within which every score / top-k is conditioned on ``preference``; an unknown value is a
        ConfigError."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Scores are inner products of query and item vectors, so an index (exact or faiss) can serve the model."""

    def user_embeddings(self, users: np.ndarray) -> torch.Tensor:
        """Dense user ids (U,) -> query vectors (U, d), or (U, V, d) for V interest vectors per user (score = max)."""
        ...

    def item_embeddings(self) -> torch.Tensor:
        """Item vectors (n_items+1, d); row 0 is padding."""
        ...


@runtime_checkable
class LogProb(Protocol):
    """A normalised likelihood over items given a history (what preference alignment and DPO work on)."""

    def log_prob(self, histories: Histories, targets: np.ndarray) -> torch.Tensor:
        """B histories and dense target ids (B,) -> log p(target | history) (B,)."""
        ...


@runtime_checkable
class TrainableLogProb(LogProb, Protocol):
    """A LogProb whose parameters can be updated in place (what DPO-style alignment trains)."""

    def log_prob_module(self) -> torch.nn.Module:
        """The module holding every parameter ``differentiable_log_prob`` depends on."""
        ...

    def differentiable_log_prob(self, histories: Histories, items: np.ndarray) -> torch.Tensor:
        """B histories and dense ids (B, M) -> log p(items[b, m] | history b) (B, M), differentiable, computed in
        the module's current train/eval mode on its device."""
        ...


@runtime_checkable
class Policy(Protocol):
    """A bandit policy: chooses ``len_list`` distinct actions per round and learns from the rewards, in batches."""

    n_actions: int
    len_list: int

    def select(self, context: np.ndarray | None, n: int) -> np.ndarray:
        """Contexts (n, d) or None -> actions int64 (n, len_list), distinct per row."""
        ...

    def update(self, context: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Learn from n rounds: actions and rewards (n, len_list)."""
        ...


@runtime_checkable
class Estimator(Protocol):
    """An off-policy estimator of a policy's value from logged feedback."""

    name: str

    def estimate(self, inp: Any, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> Any:
        """Logged feedback plus the evaluated policy's action distribution -> value with a bootstrap CI."""
        ...


@runtime_checkable
class Environment(Protocol):
    """A simulated world a policy acts in (bandit simulators, user simulators for long-term value)."""

    n_actions: int
    len_list: int

    def contexts(self, n: int) -> np.ndarray | None:
        """The next n rounds' contexts (n, d), or None for a context-free world."""
        ...

    def step(self, context: np.ndarray | None, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Actions (n, len_list) -> (rewards (n, len_list), expected rewards (n, len_list), best expected (n,))."""
        ...


@runtime_checkable
class ConversationalPolicy(Protocol):
    """A conversational recommender: asks about attributes or recommends items, turn by turn."""

    name: str

    def begin(self, state: Any, rng: np.random.Generator) -> None: ...

    def act(self, state: Any) -> Any: ...

    def observe(self, state: Any, action: Any, accepted: tuple[int, ...] | None) -> None: ...

    def end(self, state: Any, outcome: Any) -> None: ...


@runtime_checkable
class TextEmbedder(Protocol):
    """Turns texts into vectors (item text towers, zero-shot text recommenders, title grounding).

    ``fingerprint`` identifies the model and its weights: vectors cached under one fingerprint are never served to
    another."""

    name: str
    fingerprint: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """n texts -> float32 (n, d) with L2-normalised rows (a zero row for an empty text)."""
        ...


@dataclass(frozen=True)
class GenerationRequest:
    """One chat request: ``messages`` as (role, content) pairs, oldest first."""

    messages: tuple[tuple[str, str], ...]
    max_tokens: int = 256
    temperature: float = 0.0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    """One answer. ``error`` is set (and ``text`` empty) when the backend gave no usable answer for this request."""

    text: str
    finish_reason: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


@runtime_checkable
class LLMClient(Protocol):
    """One client for every language-model backend, three verbs. ``capabilities`` lists the verbs the backend
    supports ("generate", "score", "embed"); the others raise a ConfigError naming the backend."""

    name: str
    capabilities: frozenset[str]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """n requests -> n generations, in order (a failed request is a Generation with ``error`` set)."""
        ...

    def score(self, context: str, continuations: Sequence[str]) -> np.ndarray:
        """log p(continuation | context) for each continuation -> float64 (n,)."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """n texts -> float32 (n, d)."""
        ...


@runtime_checkable
class CandidateReranker(Protocol):
    """Reorders a base model's candidates for a history (an LLM reranker built on an LLMClient)."""

    def rerank(self, histories: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
        """B histories (dense item ids, oldest first) and candidates int64 (B, N) in base-model order ->
        int64 (B, N): each row a permutation of 0..N-1 (positions in the candidate row), best first."""
        ...


@runtime_checkable
class LLMToolkit(Protocol):
    """What a language model does for a recommender, grounded in the item catalogue (built by ``recforge.llm``).

    ``texts[i]`` describes dense item i ("" for padding); ``catalog`` is the item catalogue aligned to the same ids
    (None when the dataset has none); ``client`` is None when no backend was configured, and then the verbs that need
    one raise a ConfigError."""

    texts: list[str]
    catalog: Any
    client: LLMClient | None

    def rerank(self, histories: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
        """As :meth:`CandidateReranker.rerank`: (B, N) candidates -> (B, N) permutations, best first."""
        ...

    def next_items(self, histories: list[np.ndarray], n: int) -> np.ndarray:
        """Ask for ``n`` next titles per history and ground them to the catalogue -> int64 (B, n) dense ids, 0 where
        a title grounded to nothing (an invention) or was not given."""
        ...

    def rate(self, histories: list[np.ndarray], ratings: list[np.ndarray], items: np.ndarray) -> np.ndarray:
        """B rated histories (items and their ratings) and one item each (B,) -> float64 (B,) predicted ratings,
        NaN where the answer held no number."""
        ...

    def plan(self, history: np.ndarray, tools: Sequence[str], attributes: Sequence[str]) -> dict[str, Any]:
        """One planner step: ``{"tool": one of tools, "filters": [attribute names]}`` for a history."""
        ...

    def report(self) -> dict[str, Any]:
        """Counters for the run folder: usage (requests, tokens, latency) and grounding / parse rates."""
        ...


@runtime_checkable
class LLMUser(Protocol):
    """A recommender that uses item text and a language model. The run path builds an :class:`LLMToolkit` from
    ``llm_spec()`` (a backend ``{"name": <llm key>, **config}``, or None for no backend) and the dataset's item
    catalogue, and hands it over with ``use_llm`` before fitting and after loading a saved model; ``toolkit`` is the
    one in use (None before), whose ``report()`` a run folder records."""

    toolkit: LLMToolkit | None

    def llm_spec(self) -> Mapping[str, Any] | None:
        ...

    def use_llm(self, toolkit: LLMToolkit) -> None:
        ...


@dataclass(frozen=True)
class ItemSideSpec:
    """What item side information a recommender reads: item text vectors from the registered embedder ``embedder``
    (``{"name": <embedder key>, **its config}``; None = no text) over sentences of the template ``template``, and/or
    the catalogue's multi-hot ``attributes``."""

    embedder: dict[str, Any] | None
    template: str = "kv"
    attributes: bool = False
    on_missing_text: str = "attr_only"


@dataclass(frozen=True)
class ItemSide:
    """Item side information aligned to dense item ids: ``item_ids`` (n,) external ids, ``vectors`` float32
    (n+1, d) L2-normalised text vectors (row 0 and items without text zero) or None, ``attributes`` a scipy csr
    (n+1, n_attributes+1) multi-hot or None; ``source`` names the embedder, template and texts they came from.
    For :meth:`ItemAdder.add_items` the same fields describe the new items (row 0 is still padding)."""

    item_ids: list[Any]
    vectors: np.ndarray | None = None
    attributes: Any = None
    source: str = ""


@runtime_checkable
class ItemSideConsumer(Protocol):
    """A recommender that reads item text vectors or attributes from the item catalogue (text towers, zero-shot
    text recommenders). Whoever holds the catalogue (the experiments layer, the contract suite, a user through
    ``recforge.text.bind_items``) renders and embeds it as ``item_side_spec()`` says and calls ``bind_items``
    before ``fit``; the model keeps what it needs in its state, so a saved model needs no catalogue."""

    def item_side_spec(self) -> ItemSideSpec: ...

    def bind_items(self, side: ItemSide) -> None:
        """Side information for every item of the training log's item vocabulary, before ``fit``."""
        ...


@runtime_checkable
class ItemAdder(Protocol):
    """A fitted recommender that can score items added after training from their side information alone."""

    def add_items(self, side: ItemSide) -> None:
        """Append ``side.item_ids`` (new external ids) as dense ids n_items+1.. and score them from ``side``."""
        ...
