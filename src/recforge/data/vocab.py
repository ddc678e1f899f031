"""Vocab: external id <-> dense int. Index 0 is reserved for padding, so real ids are 1..len(vocab).

The id rule (the one place it is decided; readers, the CLI and serving all call it): an external id is a string or an
integer, compared exactly. A string stands for an integer only when it is *canonical ASCII decimal* — ``0`` or a
non-zero ASCII digit followed by ASCII digits, no sign, no leading zero, no spaces, and below 2**63
(:func:`is_canonical_int`). So ``"7"`` and ``7`` are one id, while ``"07"``, ``"007"``, ``"+7"``, ``" 7"``,
``"٧"`` (Arabic-Indic), ``"७"`` (Devanagari), ``"²"`` and ``"7.0"`` are strings of their own, never user 7.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from recforge.errors import UnknownIdError

#: integer ids live in [0, 2**63): they fit an int64 column, a SQLite INTEGER and a numpy array.
MAX_INT_ID = 2**63 - 1
_CANONICAL_INT = re.compile(r"0|[1-9][0-9]{0,18}", flags=re.ASCII)


def is_canonical_int(text: str) -> bool:
    """True when ``text`` is an integer id written canonically: ASCII digits only, no sign, no leading zero,
    at most :data:`MAX_INT_ID`. ``"7"`` yes; ``"07"``, ``"-7"``, ``"+7"``, ``" 7"``, ``"٧"``, ``"²"``, ``"7.0"`` no."""
    return _CANONICAL_INT.fullmatch(text) is not None and int(text) <= MAX_INT_ID


def int_id_text(value: Any) -> str | None:
    """The canonical text of an integer id (``7`` -> ``"7"``), or None when ``value`` is not an integer id
    (booleans, negative integers and integers above :data:`MAX_INT_ID` are not)."""
    if isinstance(value, np.integer):
        value = value.item()
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT_ID:
        return str(value)
    return None


def id_variants(value: Any) -> list[Any]:
    """The forms under which ``value`` may be held by a vocabulary, exact form first: ``"7"`` -> ``["7", 7]``,
    ``7`` -> ``[7, "7"]``, ``"07"`` -> ``["07"]``. This is how ids that arrive as text (JSON, the command line) meet a
    vocabulary whose ids are integers, and the reverse."""
    value = _plain(value)
    if isinstance(value, str):
        return [value, int(value)] if is_canonical_int(value) else [value]
    text = int_id_text(value)
    return [value] if text is None else [value, text]


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
        """The id as this vocabulary holds it, or None when unknown, by the module's id rule (:func:`id_variants`):
        a string ``"42"`` also matches an integer id 42 and an integer 42 a string id ``"42"``; ``"042"`` or
        ``"٤٢"`` match only themselves."""
        for form in id_variants(external):
            # only strings and integers are ids (True == 1 == 1.0 as dict keys)
            if isinstance(form, str | int) and not isinstance(form, bool) and form in self._index:
                return form
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
