"""SCPR (Lei et al., KDD 2020): conversational path reasoning on the user-item-attribute graph.

- *Reasoning*: only attributes adjacent to the current path are asked — attributes of the candidate items (items that
  carry every confirmed attribute), never asked before. Among them the question goes to the attribute with the largest
  weighted entropy, each candidate weighted by sigma(its scorer score) (the paper's item -> attribute message
  propagation), so likely targets decide what is worth asking.
- *Policy*: a value network Q(s, a) over two actions, ask or recommend, trained in the simulator on the "valid"
  dialogue pairs with the SCPR rewards. Its state by default is the candidate-set size measured against what the
  remaining turns can still recommend — one-hot and scalar ceil(log2(C / (k * turns left))) — plus log C and the turn;
  ``history_features`` adds the paper's s_his (outcome of each past turn) and s_len (one-hot of log2 C),
  ``ranker_features`` the share of ranking mass in the top-k list and the weighted entropy of the question on offer.
- Recommending returns the scorer's top-k candidates.

Deviations from the paper, both measured on LastFM* validation dialogues (SR@15, 500 dialogues; test never used):

- Targets: Q is regressed on observed Monte-Carlo returns (double DQN's bootstrapped targets were unstable here:
  0.68 -> 0.55 from 1,000 to 3,000 dialogues), and every training dialogue is replayed ``branches`` times with the
  other action at one random turn (same target, same opening, so the prefix is identical): the difference of the two
  returns is a paired, low-variance target for Q(s, ask) - Q(s, recommend) (``pair_weight``). An ask-or-recommend
  decision moves the final success by only a few points, which plain returns (epsilon-greedy, 3,000 dialogues) could
  not resolve: 0.74-0.76.
- State: with the paper's s_his + s_len the learned decision stayed a coin flip for mid-size candidate sets (0.73 -
  0.77 with branching, 3,000 dialogues); the budget state learns "ask while the candidates exceed what the remaining
  turns can list, then recommend" and reaches 0.79-0.80 binary / 0.94 multiple choice with 1,500 dialogues (the
  hand-tuned max-entropy rule "recommend once <= 100 candidates": 0.80 binary on the same dialogues; on 2,000
  validation dialogues SCPR 0.77-0.79 with 1,500-6,000 training dialogues, the rule 0.79).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recforge.conversational.data import CRSDataset
from recforge.conversational.episode import DialogueEnv, sample_pairs
from recforge.conversational.policies.base import Policy, binary_entropy, dialogue_features, top_mass
from recforge.conversational.state import Action, DialogueState
from recforge.errors import ConfigError
from recforge.threads import single_thread
from recforge.train.rollout import Episode, ReplayBuffer, play, run_rollouts

log = logging.getLogger(__name__)

ASK, RECOMMEND = 0, 1
#: one-hot of ceil(log2(candidates / slots left)) over RATIO_LOW .. RATIO_LOW + RATIO_BUCKETS - 1
RATIO_LOW, RATIO_BUCKETS = -4, 14


@dataclass(frozen=True)
class SCPRConfig:
    """Value-network hyper-parameters (defaults sized for a few CPU-minutes of training)."""

    hidden: int = 64  # width of the Q network
    gamma: float = 0.99  # discount
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 64  # replay batch
    buffer: int = 20000  # replay capacity (transitions with their observed returns)
    eps_start: float = 0.0  # epsilon-greedy exploration, linearly decayed over the first half of training
    eps_end: float = 0.0  # (off by default: the branched replays already try the other action)
    branches: int = 4  # replays of each training dialogue with the other action at one random turn (paired targets)
    pair_weight: float = 3.0  # weight of the paired loss on Q(s, ask) - Q(s, recommend)
    history_features: bool = False  # add the paper's s_his (past turn outcomes) + s_len (one-hot log2 C) to the state
    ranker_features: bool = False  # add the top-k ranking mass and the weighted entropy of the question on offer

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 <= self.eps_end <= self.eps_start <= 1.0:
            raise ConfigError(f"need 0 <= eps_end <= eps_start <= 1, got {self.eps_end}, {self.eps_start}")
        for name in ("hidden", "batch_size", "buffer"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.branches < 0 or self.pair_weight < 0:
            raise ConfigError(f"branches and pair_weight must be >= 0, got {self.branches}, {self.pair_weight}")


def q_network(n_in: int, hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class SCPRPolicy(Policy):
    """Graph-adjacent weighted-entropy questions + a value network deciding ask vs. recommend."""

    name = "scpr"
    config_class = SCPRConfig
    trainable = True

    def __init__(self, config, dataset, setting, scorer=None):
        super().__init__(config, dataset, setting, scorer)
        self.n_in = RATIO_BUCKETS + 3 + (3 * setting.max_turns + 16) * self.config.history_features \
            + 2 * self.config.ranker_features
        self.q = q_network(self.n_in, self.config.hidden, 2)  # re-initialised (seeded) by fit
        self.epsilon = 0.0
        self._force: tuple[int, int] | None = None  # (turn, action) played instead of the policy's choice (branching)

    def features(self, state: DialogueState, scores: np.ndarray, question_entropy: float) -> np.ndarray:
        """(n_in,): budget state (see module doc), then the optional history and ranker features."""
        slots = self.setting.list_size * (self.setting.max_turns - state.turn + 1)  # items the remaining turns can list
        ratio = np.log2(max(len(scores), 1) / slots)
        parts = [np.zeros(RATIO_BUCKETS, dtype=np.float32),
                 [ratio / 8, np.log1p(len(scores)) / np.log1p(self.dataset.n_items), state.turn / self.setting.max_turns]]
        parts[0][int(np.clip(np.ceil(ratio), RATIO_LOW, RATIO_LOW + RATIO_BUCKETS - 1)) - RATIO_LOW] = 1.0
        if self.config.history_features:
            parts.append(dialogue_features(state, self.setting))
        if self.config.ranker_features:
            parts.append([top_mass(scores, self.setting.list_size), question_entropy])
        return np.concatenate(parts).astype(np.float32)

    def act(self, state: DialogueState) -> Action:
        return self.decide(state)[0]

    def decide(self, state: DialogueState) -> tuple[Action, tuple[np.ndarray, int, bool]]:
        """The action and its memo (features (n_in,), ASK or RECOMMEND, whether asking was possible)."""
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
        if ask is not None and self._force is not None and self._force[0] == state.turn:
            choice = self._force[1]
        memo = (feats, choice, ask is not None)
        return (ask if choice == ASK else self.top_items(cands, scores)), memo

    def fit(self, dataset: CRSDataset, episodes: int, seed: int = 0) -> dict[str, float]:
        """Learn Q on ``episodes`` simulated dialogues over the "valid" pairs (cycling over them when ``episodes`` is
        larger), played through :func:`recforge.train.rollout.run_rollouts`: epsilon-greedy, Monte-Carlo targets, and
        (``branches``) each dialogue replayed with the other action at one random turn where asking was possible, which
        gives a paired target for Q(s, ask) - Q(s, recommend)."""
        cfg = self.config
        users, targets = sample_pairs(dataset, "valid", episodes, seed)
        gen = np.random.default_rng(seed)
        order = np.concatenate([gen.permutation(len(users)) for _ in range(-(-max(episodes, 1) // len(users)))])[:episodes]
        torch.manual_seed(seed)
        self.q = q_network(self.n_in, cfg.hidden, 2)  # fresh, seeded weights: fit is reproducible
        opt = torch.optim.Adam(self.q.parameters(), lr=cfg.lr)
        replay: ReplayBuffer[tuple[np.ndarray, int, float]] = ReplayBuffer(cfg.buffer)  # (features, action, MC return)
        pairs: ReplayBuffer[tuple[np.ndarray, float]] = ReplayBuffer(cfg.buffer)  # (state, G_ask - G_recommend)
        env = DialogueEnv(dataset, self.setting)
        rng = np.random.default_rng(seed)
        counts = {"updates": 0, "successes": 0}

        def rng_of(n: int, _: tuple[int, int]) -> np.random.Generator:
            return np.random.default_rng([seed, 1, int(order[n]), n // len(users)])

        def before(n: int) -> None:
            self.epsilon = max(cfg.eps_end, cfg.eps_start - (cfg.eps_start - cfg.eps_end) * n / (0.5 * len(order)))

        def update(n: int, task: tuple[int, int], episode: Episode) -> None:
            counts["successes"] += episode.outcome.turn > 0
            trace = episode.transitions
            returns = episode.returns(cfg.gamma)
            replay.extend((t.memo[0], t.memo[1], g) for t, g in zip(trace, returns))
            steps = len(trace)
            for t in rng.permutation([i for i, tr in enumerate(trace) if tr.memo[2]])[: cfg.branches]:
                t = int(t)  # transition t is turn t + 1
                other = 1 - trace[t].memo[1]
                self._force = (t + 1, other)
                branch = play(env, self, task, rng_of(n, task))
                self._force = None
                steps_b = branch.transitions
                if len(steps_b) > t and np.array_equal(steps_b[t].memo[0], trace[t].memo[0]):  # same prefix: a true pair
                    b_returns = branch.returns(cfg.gamma)
                    replay.extend((b.memo[0], b.memo[1], g) for b, g in zip(steps_b[t:], b_returns[t:]))
                    diff = b_returns[t] - returns[t]
                    pairs.add((trace[t].memo[0], diff if other == ASK else -diff))
                    steps += len(steps_b) - t
            for _ in range(steps):
                if len(replay) >= cfg.batch_size:
                    self._update(replay, pairs, opt, rng)
                    counts["updates"] += 1

        tasks = [(int(users[e]), int(targets[e])) for e in order]
        self.training = True
        try:
            with single_thread():
                run_rollouts(env, self, tasks, rng_of, update, before)
        finally:
            self.training, self._force = False, None
        stats = {"episodes": float(len(order)), "train_success": counts["successes"] / max(1, len(order)),
                 "updates": float(counts["updates"]), "pairs": float(len(pairs))}
        log.info("SCPR value network: %s", stats)
        return stats

    def _update(self, replay: ReplayBuffer, pairs: ReplayBuffer, opt: torch.optim.Optimizer,
                rng: np.random.Generator) -> None:
        """One regression step of Q(s, a) towards the observed discounted return, plus (paired samples) of
        Q(s, ask) - Q(s, recommend) towards the observed difference of the two branches' returns."""
        f, a, g = (np.asarray(x) for x in zip(*replay.sample(self.config.batch_size, rng)))
        q = self.q(torch.from_numpy(f.astype(np.float32))).gather(1, torch.from_numpy(a).view(-1, 1)).squeeze(1)
        loss = nn.functional.smooth_l1_loss(q, torch.from_numpy(g.astype(np.float32)))
        if len(pairs) and self.config.pair_weight > 0:
            f, d = (np.asarray(x) for x in zip(*pairs.sample(self.config.batch_size, rng)))
            q = self.q(torch.from_numpy(f.astype(np.float32)))
            loss = loss + self.config.pair_weight * nn.functional.smooth_l1_loss(
                q[:, ASK] - q[:, RECOMMEND], torch.from_numpy(d.astype(np.float32)))
        opt.zero_grad()
        loss.backward()
        opt.step()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"q.{k}": v for k, v in self.q.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.q.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("q.")})

