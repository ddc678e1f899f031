"""SCPR (Lei et al., KDD 2020): conversational path reasoning on the user-item-attribute graph.

- *Reasoning*: only attributes adjacent to the current path are asked — attributes of the candidate items (items that
  carry every confirmed attribute), never asked before. Among them the question goes to the attribute with the largest
  weighted entropy, each candidate weighted by sigma(its scorer score), so likely targets decide what is worth asking.
- *Policy*: a value network Q(s, a) over two actions, ask or recommend, on the dialogue state (turn outcomes +
  candidate-set size, as in SCPR, plus the share of ranking mass in the top-k list, the weighted entropy of the
  question on offer, log candidate count and turn), trained in the simulator on the "valid" dialogue pairs with the
  SCPR rewards and epsilon-greedy exploration. Deviation from the paper: Q is regressed on observed Monte-Carlo
  returns from a replay buffer instead of DQN's bootstrapped TD targets — with our features, double DQN was unstable
  (SR@15 on LastFM* fell from 0.68 to 0.55 when training went from 1,000 to 3,000 dialogues).
- Recommending returns the scorer's top-k candidates.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recforge.conversational.data import CRSDataset
from recforge.conversational.policies.base import (
    REWARDS,
    EpisodeOutcome,
    Policy,
    binary_entropy,
    dialogue_features,
    top_mass,
)
from recforge.conversational.state import Action, Ask, DialogueState
from recforge.errors import ConfigError
from recforge.threads import single_thread

log = logging.getLogger(__name__)

ASK, RECOMMEND = 0, 1


@dataclass(frozen=True)
class SCPRConfig:
    """Value-network hyper-parameters (defaults sized for a few CPU-minutes of training)."""

    hidden: int = 64  # width of the Q network
    gamma: float = 0.99  # discount
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 64  # replay batch
    buffer: int = 20000  # replay capacity (transitions with their observed returns)
    eps_start: float = 1.0  # epsilon-greedy exploration, linearly decayed over the first half of training
    eps_end: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 <= self.eps_end <= self.eps_start <= 1.0:
            raise ConfigError(f"need 0 <= eps_end <= eps_start <= 1, got {self.eps_end}, {self.eps_start}")
        for name in ("hidden", "batch_size", "buffer"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


def q_network(n_in: int, hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class SCPRPolicy(Policy):
    """Graph-adjacent weighted-entropy questions + a value network deciding ask vs. recommend."""

    name = "scpr"
    config_class = SCPRConfig
    trainable = True

    def __init__(self, config, dataset, setting, scorer=None):
        super().__init__(config, dataset, setting, scorer)
        self.n_in = 3 * setting.max_turns + 16 + 4
        self.q = q_network(self.n_in, self.config.hidden, 2)  # re-initialised (seeded) by fit
        self.epsilon = 0.0
        self._trace: list[tuple[np.ndarray, int, float]] = []

    def features(self, state: DialogueState, scores: np.ndarray, question_entropy: float) -> np.ndarray:
        """(n_in,) = dialogue features + top-k ranking mass + weighted entropy of the question on offer."""
        extra = [top_mass(scores, self.setting.list_size), question_entropy,
                 np.log1p(len(scores)) / np.log1p(self.dataset.n_items), state.turn / self.setting.max_turns]
        return np.concatenate([dialogue_features(state, self.setting), extra]).astype(np.float32)

    def act(self, state: DialogueState) -> Action:
        cands, scores = self.candidate_scores(state)
        ask, best = None, 0.0
        if state.turn < self.setting.max_turns and len(cands) > 1:
            weights = np.zeros(self.dataset.n_items)
            weights[cands] = 1.0 / (1.0 + np.exp(-scores))
            mass, total = self.attr_mass(state, weights)
            entropy = binary_entropy(mass / total)
            ask = self.question(entropy, self.askable(state, mass))
            best = float(entropy[ask.attributes[0]]) if ask is not None else 0.0
        feats = self.features(state, scores, best)
        if ask is None:
            choice = RECOMMEND
        elif self.training and self.rng.random() < self.epsilon:
            choice = int(self.rng.integers(2))
        else:
            with torch.no_grad():
                choice = int(torch.argmax(self.q(torch.from_numpy(feats))))
        if self.training:
            self._trace.append((feats, choice, 0.0))
        return ask if choice == ASK else self.top_items(cands, scores)

    def observe(self, state: DialogueState, action: Action, accepted: tuple[int, ...] | None) -> None:
        if self.training:
            reward = (REWARDS["ask_accept"] if accepted else REWARDS["ask_reject"]) if isinstance(action, Ask) \
                else REWARDS["rec_reject"]
            f, a, _ = self._trace[-1]
            self._trace[-1] = (f, a, reward)

    def end(self, state: DialogueState, outcome: EpisodeOutcome) -> None:
        if self.training and self._trace:
            f, a, r = self._trace[-1]
            self._trace[-1] = (f, a, REWARDS["rec_accept"] if outcome.turn else r + REWARDS["quit"])

    def fit(self, dataset: CRSDataset, episodes: int, seed: int = 0) -> dict[str, float]:
        """Learn Q on ``episodes`` simulated dialogues over the "valid" pairs (epsilon-greedy, Monte-Carlo targets)."""
        from recforge.conversational.episode import (  # the loop imports policies.base
            run_episode,
            sample_pairs,
        )

        cfg = self.config
        users, targets = sample_pairs(dataset, "valid", episodes, seed)
        order = np.random.default_rng(seed).permutation(len(users))
        torch.manual_seed(seed)
        self.q = q_network(self.n_in, cfg.hidden, 2)  # fresh, seeded weights: fit is reproducible
        opt = torch.optim.Adam(self.q.parameters(), lr=cfg.lr)
        replay: deque[tuple[np.ndarray, int, float]] = deque(maxlen=cfg.buffer)
        csc = dataset.item_attrs.tocsc()
        rng = np.random.default_rng(seed)
        updates, successes = 0, 0
        self.training = True
        try:
            with single_thread():
                for n, e in enumerate(order):
                    self.epsilon = max(cfg.eps_end, cfg.eps_start - (cfg.eps_start - cfg.eps_end) * n / (0.5 * len(order)))
                    self._trace = []
                    out = run_episode(self, dataset, self.setting, int(users[e]), int(targets[e]),
                                      np.random.default_rng([seed, 1, int(e)]), csc)
                    successes += out.turn > 0
                    ret = 0.0
                    for f, a, r in reversed(self._trace):
                        ret = r + cfg.gamma * ret
                        replay.append((f, a, ret))
                    for _ in range(len(self._trace)):
                        if len(replay) >= cfg.batch_size:
                            self._update(replay, opt, rng)
                            updates += 1
        finally:
            self.training = False
            self._trace = []
        stats = {"episodes": float(len(order)), "train_success": successes / max(1, len(order)), "updates": float(updates)}
        log.info("SCPR value network: %s", stats)
        return stats

    def _update(self, replay: deque, opt: torch.optim.Optimizer, rng: np.random.Generator) -> None:
        """One regression step of Q(s, a) towards the observed discounted return."""
        idx = rng.integers(0, len(replay), self.config.batch_size)
        f, a, g = (np.asarray(x) for x in zip(*(replay[i] for i in idx)))
        q = self.q(torch.from_numpy(f.astype(np.float32))).gather(1, torch.from_numpy(a).view(-1, 1)).squeeze(1)
        loss = nn.functional.smooth_l1_loss(q, torch.from_numpy(g.astype(np.float32)))
        opt.zero_grad()
        loss.backward()
        opt.step()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"q.{k}": v for k, v in self.q.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.q.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("q.")})
