"""Conversational data: (user, target item) dialogue pairs per split, over the shared vocabularies.

A conversational recommender is trained and evaluated on *dialogues about a hidden target*: a user wants one item and
the system finds it by asking about attributes and recommending lists. :class:`DialoguePairs` holds those (user, target)
pairs per split, with dense 1-based ids (0 = padding) over a user and an item :class:`~recforge.data.vocab.Vocab` — the
same convention as :class:`~recforge.data.interactions.Interactions`, so a split of an interaction log becomes dialogue
pairs with :meth:`DialoguePairs.from_split` and an item catalogue aligned to the same item vocabulary describes the
targets. The SCPR protocol uses the splits as follows:

- ``"train"`` pairs fit the item/attribute scorer,
- ``"valid"`` pairs are the targets of simulated policy-training dialogues,
- ``"test"`` pairs are the evaluation dialogues.

Saved as ``dialogues.json`` (vocabularies) + ``dialogues.safetensors`` (the id arrays); never pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from safetensors.numpy import load_file, save_file

from recforge.data.split import Split
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError

SplitName = Literal["train", "valid", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "valid", "test")
FORMAT = "recforge.DialoguePairs/1"


@dataclass(frozen=True, eq=False)
class DialoguePairs:
    """(user, target) pairs per split. ``splits[s] = (users (P,), items (P,))``, int64 dense ids >= 1."""

    user_vocab: Vocab
    item_vocab: Vocab
    splits: dict[str, tuple[np.ndarray, np.ndarray]]

    def __post_init__(self) -> None:
        for s, (u, i) in self.splits.items():
            if s not in SPLITS:
                raise DataError(f"unknown dialogue split {s!r} (expected one of {list(SPLITS)})")
            if len(u) != len(i):
                raise DataError(f"split {s!r}: {len(u)} users but {len(i)} items")
            if len(u) and (u.min() < 1 or u.max() > len(self.user_vocab) or i.min() < 1 or i.max() > len(self.item_vocab)):
                raise DataError(f"split {s!r} has ids out of range (users 1..{len(self.user_vocab)}, "
                                f"items 1..{len(self.item_vocab)})")

    @classmethod
    def from_split(cls, split: Split) -> DialoguePairs:
        """Every (user, item) event of each part of an interaction split becomes a dialogue pair of that part."""
        parts = {"train": split.train, "valid": split.valid, "test": split.test}
        splits = {s: (p.user.astype(np.int64), p.item.astype(np.int64)) for s, p in parts.items() if p is not None}
        return cls(split.train.user_vocab, split.train.item_vocab, splits)

    def pairs(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(users (P,), targets (P,)) of a split, dense ids."""
        if split not in self.splits:
            raise ConfigError(f"unknown CRS split {split!r} (expected one of {sorted(self.splits)})")
        return self.splits[split]

    def keep_targets(self, ok: np.ndarray) -> DialoguePairs:
        """Only the pairs whose target ``t`` has ``ok[t]``; ``ok`` is boolean (n_items+1,) over dense item ids."""
        return DialoguePairs(self.user_vocab, self.item_vocab, {s: (u[ok[i]], i[ok[i]]) for s, (u, i) in self.splits.items()})

    def sizes(self) -> dict[str, int]:
        """Pairs per split."""
        return {s: len(u) for s, (u, _) in self.splits.items()}

    def save(self, path: str | Path) -> Path:
        """Write ``dialogues.json`` + ``dialogues.safetensors`` into folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {f"{s}_{k}": a.astype(np.int64) for s, pair in self.splits.items() for k, a in zip(("users", "items"), pair)}
        save_file(arrays, str(path / "dialogues.safetensors"))
        doc = {"format": FORMAT, "user_vocab": self.user_vocab.to_json(), "item_vocab": self.item_vocab.to_json(),
               "splits": sorted(self.splits)}
        (path / "dialogues.json").write_text(json.dumps(doc), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> DialoguePairs:
        """Inverse of :meth:`save`; DataError for a folder that is not one."""
        path = Path(path)
        doc_file, arr_file = path / "dialogues.json", path / "dialogues.safetensors"
        if not doc_file.is_file() or not arr_file.is_file():
            raise DataError("not saved dialogue pairs (need dialogues.json and dialogues.safetensors)", path=str(path))
        try:
            doc = json.loads(doc_file.read_text(encoding="utf-8"))
            arrays = load_file(str(arr_file))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"corrupt dialogue pairs: {exc}", path=str(doc_file)) from None
        except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
            raise DataError(f"corrupt dialogue pairs: {exc}", path=str(arr_file)) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DataError(f"not a {FORMAT} file", path=str(doc_file))
        try:
            splits = {s: (arrays[f"{s}_users"], arrays[f"{s}_items"]) for s in doc["splits"]}
        except KeyError as exc:
            raise DataError(f"corrupt dialogue pairs: missing array {exc}", path=str(arr_file)) from None
        return cls(Vocab.from_json(doc["user_vocab"]), Vocab.from_json(doc["item_vocab"]), splits)
