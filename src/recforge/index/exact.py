"""Exact maximum-inner-product search: batched torch matmul + topk."""

from __future__ import annotations

import time
from typing import Any

import torch


class ExactRetriever:
    """Brute force over all items; memory per call is bounded by ``batch_size`` x n_items scores."""

    def __init__(self, vectors: torch.Tensor, batch_size: int = 256):
        # Row 0 is padding: keep only real items, contiguous float32, so ids are column + 1.
        t0 = time.perf_counter()
        self.vectors = vectors[1:].detach().to(torch.float32).contiguous()
        self.batch_size = batch_size
        self.info: dict[str, Any] = {
            "kind": "exact",
            "n_items": self.n_items,
            "dim": int(self.vectors.shape[1]),
            "build_s": time.perf_counter() - t0,
            "recall": 1.0,
        }

    @property
    def n_items(self) -> int:
        return int(self.vectors.shape[0])

    @torch.inference_mode()
    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, d) -> (scores (B, k), dense ids (B, k)); padded with (-inf, 0) when k > n_items."""
        queries = queries.to(torch.float32)
        kk = min(k, self.n_items)
        scores = torch.full((len(queries), k), -torch.inf)
        ids = torch.zeros((len(queries), k), dtype=torch.int64)
        for start in range(0, len(queries), self.batch_size):
            block = queries[start : start + self.batch_size] @ self.vectors.T
            top = torch.topk(block, kk, dim=1)
            scores[start : start + len(block), :kk] = top.values
            ids[start : start + len(block), :kk] = top.indices + 1
        return scores, ids
