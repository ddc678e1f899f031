"""User simulator with a hidden target item (the SCPR/UNICORN protocol, seeded).

The user opens the dialogue with one attribute of the target (drawn with the episode's generator), answers attribute
questions truthfully from the target's attributes — yes/no in the binary setting, "these of the offered ones" in the
multiple-choice setting — and accepts a recommendation exactly when the target is in the list.
"""

from __future__ import annotations

import numpy as np

from recforge.conversational.data import CRSDataset
from recforge.conversational.state import Ask, CRSSetting, Recommend
from recforge.errors import ConfigError


class UserSimulator:
    """Answers for one hidden ``target`` item of ``dataset``."""

    def __init__(self, dataset: CRSDataset, setting: CRSSetting, target: int, rng: np.random.Generator):
        self.setting = setting
        self.target = int(target)
        self.target_attrs = set(dataset.attrs_of(self.target).tolist())
        if not self.target_attrs:
            raise ConfigError(f"target item {target} has no attributes; the simulator cannot open the dialogue")
        self.rng = rng

    def opening(self) -> int:
        """The attribute the user states first (one of the target's, uniformly at random)."""
        return int(self.rng.choice(sorted(self.target_attrs)))

    def answer(self, question: Ask) -> tuple[int, ...]:
        """The asked attributes the target has (empty = "no" to all)."""
        limit = self.setting.question_size
        if not 1 <= len(question.attributes) <= limit:
            raise ConfigError(f"a {self.setting.mode} question offers 1..{limit} attributes, got {len(question.attributes)}")
        return tuple(a for a in question.attributes if a in self.target_attrs)

    def rank_of_target(self, rec: Recommend) -> int | None:
        """1-based rank of the target in the list, or ``None`` (rejection)."""
        if not 1 <= len(rec.items) <= self.setting.list_size:
            raise ConfigError(f"a recommendation has 1..{self.setting.list_size} items, got {len(rec.items)}")
        for r, i in enumerate(rec.items, start=1):
            if i == self.target:
                return r
        return None
