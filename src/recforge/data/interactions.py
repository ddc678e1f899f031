"""Interactions: an immutable columnar interaction log with its vocabularies and derived views.

Rows are kept sorted by (user, time, original order), so per-user sequences are contiguous slices.
Dense ids start at 1 (0 is padding); ``n_users``/``n_items`` count real ids only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.data.vocab import Vocab
from recforge.errors import DataError


@dataclass(frozen=True, eq=False)
class Interactions:
    """Columnar log. All arrays have shape (N,).

    user, item: int64 dense ids (>= 1); time: int64 (seconds or any monotone clock; 0 when unknown);
    value: float32 (rating / count / 1.0 for implicit); event: optional event-type labels.
    """

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    value: np.ndarray
    user_vocab: Vocab
    item_vocab: Vocab
    event: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.user)
        for name in ("item", "time", "value"):
            if len(getattr(self, name)) != n:
                raise DataError(f"column {name} has {len(getattr(self, name))} rows, user has {n}")
        if self.event is not None and len(self.event) != n:
            raise DataError(f"column event has {len(self.event)} rows, user has {n}")
        if n and (self.user.min() < 1 or self.user.max() > len(self.user_vocab)):
            raise DataError("user ids out of vocabulary range")
        if n and (self.item.min() < 1 or self.item.max() > len(self.item_vocab)):
            raise DataError("item ids out of vocabulary range")
        order = np.lexsort((np.arange(n), self.time, self.user))
        if n and not np.array_equal(order, np.arange(n)):
            for name in ("user", "item", "time", "value", "event"):
                arr = getattr(self, name)
                if arr is not None:
                    object.__setattr__(self, name, arr[order])
        for name in ("user", "item", "time", "value", "event"):
            arr = getattr(self, name)
            if arr is not None:
                arr.setflags(write=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        user: np.ndarray,
        item: np.ndarray,
        time: np.ndarray | None = None,
        value: np.ndarray | None = None,
        event: np.ndarray | None = None,
        user_vocab: Vocab | None = None,
        item_vocab: Vocab | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Interactions:
        """Build from external-id arrays. Vocabularies are built (in first-seen order) unless given."""
        user = np.asarray(user)
        item = np.asarray(item)
        if user_vocab is None:
            user_vocab = Vocab(_unique_in_order(user), name="user")
        if item_vocab is None:
            item_vocab = Vocab(_unique_in_order(item), name="item")
        n = len(user)
        return cls(
            user=user_vocab.encode(user),
            item=item_vocab.encode(item),
            time=np.zeros(n, np.int64) if time is None else np.asarray(time, dtype=np.int64),
            value=np.ones(n, np.float32) if value is None else np.asarray(value, dtype=np.float32),
            user_vocab=user_vocab,
            item_vocab=item_vocab,
            event=None if event is None else np.asarray(event),
            meta=dict(meta or {}),
        )

    @classmethod
    def from_frame(
        cls,
        df: Any,
        user: str = "user_id",
        item: str = "item_id",
        time: str | None = "timestamp",
        value: str | None = None,
        event: str | None = None,
    ) -> Interactions:
        """Build from a polars (or pandas) DataFrame with the named columns. ``time``/``value``/``event`` may be None."""
        import polars as pl

        if not isinstance(df, pl.DataFrame):
            df = pl.from_pandas(df)
        for col in (user, item, time, value, event):
            if col is not None and col not in df.columns:
                raise DataError(f"missing column {col!r} (have {df.columns})", column=col)
        return cls.from_arrays(
            df[user].to_numpy(),
            df[item].to_numpy(),
            time=None if time is None or time not in df.columns else df[time].to_numpy(),
            value=None if value is None else df[value].to_numpy(),
            event=None if event is None else df[event].to_numpy(),
        )

    def with_rows(self, mask_or_index: np.ndarray, **meta: Any) -> Interactions:
        """A subset of rows sharing this log's vocabularies."""
        sel = np.asarray(mask_or_index)
        return Interactions(
            user=self.user[sel],
            item=self.item[sel],
            time=self.time[sel],
            value=self.value[sel],
            user_vocab=self.user_vocab,
            item_vocab=self.item_vocab,
            event=None if self.event is None else self.event[sel],
            meta={**self.meta, **meta},
        )

    def concat(self, other: Interactions) -> Interactions:
        """Rows of both logs (they must share vocabularies)."""
        if other.user_vocab is not self.user_vocab and other.user_vocab != self.user_vocab:
            raise DataError("cannot concatenate logs with different user vocabularies")
        if other.item_vocab is not self.item_vocab and other.item_vocab != self.item_vocab:
            raise DataError("cannot concatenate logs with different item vocabularies")
        ev = None
        if self.event is not None and other.event is not None:
            ev = np.concatenate([self.event, other.event])
        return Interactions(
            user=np.concatenate([self.user, other.user]),
            item=np.concatenate([self.item, other.item]),
            time=np.concatenate([self.time, other.time]),
            value=np.concatenate([self.value, other.value]),
            user_vocab=self.user_vocab,
            item_vocab=self.item_vocab,
            event=ev,
            meta=dict(self.meta),
        )

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    def __repr__(self) -> str:
        return f"Interactions(n={len(self)}, users={self.n_users}, items={self.n_items})"

    # ------------------------------------------------------------------ views
    def to_csr(self, binary: bool = True) -> sp.csr_array:
        """User x item matrix of shape (n_users+1, n_items+1); row/column 0 are padding.

        ``binary=True`` gives 1.0 per (user, item) pair (duplicates collapse); otherwise values are summed.
        """
        data = np.ones(len(self), np.float32) if binary else self.value.astype(np.float32)
        m = sp.csr_array(
            (data, (self.user, self.item)), shape=(self.n_users + 1, self.n_items + 1), dtype=np.float32
        )
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        m.sort_indices()
        return m

    def user_offsets(self) -> np.ndarray:
        """Offsets of shape (n_users+2,): rows of user u are ``offsets[u]:offsets[u+1]`` (user 0 is empty)."""
        counts = np.bincount(self.user, minlength=self.n_users + 1)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """Time-ordered jagged item sequences: (items (N,), offsets (n_users+2,))."""
        return self.item, self.user_offsets()

    def item_counts(self) -> np.ndarray:
        """Interactions per item, shape (n_items+1,) (index 0 is padding, always 0)."""
        return np.bincount(self.item, minlength=self.n_items + 1)

    def user_counts(self) -> np.ndarray:
        """Interactions per user, shape (n_users+1,)."""
        return np.bincount(self.user, minlength=self.n_users + 1)

    def active_users(self) -> np.ndarray:
        """Dense ids of users with at least one row, ascending."""
        return np.unique(self.user)

    def fingerprint(self) -> str:
        """sha256 over (user, item, time) in external-id-independent dense form."""
        h = hashlib.sha256()
        for arr in (self.user, self.item, self.time):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        h.update(str((self.n_users, self.n_items)).encode())
        return h.hexdigest()


def _unique_in_order(values: np.ndarray) -> list[Any]:
    """Unique values in first-seen order."""
    if len(values) == 0:
        return []
    _, first = np.unique(values, return_index=True)
    return [values[i].item() if isinstance(values[i], np.generic) else values[i] for i in np.sort(first)]
