"""The dialogue game as an environment, batch simulation over a split, and the CRS report.

:class:`DialogueEnv` is the conversational world in the shape of :class:`recforge.train.rollout.EpisodicEnvironment`:
one episode is a dialogue about a hidden target (task = (user row, target row)), played against the
:class:`UserSimulator`; the environment owns the rewards (:data:`REWARDS`, the SCPR paper's). Evaluation
(:func:`simulate`) and policy training (EAR, SCPR) play dialogues through the same loop,
:func:`recforge.train.rollout.play`. :func:`simulate` plays one dialogue per (user, target) pair of a split (optionally a
seeded sample) and summarises SR@T, AT and hDCG with bootstrap confidence intervals.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recforge.conversational.data import CRSDataset
from recforge.conversational.metrics import average_turns, hdcg_per_episode, success_curve, success_rate
from recforge.conversational.simulator import UserSimulator
from recforge.conversational.state import Action, Ask, CRSSetting, DialogueState, EpisodeOutcome
from recforge.errors import ConfigError
from recforge.metrics.stats import bootstrap_ci
from recforge.progress import track
from recforge.protocols import ConversationalPolicy
from recforge.threads import single_thread
from recforge.train.rollout import StepResult, play

log = logging.getLogger(__name__)

#: rewards of the SCPR paper: a successful list, a rejected list, an accepted / rejected question, and the extra
#: penalty when the dialogue runs out of turns
REWARDS = {"rec_accept": 1.0, "rec_reject": -0.1, "ask_accept": 0.01, "ask_reject": -0.1, "quit": -0.3}


class DialogueEnv:
    """Dialogues about hidden targets of ``dataset`` under ``setting``.

    ``reset((user, target), rng)``: the simulated user opens with one attribute of the target (drawn from ``rng``),
    which narrows the candidates before turn 1 and is not counted as a turn. ``step(action)`` answers a question
    (feedback: the accepted attributes) or a list (accepted when it holds the target); the dialogue ends on success or
    after ``max_turns`` turns. After a step that does not end it, the state is advanced to the next turn.
    """

    def __init__(self, dataset: CRSDataset, setting: CRSSetting, item_attrs_csc: Any = None):
        self.dataset, self.setting = dataset, setting
        self.csc = item_attrs_csc if item_attrs_csc is not None else dataset.item_attrs.tocsc()
        self.sim: UserSimulator | None = None
        self.state: DialogueState | None = None

    def reset(self, task: tuple[int, int], rng: np.random.Generator) -> DialogueState:
        user, target = task
        self.sim = UserSimulator(self.dataset, self.setting, target, rng)
        state = DialogueState(user=int(user), candidates=np.ones(self.dataset.n_items, dtype=bool))
        first = self.sim.opening()
        state.apply_answer((first,), (first,), self.csc, self.setting.filter_rejected)
        state.history.clear()  # the opening is not a turn
        state.turn = 1
        self.state = state
        return state

    def step(self, action: Action) -> StepResult[DialogueState]:
        state, sim = self.state, self.sim
        if state is None or sim is None:
            raise ConfigError("DialogueEnv.step before reset")
        if isinstance(action, Ask):
            accepted = sim.answer(action)
            state.apply_answer(action.attributes, accepted, self.csc, self.setting.filter_rejected)
            reward, feedback = REWARDS["ask_accept"] if accepted else REWARDS["ask_reject"], accepted
        else:
            rank = sim.rank_of_target(action)
            if rank is not None:
                return StepResult(state, REWARDS["rec_accept"], True, rank, EpisodeOutcome(state.turn, rank))
            state.apply_rejection(action.items)
            reward, feedback = REWARDS["rec_reject"], None
        if state.turn >= self.setting.max_turns:
            return StepResult(state, reward + REWARDS["quit"], True, feedback, EpisodeOutcome(0, 0))
        state.turn += 1
        return StepResult(state, reward, False, feedback)


class Acting:
    """Any :class:`~recforge.protocols.ConversationalPolicy` as a rollout agent (decisions without a memo)."""

    def __init__(self, policy: ConversationalPolicy):
        self.policy = policy

    def begin(self, state: DialogueState, rng: np.random.Generator) -> None:
        self.policy.begin(state, rng)

    def decide(self, state: DialogueState) -> tuple[Action, None]:
        return self.policy.act(state), None

    def observe(self, state: DialogueState, action: Action, feedback: tuple[int, ...] | int | None) -> None:
        self.policy.observe(state, action, feedback if isinstance(action, Ask) else None)

    def end(self, state: DialogueState, outcome: EpisodeOutcome) -> None:
        self.policy.end(state, outcome)


@dataclass
class CRSReport:
    """Per-episode outcomes and summary metrics of one simulation."""

    policy: str
    dataset: str
    split: str
    setting: CRSSetting
    turns: np.ndarray  # (E,) success turn, 0 = failure
    ranks: np.ndarray  # (E,) rank of the target in the accepted list, 0 = failure
    seconds: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def curve(self) -> np.ndarray:
        """SR@t for t = 1..T, shape (T,)."""
        return success_curve(self.turns, self.setting.max_turns)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "dataset": self.dataset, "split": self.split, "episodes": int(len(self.turns)),
                "seconds": round(self.seconds, 2), **self.metrics,
                "success_curve": [round(float(x), 4) for x in self.curve()]}


def summarize(turns: np.ndarray, ranks: np.ndarray, max_turns: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """SR@5, SR@10 (when <= T), SR@T, AT and hDCG, each as {"mean", "ci_low", "ci_high"} (bootstrap over episodes)."""
    per_episode = {f"sr@{t}": ((turns > 0) & (turns <= t)).astype(float) for t in sorted({5, 10, max_turns})
                   if t <= max_turns}
    per_episode.update({
        "at": np.where(turns > 0, turns, max_turns).astype(float),
        "hdcg": hdcg_per_episode(turns, ranks),
    })
    out = {}
    for name, values in per_episode.items():
        lo, hi = bootstrap_ci(values, seed=seed) if len(values) > 1 else (float("nan"), float("nan"))
        out[name] = {"mean": float(values.mean()) if len(values) else float("nan"), "ci_low": float(lo),
                     "ci_high": float(hi)}
    # means from the plain metric functions (the per-episode arrays above only feed the bootstrap)
    out[f"sr@{max_turns}"]["mean"] = success_rate(turns, max_turns)
    out["at"]["mean"] = average_turns(turns, max_turns)
    return out


def sample_pairs(dataset: CRSDataset, split: str, episodes: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The split's (user rows, target rows), or a seeded sample of ``episodes`` of them (all when None or larger)."""
    users, items = dataset.pairs(split)
    if episodes is not None:
        if episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {episodes}")
        if episodes < len(users):
            pick = np.sort(np.random.default_rng(seed).choice(len(users), size=episodes, replace=False))
            users, items = users[pick], items[pick]
    if len(users) == 0:
        raise ConfigError(f"split {split!r} of {dataset.name!r} has no dialogue pairs")
    return users, items


