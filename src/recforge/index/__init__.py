"""Top-k retrieval over item vectors: exact (torch matmul + topk) and faiss (flat, HNSW, IVF)."""

from recforge.index.base import Retriever, build_retriever
from recforge.index.exact import ExactRetriever

__all__ = ["ExactRetriever", "Retriever", "build_retriever"]
