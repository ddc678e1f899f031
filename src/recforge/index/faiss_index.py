"""faiss inner-product indexes (flat, HNSW, IVF) with recall against exact search measured at build time."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from recforge.errors import ConfigError
from recforge.index.exact import ExactRetriever

log = logging.getLogger(__name__)

_PARAMS = {"flat": set(), "hnsw": {"m", "ef_construction", "ef_search"}, "ivf": {"nlist", "nprobe"}}


class FaissRetriever:
    """A faiss index over item vectors (row 0 = padding is left out; faiss id j is dense item j+1).

    ``kind``: "flat" (exact inner product), "hnsw" (graph, params m / ef_construction / ef_search) or
    "ivf" (inverted lists, params nlist / nprobe). ``info["recall"]`` is recall@``recall_k`` against exact search on
    ``recall_queries`` queries: the given ``queries`` or, by default, item vectors of random items plus noise.
    """

    def __init__(
        self,
        vectors: torch.Tensor,
        kind: str = "hnsw",
        *,
        queries: torch.Tensor | None = None,
        recall_queries: int = 200,
        recall_k: int = 10,
        seed: int = 0,
        **params: Any,
    ):
        import faiss  # optional dependency (the "serve" extra): imported only when an index is built

        if kind not in _PARAMS:
            raise ConfigError(f"faiss index kind must be flat, hnsw or ivf, got {kind!r}")
        unknown = set(params) - _PARAMS[kind]
        if unknown:
            raise ConfigError(f"unknown {kind} index parameter(s) {sorted(unknown)} (expected {sorted(_PARAMS[kind])})")
        x = np.ascontiguousarray(vectors[1:].detach().to(torch.float32).numpy())
        n, d = x.shape
        t0 = time.perf_counter()
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, int(params.get("m", 32)), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(params.get("ef_construction", 128))
            index.hnsw.efSearch = int(params.get("ef_search", 128))
        else:
            # ~4 sqrt(n) lists is the usual rule of thumb; k-means wants >= 39 training points per list.
            nlist = int(params.get("nlist", max(1, min(n // 39, int(4 * np.sqrt(n))))))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            train = x[rng.choice(n, size=min(n, 64 * nlist), replace=False)] if n > 64 * nlist else x
            index.train(train)
            # a quarter of the lists by default: recall first (0.965 recall@10 on a 1M-item SASRec catalogue at
            # nlist 1024 / nprobe 256, docs/serving.md); lower it for speed after reading the measured recall
            index.nprobe = int(params.get("nprobe", max(1, nlist // 4)))
            self._quantizer = quantizer  # faiss holds a raw pointer to it: keep it alive as long as the index
        index.add(x)
        build_s = time.perf_counter() - t0
        self.index, self.kind, self._n, self._d = index, kind, n, d
        self.info: dict[str, Any] = {"kind": kind, "n_items": n, "dim": d, "build_s": build_s, "params": dict(params)}
        self.info.update(self.measure_recall(vectors, queries, recall_queries, recall_k, seed))
        log.info("built faiss %s index: %s", kind, self.info)

    @property
    def n_items(self) -> int:
        return self._n

    def set_search_params(self, **params: int) -> None:
        """Change the search-time parameters of a built index (``ef_search`` for HNSW, ``nprobe`` for IVF) without
        rebuilding it. ``info["params"]`` follows; ``info["recall"]`` stays the one measured at build time."""
        allowed = {"hnsw": {"ef_search"}, "ivf": {"nprobe"}}.get(self.kind, set())
        unknown = set(params) - allowed
        if unknown:
            raise ConfigError(f"{self.kind} index: no search-time parameter(s) {sorted(unknown)} "
                              f"(expected {sorted(allowed)})")
        for key, value in params.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive int, got {value!r}")
        if "ef_search" in params:
            self.index.hnsw.efSearch = params["ef_search"]
        if "nprobe" in params:
            self.index.nprobe = params["nprobe"]
        self.info["params"] = {**self.info["params"], **params}

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, d) -> (scores (B, k) float32, dense ids (B, k) int64), padded with (-inf, 0)."""
        q = np.ascontiguousarray(queries.detach().to(torch.float32).numpy())
        scores, ids = self.index.search(q, k)
        ids = torch.from_numpy(ids.astype(np.int64))
        scores = torch.from_numpy(scores.astype(np.float32))
        missing = ids < 0  # faiss pads with -1 when fewer than k results are found
        scores[missing] = -torch.inf
        return scores, torch.where(missing, 0, ids + 1)

    def measure_recall(
        self, vectors: torch.Tensor, queries: torch.Tensor | None, n_queries: int, k: int, seed: int
    ) -> dict[str, Any]:
        """recall@k of this index against exact search: |approx top-k ∩ exact top-k| / k, averaged over queries."""
        if queries is None:
            rng = np.random.default_rng(seed)
            rows = torch.from_numpy(rng.integers(1, self._n + 1, size=min(n_queries, self._n)))
            base = vectors[rows].to(torch.float32)
            noise = torch.from_numpy(rng.standard_normal(base.shape).astype(np.float32))
            queries = base + 0.5 * base.norm(dim=1, keepdim=True) / np.sqrt(self._d) * noise
        kk = min(k, self._n)
        t0 = time.perf_counter()
        _, approx = self.search(queries, kk)
        search_ms = 1000 * (time.perf_counter() - t0) / max(1, len(queries))
        _, exact = ExactRetriever(vectors).search(queries, kk)
        hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact))
        recall = hits / (kk * max(1, len(queries)))
        return {"recall": recall, "recall_k": kk, "recall_queries": int(len(queries)), "search_ms_per_query": search_ms}
