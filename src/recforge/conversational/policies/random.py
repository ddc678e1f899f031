"""Random baseline: each turn, ask a random attribute of the candidates or recommend random candidates."""

from __future__ import annotations

from dataclasses import dataclass

from recforge.conversational.policies.base import Policy
from recforge.conversational.state import Action, DialogueState, Recommend
from recforge.errors import ConfigError


@dataclass(frozen=True)
class RandomPolicyConfig:
    """Coin-flip policy."""

    ask_prob: float = 0.5  # probability of asking (else recommend) while something is askable

    def __post_init__(self) -> None:
        if not 0.0 <= self.ask_prob <= 1.0:
            raise ConfigError(f"ask_prob must be in [0, 1], got {self.ask_prob}")


class RandomPolicy(Policy):
    """Asks a uniformly random askable attribute with probability ``ask_prob``, else recommends ``list_size`` random
    candidates. The floor every learned policy must beat."""

    name = "random"
    config_class = RandomPolicyConfig
    needs_scorer = False

    def act(self, state: DialogueState) -> Action:
        last_turn = state.turn >= self.setting.max_turns
        if not last_turn and self.rng.random() < self.config.ask_prob:
            mass, _ = self.attr_mass(state)
            ok = self.askable(state, mass)
            ask = self.question(self.rng.random(len(ok)), ok)
            if ask is not None:
                return ask
        cands = state.candidate_items()
        k = min(self.setting.list_size, len(cands))
        return Recommend(tuple(int(i) for i in self.rng.choice(cands, size=k, replace=False)))



