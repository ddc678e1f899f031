"""Generative retrieval over semantic IDs: item features -> unique code sequences (``semantic_ids``), their
inspection (``inspect``), constrained decoding over a prefix trie (``decoding``) and the generative retriever
``tiger_decoder``."""
