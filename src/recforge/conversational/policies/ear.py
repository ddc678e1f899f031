"""EAR (Lei et al., WSDM 2020): Estimation - Action - Reflection.

- *Estimation*: the attribute-aware FM (:mod:`recforge.conversational.scorer`) scores items and attributes given the
  user and the confirmed attributes.
- *Action*: a policy network over M+1 actions — ask one of the M attributes the FM prefers for this user and path
  (among attributes that at least one candidate has: with thousands of attributes, certain "no"s would crowd out every
  useful question; unlike SCPR, they are ranked by preference, not by weighted entropy), or recommend the top-k.
  Its state is EAR's: the answer entropy of each of the M attributes over the candidates, the FM preference of each,
  the turn outcomes and the candidate-set size. It is pre-trained to imitate the max-entropy rule and then trained with
  REINFORCE (moving-average baseline) in the simulator on the "valid" pairs, with the SCPR rewards.
- *Reflection*: after a rejected list the session's user vector takes a gradient step of the BPR-style loss
  ``sum log(1 + exp(s(i)))`` over the rejected items, pushing items like them down for the rest of the dialogue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recforge.conversational.data import CRSDataset
from recforge.conversational.episode import DialogueEnv, sample_pairs
from recforge.conversational.policies.base import Policy, binary_entropy, dialogue_features
from recforge.conversational.state import Action, Ask, DialogueState
from recforge.errors import ConfigError
from recforge.threads import single_thread
from recforge.train.rollout import Episode, run_rollouts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EARConfig:
    """Policy-network and training hyper-parameters."""

    n_attrs: int = 10  # M: attributes the policy chooses among (the FM's top-M unasked ones)
    hidden: int = 64  # policy-network width
    lr: float = 1e-3  # Adam learning rate of the imitation pre-training
    rl_lr: float = 1e-4  # Adam learning rate of REINFORCE (small: stay near the pre-trained policy, improve slowly)
    gamma: float = 0.99  # return discount
    pretrain_fraction: float = 0.5  # share of training episodes spent imitating the max-entropy rule
    entropy_bonus: float = 0.01  # keeps the policy from collapsing onto one action early in REINFORCE
    reflection_lr: float = 0.05  # step size of the reflection update of the session user vector
    recommend_below: int = 10  # the imitated rule recommends when at most this many candidates are left ...
    recommend_every: int = 2  # ... and every n-th turn (0 = never by this clause)

    def __post_init__(self) -> None:
        for name in ("n_attrs", "hidden", "recommend_below"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.pretrain_fraction <= 1.0:
            raise ConfigError(f"pretrain_fraction must be in [0, 1], got {self.pretrain_fraction}")
        if self.reflection_lr < 0:
            raise ConfigError(f"reflection_lr must be >= 0, got {self.reflection_lr}")


class EARPolicy(Policy):
    """FM estimation + policy-gradient action choice + reflection on rejected items."""

    name = "ear"
    config_class = EARConfig
    trainable = True

    def __init__(self, config, dataset, setting, scorer=None):
        super().__init__(config, dataset, setting, scorer)
        m = self.config.n_attrs
        self.n_in = 2 * m + 3 * setting.max_turns + 16
        self.net = self._network()  # re-initialised (seeded) by fit
        self.imitate = False  # True during pre-training: play the max-entropy rule
        self.user_vec: np.ndarray | None = None

    def _network(self) -> nn.Module:
        m, hidden = self.config.n_attrs, self.config.hidden
        return nn.Sequential(nn.Linear(self.n_in, hidden), nn.ReLU(), nn.Linear(hidden, m + 1))

    def begin(self, state: DialogueState, rng: np.random.Generator) -> None:
        super().begin(state, rng)
        self.user_vec = self.scorer.user_vector(state.user)

    def _candidates(self, state: DialogueState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(top-M unasked attributes by FM preference (M,), their entropy (M,), their softmaxed preference (M,))."""
        m = self.config.n_attrs
        query = self.scorer.query(state.user, state.accepted, self.user_vec)
        pref = self.scorer.attr_scores(query, np.arange(self.dataset.n_attrs))
        mass, total = self.attr_mass(state)
        # attributes no candidate has are certain "no"s: never offered (with thousands of attributes they would
        # crowd out every useful question); the rest compete on FM preference, not on graph position
        pref[mass <= 0] = -np.inf
        asked = state.accepted + state.rejected
        if asked:
            pref[asked] = -np.inf
        top = np.argpartition(-pref, m - 1)[:m]
        top = top[np.argsort(-pref[top], kind="stable")]
        ent = binary_entropy(mass[top] / total) * (mass[top] < total) * np.isfinite(pref[top])
        finite = np.where(np.isfinite(pref[top]), pref[top], -1e9)
        p = np.exp(finite - finite.max())
        return top, ent.astype(np.float32), (p / p.sum()).astype(np.float32)

    def act(self, state: DialogueState) -> Action:
        return self.decide(state)[0]

    def decide(self, state: DialogueState) -> tuple[Action, tuple[np.ndarray, int, int]]:
        """The action and its memo (features (n_in,), chosen index in 0..M, imitation target: the rule's index, -1
        on a forced last turn, which is not the network's choice)."""
        cands, scores = self.candidate_scores(state, self.user_vec)
        attrs, ent, pref = self._candidates(state)
        feats = np.concatenate([ent, pref, dialogue_features(state, self.setting)]).astype(np.float32)
        m = self.config.n_attrs
        # the max-entropy rule: imitation target during pre-training
        every = self.config.recommend_every
        rec = len(cands) <= self.config.recommend_below or ent.max() <= 0 or (every and state.turn % every == 0)
        rule = m if rec else int(np.argmax(ent))
        with torch.no_grad():
            logits = self.net(torch.from_numpy(feats))
        if self.imitate:
            choice = rule
        else:
            # act with the learned stochastic policy (episode generator: reproducible). Its argmax is a poor summary:
            # asking is spread over M actions, so argmax picked "recommend" at every turn on the menu setting
            probs = torch.softmax(logits.double(), -1).numpy()
            choice = int(self.rng.choice(m + 1, p=probs / probs.sum()))
        forced = state.turn >= self.setting.max_turns
        if forced:
            choice = m  # the last turn can only succeed by recommending
        memo = (feats, choice, -1 if forced else rule)
        if choice == m:
            return self.top_items(cands, scores), memo
        if self.setting.question_size == 1:
            return Ask((int(attrs[choice]),)), memo
        ok = np.zeros(self.dataset.n_attrs, dtype=bool)
        ok[attrs] = True
        values = np.full(self.dataset.n_attrs, -np.inf)
        values[attrs] = ent + 1e-3 * pref  # the chosen attribute first, then the most informative others
        values[attrs[choice]] = np.inf
        return self.question(values, ok), memo

    def observe(self, state: DialogueState, action: Action, accepted: tuple[int, ...] | None) -> None:
        if accepted is None and self.config.reflection_lr > 0:
            self._reflect(np.asarray(state.rejected_items[-len(action.items):]), state)

    def _reflect(self, rejected: np.ndarray, state: DialogueState) -> None:
        """One gradient step on sum_i log(1 + exp(s(i))) over rejected items i, w.r.t. the session user vector."""
        query = self.scorer.query(state.user, state.accepted, self.user_vec)
        s = self.scorer.item_scores(query, rejected)
        grad = (self.scorer.item[rejected] * (1.0 / (1.0 + np.exp(-s)))[:, None]).mean(0)
        self.user_vec = self.user_vec - self.config.reflection_lr * grad

    def fit(self, dataset: CRSDataset, episodes: int, seed: int = 0) -> dict[str, float]:
        """Imitation pre-training, then REINFORCE, over ``episodes`` dialogues on the "valid" pairs (played through
        :func:`recforge.train.rollout.run_rollouts`; one update per dialogue)."""
        users, targets = sample_pairs(dataset, "valid", episodes, seed)
        order = np.random.default_rng(seed).permutation(len(users))
        torch.manual_seed(seed)
        self.net = self._network()
        n_pre = int(self.config.pretrain_fraction * len(order))
        opt = torch.optim.Adam(self.net.parameters(), lr=self.config.lr)
        run = {"baseline": 0.0, "scale": 1.0, "successes": 0}

        def before(n: int) -> None:
            nonlocal opt
            self.imitate = n < n_pre
            if n == n_pre:
                opt = torch.optim.Adam(self.net.parameters(), lr=self.config.rl_lr)

        def update(n: int, task: tuple[int, int], episode: Episode) -> None:
            run["successes"] += episode.outcome.turn > 0 and n >= n_pre
            loss = self._loss(episode, run)
            if loss is not None:
                opt.zero_grad()
                loss.backward()
                opt.step()

        tasks = [(int(users[e]), int(targets[e])) for e in order]
        try:
            with single_thread():
                run_rollouts(DialogueEnv(dataset, self.setting), self, tasks,
                             lambda n, _: np.random.default_rng([seed, 2, int(order[n])]), update, before)
        finally:
            self.imitate = False
        n_rl = max(1, len(order) - n_pre)
        stats = {"episodes": float(len(order)), "imitation_episodes": float(n_pre),
                 "train_success": run["successes"] / n_rl}
        log.info("EAR: %s", stats)
        return stats

    def _loss(self, episode: Episode, run: dict[str, float]) -> torch.Tensor | None:
        """Imitation: NLL of the rule's choices. REINFORCE: -log pi(a|s) x advantage (returns against a running
        mean/scale of all step returns) minus an entropy bonus. None when no step was the network's choice."""
        memos = [t.memo for t in episode.transitions]
        logp = torch.log_softmax(self.net(torch.from_numpy(np.stack([m[0] for m in memos]))), -1)
        targets_il = torch.tensor([m[2] for m in memos])
        chosen = (targets_il >= 0).float()
        if not chosen.any():
            return None
        if self.imitate:
            return nn.functional.nll_loss(logp, targets_il, ignore_index=-1)
        returns = episode.returns(self.config.gamma).astype(np.float32)
        adv = torch.from_numpy((returns - run["baseline"]) / run["scale"])
        run["baseline"] = 0.95 * run["baseline"] + 0.05 * float(returns.mean())
        run["scale"] = 0.95 * run["scale"] + 0.05 * max(float(returns.std()), 0.05)
        entropy = -(logp.exp() * logp).sum(-1).mean()
        acts = torch.tensor([m[1] for m in memos])
        pg = logp.gather(1, acts.view(-1, 1)).squeeze(1) * adv * chosen
        return -pg.sum() / chosen.sum() - self.config.entropy_bonus * entropy

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"net.{k}": v for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
