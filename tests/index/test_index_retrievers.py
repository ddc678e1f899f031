"""Retrievers: exact search equals brute force, faiss indexes report (and reach) their recall, bad arguments fail."""

from __future__ import annotations

import pytest
import torch

from recforge.errors import ConfigError
from recforge.index import ExactRetriever, Retriever, build_retriever


@pytest.fixture(scope="module")
def clustered() -> torch.Tensor:
    """(5001, 16) item vectors in 50 clusters; row 0 is padding (all zeros)."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(50, 16, generator=g)
    v = centers[torch.randint(0, 50, (5001,), generator=g)] + 0.3 * torch.randn(5001, 16, generator=g)
    v[0] = 0
    return v


def brute_force(vectors: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    scores = queries @ vectors.T
    scores[:, 0] = -torch.inf
    return torch.topk(scores, k, dim=1).indices


def test_exact_equals_brute_force_in_any_batch_size(clustered):
    q = torch.randn(37, 16, generator=torch.Generator().manual_seed(1))
    for batch in (1, 8, 1000):
        r = ExactRetriever(clustered, batch_size=batch)
        scores, ids = r.search(q, 10)
        assert torch.equal(ids, brute_force(clustered, q, 10))
        assert torch.allclose(scores, (q @ clustered.T).gather(1, ids), atol=1e-4)
    assert isinstance(r, Retriever) and r.info["kind"] == "exact"


def test_k_larger_than_catalog_is_padded():
    v = torch.randn(4, 3)
    for kind in ("exact", "flat"):
        scores, ids = build_retriever(v, kind).search(torch.randn(2, 3), 5)
        assert ids[:, 3:].eq(0).all() and torch.isinf(scores[:, 3:]).all()
        assert sorted(ids[0, :3].tolist()) == [1, 2, 3]


@pytest.mark.parametrize(("kind", "params", "floor"), [
    ("flat", {}, 1.0),
    ("hnsw", {"m": 16, "ef_search": 64}, 0.95),
    ("ivf", {"nlist": 50, "nprobe": 8}, 0.9),
])
def test_faiss_recall_is_measured_and_true(clustered, kind, params, floor):
    r = build_retriever(clustered, kind, recall_queries=100, **params)
    assert r.info["kind"] == kind and r.info["recall_queries"] == 100 and r.info["recall_k"] == 10
    assert r.info["recall"] >= floor
    # Re-measure independently on other queries: the reported number must describe the index.
    q = clustered[1:201] + 0.1 * torch.randn(200, 16, generator=torch.Generator().manual_seed(3))
    _, approx = r.search(q, 10)
    exact = brute_force(clustered, q, 10)
    recall = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact)) / 2000
    assert recall >= floor - 0.05
    assert approx.min() >= 1  # faiss ids are shifted to dense ids; padding row never returned


def test_auto_switches_on_threshold(clustered):
    assert build_retriever(clustered, "auto", ann_threshold=10_000).info["kind"] == "exact"
    assert build_retriever(clustered, "auto", ann_threshold=1000, recall_queries=20).info["kind"] == "ivf"


@pytest.mark.parametrize(("vectors", "kind", "params", "needle"), [
    (torch.randn(1, 4), "exact", {}, "n_items >= 1"),
    (torch.randn(10), "exact", {}, "shape"),
    (torch.randn(10, 4), "lsh", {}, "index kind"),
    (torch.randn(10, 4), "hnsw", {"nprobe": 3}, "unknown hnsw index parameter"),
    (torch.randn(10, 4), "flat", {"m": 3}, "unknown flat index parameter"),
])
def test_bad_arguments(vectors, kind, params, needle):
    with pytest.raises(ConfigError, match=needle):
        build_retriever(vectors, kind, **params)
