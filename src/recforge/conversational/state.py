"""Dialogue state and actions of a multi-round conversational recommendation episode.

The state is what both sides can see: attributes the user accepted / rejected, items the user rejected, the candidate
set (items that have every accepted attribute and were not rejected) and the turn counter. Policies read it and return an
action; only the episode loop mutates it (through :meth:`DialogueState.apply_answer` / :meth:`apply_rejection`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from recforge.config import check_choices
from recforge.errors import ConfigError

#: per-turn outcome codes kept in ``DialogueState.history`` (the policies' state features read them)
OUTCOMES = ("ask_accept", "ask_reject", "rec_reject")


@dataclass(frozen=True)
class Ask:
    """Ask about attribute(s): one in the binary setting, up to ``choices`` of one group in the multiple-choice one."""

    attributes: tuple[int, ...]


@dataclass(frozen=True)
class Recommend:
    """Recommend a ranked list of item ids (length <= the setting's ``list_size``)."""

    items: tuple[int, ...]


Action = Ask | Recommend


@dataclass(frozen=True)
class EpisodeOutcome:
    """How a finished dialogue ended: success turn (0 = failure) and rank of the target in the accepted list (0 =
    failure)."""

    turn: int
    rank: int


@dataclass(frozen=True)
class CRSSetting:
    """Rules of the game shared by simulator, loop and policies."""

    mode: Literal["binary", "multiple_choice"] = "binary"  # one yes/no attribute per question, or a menu of attributes
    max_turns: int = 15  # T: the episode fails after this many turns
    list_size: int = 10  # k: items per recommendation
    choices: int = 5  # attributes offered per multiple-choice question
    filter_rejected: bool = False  # also drop items with a rejected attribute (SCPR's LastFM* protocol does not)

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("max_turns", "list_size", "choices"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def question_size(self) -> int:
        return 1 if self.mode == "binary" else self.choices


@dataclass
class DialogueState:
    """Everything known about one dialogue. ``candidates`` is a boolean mask over items, shape (n_items,)."""

    user: int
    candidates: np.ndarray
    accepted: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    rejected_items: list[int] = field(default_factory=list)
    turn: int = 0
    history: list[str] = field(default_factory=list)

    @property
    def asked(self) -> set[int]:
        return set(self.accepted) | set(self.rejected)

    def candidate_items(self) -> np.ndarray:
        """Candidate item ids, shape (C,)."""
        return np.flatnonzero(self.candidates)

    def apply_answer(self, asked: tuple[int, ...], accepted: tuple[int, ...], item_attrs_csc, filter_rejected: bool) -> None:
        """Record an answer and narrow the candidates to items having every newly accepted attribute."""
        acc = set(accepted)
        for a in asked:
            (self.accepted if a in acc else self.rejected).append(int(a))
        for a in accepted:
            self.candidates &= _column_mask(item_attrs_csc, a, len(self.candidates))
        if filter_rejected:
            for a in asked:
                if a not in acc:
                    self.candidates &= ~_column_mask(item_attrs_csc, a, len(self.candidates))
        self.history.append("ask_accept" if accepted else "ask_reject")

    def apply_rejection(self, items: tuple[int, ...]) -> None:
        """The user rejected a recommended list: drop those items from the candidates."""
        self.rejected_items.extend(int(i) for i in items)
        self.candidates[list(items)] = False
        self.history.append("rec_reject")


def _column_mask(csc, attr: int, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[csc.indices[csc.indptr[attr] : csc.indptr[attr + 1]]] = True
    return mask