def simulate(policy: ConversationalPolicy, dataset: CRSDataset, setting: CRSSetting, split: str = "test",
             episodes: int | None = None, seed: int = 0, show_progress: bool | None = None) -> CRSReport:
    """One dialogue per sampled (user, target) pair of ``split``; dialogue i uses generator seeded (seed, i)."""
    users, targets = sample_pairs(dataset, split, episodes, seed)
    env, agent = DialogueEnv(dataset, setting), Acting(policy)
    turns = np.zeros(len(users), dtype=np.int64)
    ranks = np.zeros(len(users), dtype=np.int64)
    start = time.perf_counter()
    with single_thread():
        for e in track(range(len(users)), f"simulating {policy.name}", show=show_progress):
            out = play(env, agent, (int(users[e]), int(targets[e])), np.random.default_rng([seed, e])).outcome
            turns[e], ranks[e] = out.turn, out.rank
    seconds = time.perf_counter() - start
    report = CRSReport(policy.name, dataset.name, split, setting, turns, ranks, seconds)
    report.metrics = summarize(turns, ranks, setting.max_turns, seed)
    log.info("%s on %s/%s: SR@%d %.3f in %.1fs", report.policy, dataset.name, split, setting.max_turns,
             report.metrics[f"sr@{setting.max_turns}"]["mean"], seconds)
    return report
