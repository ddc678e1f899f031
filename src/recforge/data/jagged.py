"""Jagged arrays: many variable-length int sequences stored as one flat array plus offsets (no Python object per row).

A jagged array is ``(items (N,), offsets (B+1,))``; row ``b`` is ``items[offsets[b]:offsets[b+1]]``.
"""

from __future__ import annotations

import numpy as np


def as_jagged(histories: list[np.ndarray] | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A list of int arrays, or an (items, offsets) pair, -> (items int64 (N,), offsets int64 (B+1,))."""
    if isinstance(histories, tuple):
        items, offsets = histories
        return np.asarray(items, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if histories else np.zeros(0, np.int64)
    return items, offsets


def gather_jagged(items: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Select rows of a jagged array: (items (N,), offsets (R+1,)) for ``rows`` without a Python loop per row."""
    starts, ends = offsets[rows], offsets[rows + 1]
    lengths = ends - starts
    new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    idx = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
    return items[idx], new_offsets


def jagged_rows(items: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """A jagged array -> its B rows as views of ``items`` (for code that hands one row at a time to an LLM or a
    planner)."""
    return np.split(items, offsets[1:-1]) if len(offsets) > 1 else []
