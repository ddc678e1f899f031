"""The one episode loop, batch simulation over a split, and the CRS report.

:func:`run_episode` plays one dialogue between a policy and a :class:`UserSimulator`; :func:`simulate` plays one
episode per (user, target) pair of a split (optionally a seeded sample) and summarises SR@T, AT and hDCG with
bootstrap confidence intervals. Policy training (EAR, SCPR) runs episodes through the same loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recforge.conversational.data import CRSDataset
from recforge.conversational.metrics import average_turns, hdcg_per_episode, success_curve, success_rate
from recforge.conversational.policies.base import ConversationalRecommender, EpisodeOutcome
from recforge.conversational.simulator import UserSimulator
from recforge.conversational.state import Ask, CRSSetting, DialogueState
from recforge.errors import ConfigError
from recforge.metrics.stats import bootstrap_ci
from recforge.progress import track
from recforge.threads import single_thread

log = logging.getLogger(__name__)


def run_episode(policy: ConversationalRecommender, dataset: CRSDataset, setting: CRSSetting, user: int, target: int,
                rng: np.random.Generator, item_attrs_csc: Any = None,
                transcript: list[str] | None = None) -> EpisodeOutcome:
    """Play one dialogue for hidden ``target``; returns the success turn (0 = failure) and the target's rank.

    The user's opening attribute narrows the candidates before turn 1 and is not counted as a turn.
    ``transcript`` (optional) receives one human-readable line per turn.
    """
    csc = item_attrs_csc if item_attrs_csc is not None else dataset.item_attrs.tocsc()
    sim = UserSimulator(dataset, setting, target, rng)
    state = DialogueState(user=int(user), candidates=np.ones(dataset.n_items, dtype=bool))
    first = sim.opening()
    state.apply_answer((first,), (first,), csc, setting.filter_rejected)
    state.history.clear()  # the opening is not a turn
    if transcript is not None:
        transcript.append(f"user opens with: {dataset.attr_names[first]}")
    policy.begin(state, rng)
    for turn in range(1, setting.max_turns + 1):
        state.turn = turn
        action = policy.act(state)
        if isinstance(action, Ask):
            accepted = sim.answer(action)
            state.apply_answer(action.attributes, accepted, csc, setting.filter_rejected)
            if transcript is not None:
                asked = ", ".join(dataset.attr_names[a] for a in action.attributes)
                said = ", ".join(dataset.attr_names[a] for a in accepted) or "no"
                transcript.append(f"turn {turn}: ask [{asked}] -> {said} ({int(state.candidates.sum())} candidates)")
            policy.observe(state, action, accepted)
            continue
        rank = sim.rank_of_target(action)
        if transcript is not None:
            transcript.append(f"turn {turn}: recommend {len(action.items)} items -> "
                              + (f"accepted (rank {rank})" if rank else "rejected"))
        if rank is not None:
            outcome = EpisodeOutcome(turn, rank)
            policy.end(state, outcome)
            return outcome
        state.apply_rejection(action.items)
        policy.observe(state, action, None)
    outcome = EpisodeOutcome(0, 0)
    policy.end(state, outcome)
    return outcome


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
    """The split's (users, targets), or a seeded sample of ``episodes`` of them (all when None or larger)."""
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


def simulate(policy: ConversationalRecommender, dataset: CRSDataset, setting: CRSSetting, split: str = "test",
             episodes: int | None = None, seed: int = 0, show_progress: bool | None = None) -> CRSReport:
    """One episode per sampled (user, target) pair of ``split``; episode i uses generator seeded (seed, i)."""
    users, targets = sample_pairs(dataset, split, episodes, seed)
    csc = dataset.item_attrs.tocsc()
    turns = np.zeros(len(users), dtype=np.int64)
    ranks = np.zeros(len(users), dtype=np.int64)
    start = time.perf_counter()
    with single_thread():
        for e in track(range(len(users)), f"simulating {getattr(policy, 'name', 'policy')}", show=show_progress):
            out = run_episode(policy, dataset, setting, int(users[e]), int(targets[e]),
                              np.random.default_rng([seed, e]), csc)
            turns[e], ranks[e] = out.turn, out.rank
    seconds = time.perf_counter() - start
    report = CRSReport(getattr(policy, "name", type(policy).__name__), dataset.name, split, setting, turns, ranks, seconds)
    report.metrics = summarize(turns, ranks, setting.max_turns, seed)
    log.info("%s on %s/%s: SR@%d %.3f in %.1fs", report.policy, dataset.name, split, setting.max_turns,
             report.metrics[f"sr@{setting.max_turns}"]["mean"], seconds)
    return report
