"""Max-entropy baseline: ask the attribute that splits the candidate set most evenly; recommend by a fixed rule."""

from __future__ import annotations

from dataclasses import dataclass

from recforge.conversational.policies.base import Policy, binary_entropy
from recforge.conversational.state import Action, DialogueState
from recforge.errors import ConfigError


@dataclass(frozen=True)
class MaxEntropyConfig:
    """The rule for when to recommend."""

    recommend_below: int = 10  # recommend once the candidate set has at most this many items
    recommend_every: int = 0  # also recommend every n-th turn (0 = never by this rule)
    recommend_prob: float = 0.3  # also recommend with this probability each turn (EAR's "certain probability" rule)

    def __post_init__(self) -> None:
        if self.recommend_below < 1:
            raise ConfigError(f"recommend_below must be >= 1, got {self.recommend_below}")
        if self.recommend_every < 0:
            raise ConfigError(f"recommend_every must be >= 0, got {self.recommend_every}")
        if not 0.0 <= self.recommend_prob <= 1.0:
            raise ConfigError(f"recommend_prob must be in [0, 1], got {self.recommend_prob}")


class MaxEntropyPolicy(Policy):
    """Asks the attribute with the largest answer entropy over the (unweighted) candidate items. Recommends the
    scorer's top-k candidates when few candidates are left, every ``recommend_every`` turns, with probability
    ``recommend_prob``, on the last turn, or when
    no attribute is informative any more."""

    name = "max-entropy"
    config_class = MaxEntropyConfig

    def act(self, state: DialogueState) -> Action:
        cands, scores = self.candidate_scores(state)
        every = self.config.recommend_every
        if (len(cands) <= self.config.recommend_below or state.turn >= self.setting.max_turns
                or (every and state.turn % every == 0) or self.rng.random() < self.config.recommend_prob):
            return self.top_items(cands, scores)
        mass, total = self.attr_mass(state)
        ask = self.question(binary_entropy(mass / total), self.askable(state, mass) & (mass < total))
        return ask if ask is not None else self.top_items(cands, scores)
