"""Vocab: external id <-> dense int. Index 0 is reserved for padding, so real ids are 1..len(vocab)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from recforge.errors import UnknownIdError


class Vocab:
    """An ordered, immutable mapping from external ids (str or int) to dense ints starting at 1."""

    def __init__(self, ids: Iterable[Any], name: str = "id"):
        self.name = name
        self._ids: list[Any] = [_plain(x) for x in ids]
        self._index: dict[Any, int] = {x: i + 1 for i, x in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            raise ValueError(f"{name} vocabulary has duplicate ids")

    def __len__(self) -> int:
        """Number of real ids (padding not counted)."""
        return len(self._ids)

    def __contains__(self, external: Any) -> bool:
        return _plain(external) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._ids == other._ids

    def __hash__(self) -> int:
        return hash((self.name, len(self._ids)))

    def __repr__(self) -> str:
        return f"Vocab({self.name}, n={len(self)})"

    @property
    def ids(self) -> list[Any]:
        """External ids in dense order (position i holds dense id i+1)."""
        return list(self._ids)

    def encode(
        self, external: Sequence[Any] | np.ndarray | Any, on_unknown: Literal["raise", "zero"] = "raise"
    ) -> np.ndarray:
        """External ids -> dense ints (int64). Unknown ids raise :class:`UnknownIdError` or map to 0 ("zero")."""
        scalar = np.isscalar(external) or isinstance(external, str)
        values = [external] if scalar else list(external)
        out = np.fromiter((self._index.get(_plain(x), 0) for x in values), dtype=np.int64, count=len(values))
        if on_unknown == "raise" and (out == 0).any():
            missing = [values[i] for i in np.flatnonzero(out == 0)[:5]]
            raise UnknownIdError(f"unknown {self.name}(s): {', '.join(map(repr, missing))}")
        return out

    def canonical(self, external: Any) -> Any | None:
        """The id as this vocabulary holds it, or None when unknown. For ids that arrive as text (JSON, the command
        line), a string "42" also matches an integer id 42, and an integer 42 a string id "42"."""
        if external in self:
            return _plain(external)
        if isinstance(external, str) and external.lstrip("-").isdigit() and int(external) in self:
            return int(external)
        if isinstance(external, int) and str(external) in self:
            return str(external)
        return None

    def decode(self, dense: Sequence[int] | np.ndarray) -> list[Any]:
        """Dense ints -> external ids (0 decodes to ``None``)."""
        return [self._ids[i - 1] if i > 0 else None for i in np.asarray(dense, dtype=np.int64).ravel().tolist()]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ids": self._ids}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocab:
        return cls(data["ids"], name=data.get("name", "id"))


def _plain(x: Any) -> Any:
    """numpy scalars -> Python scalars so that 1, np.int64(1) and "1" behave predictably as dict keys."""
    if isinstance(x, np.generic):
        return x.item()
    return x
