"""The Retriever protocol and ``build_retriever``, which picks exact or approximate search by catalog size.

Item vectors follow the model convention: a float tensor (n_items+1, d) whose row 0 is padding and never returned.
Approximate indexes measure their recall@k against exact search when they are built, so the number is always known.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import torch

from recforge.errors import ConfigError
from recforge.index.exact import ExactRetriever
from recforge.index.faiss_index import FaissRetriever

log = logging.getLogger(__name__)

IndexKind = Literal["auto", "exact", "flat", "hnsw", "ivf"]


@runtime_checkable
class Retriever(Protocol):
    """Maximum-inner-product search over dense item ids 1..n_items."""

    #: how the index was built: kind, size, build seconds and, for approximate kinds, measured recall@k vs exact.
    info: dict[str, Any]

    @property
    def n_items(self) -> int: ...

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, d) float -> (scores (B, k) float32, dense item ids (B, k) int64), best first.

        Fewer than k real results are padded with score -inf and id 0."""
        ...


def build_retriever(
    vectors: torch.Tensor,
    kind: IndexKind = "auto",
    *,
    ann_threshold: int = 200_000,
    recall_queries: int = 200,
    recall_k: int = 10,
    seed: int = 0,
    **params: Any,
) -> Retriever:
    """Build a retriever over ``vectors`` (n_items+1, d) (row 0 = padding).

    ``kind="auto"`` uses exact torch search below ``ann_threshold`` items and a faiss IVF index above it (builds in
    seconds where HNSW takes minutes on a million items; its default ``nprobe`` favours recall, see FaissRetriever).
    ``params`` go to the faiss index (``m``, ``ef_construction``, ``ef_search``, ``nlist``, ``nprobe``).
    """
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise ConfigError(f"item vectors must be (n_items+1, d) with n_items >= 1, got shape {tuple(vectors.shape)}")
    if kind not in get_args(IndexKind):
        raise ConfigError(f"index kind must be one of {'/'.join(get_args(IndexKind))}, got {kind!r}")
    n_items = vectors.shape[0] - 1
    if kind == "auto":
        kind = "exact" if n_items < ann_threshold else "ivf"
    if kind == "exact":
        return ExactRetriever(vectors)
    return FaissRetriever(vectors, kind, recall_queries=recall_queries, recall_k=recall_k, seed=seed, **params)
