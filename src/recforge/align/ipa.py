"""Iterative preference alignment (OneRec's IPA), optionally under constraints (constrained RLHF).

Each round:

1. **generate**: for every context (a training user's history, its last ``max_history`` training items) the current
   model proposes ``candidates`` = N distinct items it has not seen in training, sampled without replacement from its
   softmax at ``temperature`` (Gumbel top-N; temperature 0 takes its N best);
2. **judge**: the reward model scores each candidate by its win rate against the other candidates,
   mean_j sigmoid(logit(h, i, j)) (a scalar reward for Bradley–Terry and general preference models alike), plus, per
   constraint, its Lagrange multiplier times the candidate's gain (:mod:`recforge.align.constrained`);
3. **align**: the best candidate is chosen, the worst K are rejected, and one DPO / IPO / S-DPO pass
   (:func:`recforge.align.dpo.align`) runs against the model as it was at the start of the round (the reference of
   iterative DPO);
4. **measure**: the round logs the reward-model score of the contexts' top-10 (as ``reward@10``: the mean over
   fixed random unseen comparison items of sigmoid(logit)), the KL divergence KL(pi || pi_0) from the unaligned model
   over the whole catalogue (a fixed sample of contexts), the validation score (``evaluate_fn``, e.g. NDCG@10), the
   constraint metrics, and updates the multipliers by dual ascent.

The round kept is the best feasible one on validation (``keep="best"``), the one of highest reward (``"reward"``)
or the last feasible one (``"last"``); round 0 (the unaligned model) is a candidate, and always feasible for targets
measured on it (``sft``). Pairs come from training histories only; the chosen items are the model's own proposals
judged by a reward model fitted on training pairs, so no held-out event is read.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from recforge.align.constrained import BoundConstraint
from recforge.align.dpo import AlignConfig, align, require_trainable
from recforge.align.evaluation import list_reward
from recforge.align.pairs import top_columns
from recforge.align.reward import RewardModel
from recforge.config import check_choices
from recforge.data.batches import last_window
from recforge.data.interactions import Interactions
from recforge.data.preferences import PreferencePairs, sample_unseen
from recforge.errors import ConfigError, DataError
from recforge.protocols import HistoryScorer

log = logging.getLogger(__name__)

#: histories scored per model / reward-model call
BATCH = 512


@dataclass(frozen=True)
class IPAConfig:
    """Rounds of generate -> judge -> align; ``align`` is the per-round DPO-style pass."""

    rounds: int = 2  # generate/judge/align rounds
    candidates: int = 10  # N items generated per context
    temperature: float = 1.0  # sampling temperature of the generation; 0 takes the model's N best
    contexts: int = 0  # training users per round (0: all), a seeded sample drawn anew each round
    max_history: int = 50  # items of a context's history
    list_k: int = 10  # length of the lists whose reward and constraint metrics are logged
    measure_contexts: int = 5000  # fixed sample of users whose lists are measured each round (0: all)
    kl_contexts: int = 256  # fixed sample of contexts for KL(pi || pi_0)
    comparison_items: int = 100  # fixed unseen items each list item is compared with for reward@10
    keep: Literal["best", "reward", "last"] = "best"  # best validation score | highest reward | last (feasible)
    dual_step: float = 5.0  # dual-ascent step on the multipliers per unit of relative violation
    tolerance: float = 0.02  # relative slack of a constraint when a round's feasibility is judged
    seed: int = 0
    align: AlignConfig = field(default_factory=lambda: AlignConfig(keep="last"))  # the per-round pass

    def __post_init__(self) -> None:
        check_choices(self)
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds}")
        if self.candidates < self.align.negatives + 1:
            raise ConfigError(f"candidates (N={self.candidates}) must be >= negatives + 1 "
                              f"({self.align.negatives + 1}): one chosen and K rejected per context")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if min(self.contexts, self.measure_contexts) < 0 or min(self.max_history, self.list_k, self.kl_contexts,
                                                                 self.comparison_items) < 1:
            raise ConfigError("contexts and measure_contexts must be >= 0; max_history, list_k, kl_contexts and "
                              "comparison_items >= 1")
        if self.dual_step < 0 or self.tolerance < 0:
            raise ConfigError(f"dual_step and tolerance must be >= 0 (got {self.dual_step}, {self.tolerance})")


@dataclass
class IPAResult:
    """Per-round log (round 0: the unaligned model) and the round kept."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_round: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best_round": self.best_round}


@dataclass
class _Contexts:
    """Users (B,) and their history windows as a jagged array (items (N,), offsets (B+1,))."""

    users: np.ndarray
    history: np.ndarray
    offsets: np.ndarray

    def rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The histories of ``rows`` (b,) as a jagged array."""
        lengths = np.diff(self.offsets)[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        idx = np.repeat(self.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return self.history[idx], offsets


def _contexts(train: Interactions, users: np.ndarray, max_history: int) -> _Contexts:
    items, offsets = train.sequences()
    window = last_window(items, offsets, max_history)[users]
    lengths = (window > 0).sum(1)
    return _Contexts(users=users, history=window[window > 0],
                     offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def _masked_scores(model: HistoryScorer, ctx: _Contexts, rows: np.ndarray, seen: Any) -> torch.Tensor:
    """The model's scores for the contexts ``rows`` (b, n_items+1), training items and padding at -inf."""
    scores = model.score_histories(ctx.rows(rows)).clone().float()
    part = seen[ctx.users[rows]].tocoo()
    scores[torch.from_numpy(part.row.astype(np.int64)), torch.from_numpy(part.col.astype(np.int64))] = -torch.inf
    scores[:, 0] = -torch.inf
    return scores


def _top(scores: torch.Tensor, k: int, noise: torch.Tensor | None = None) -> np.ndarray:
    """The k best columns per row (lower id first on ties: a stable sort), optionally after adding ``noise``."""
    return top_columns(scores if noise is None else scores + noise, k)


def generate(model: HistoryScorer, ctx: _Contexts, seen: Any, n: int, temperature: float,
             rng: np.random.Generator) -> np.ndarray:
    """N distinct unseen candidates per context (B, N): Gumbel top-N of scores / temperature (0: the N best)."""
    out = np.zeros((len(ctx.users), n), np.int64)
    for s in range(0, len(ctx.users), BATCH):
        rows = np.arange(s, min(s + BATCH, len(ctx.users)))
        scores = _masked_scores(model, ctx, rows, seen)
        finite = torch.isfinite(scores).sum(1)
        if int(finite.min()) < n:
            raise DataError(f"a context has only {int(finite.min())} unseen items, fewer than candidates={n}")
        noise = None
        if temperature > 0:
            scores = scores / temperature
            u = torch.from_numpy(rng.random(tuple(scores.shape), dtype=np.float32)).clamp_(1e-12, 1 - 1e-7)
            noise = -torch.log(-torch.log(u))
        out[rows] = _top(scores, n, noise)
    return out


def top_lists(model: HistoryScorer, ctx: _Contexts, seen: Any, k: int) -> np.ndarray:
    """The model's top-k unseen items per context (B, k), ties to the lower id."""
    return np.concatenate([_top(_masked_scores(model, ctx, np.arange(s, min(s + BATCH, len(ctx.users))), seen), k)
                           for s in range(0, len(ctx.users), BATCH)])


@torch.no_grad()
def kl_to(model: Any, reference_lp: torch.Tensor, ctx: _Contexts) -> float:
    """Mean over the contexts of KL(pi || pi_0) over items 1..n_items, with pi_0's log-probabilities
    ``reference_lp`` (B, n_items)."""
    lp = full_log_probs(model, ctx)
    return float((lp.exp() * (lp - reference_lp)).sum(1).mean())


@torch.no_grad()
def full_log_probs(model: Any, ctx: _Contexts, batch: int = 64) -> torch.Tensor:
    """log p(i | h) for every item 1..n_items and context (B, n_items), through ``differentiable_log_prob``."""
    module = model.log_prob_module()
    module.eval()
    n_items = model.n_items
    out = []
    for s in range(0, len(ctx.users), batch):
        rows = np.arange(s, min(s + batch, len(ctx.users)))
        items = np.broadcast_to(np.arange(1, n_items + 1), (len(rows), n_items))
        out.append(model.differentiable_log_prob(ctx.rows(rows), np.ascontiguousarray(items)).float().cpu())
    return torch.cat(out)


def judge(reward_model: RewardModel, ctx: _Contexts, candidates: np.ndarray) -> np.ndarray:
    """Each candidate's win rate against the context's other candidates (B, N) (its own 1/2 included: a constant)."""
    out = np.zeros(candidates.shape)
    for s in range(0, len(candidates), BATCH):
        rows = np.arange(s, min(s + BATCH, len(candidates)))
        out[rows] = reward_model.win_rate(ctx.rows(rows), candidates[rows], candidates[rows]).double().numpy()
    bad = np.flatnonzero(~np.isfinite(out).all(1))
    if len(bad):
        raise DataError(f"the reward model gave non-finite (NaN/inf) rewards for context row(s) "
                        f"{', '.join(map(str, bad[:5]))}")
    return out


def select_pairs(ctx: _Contexts, candidates: np.ndarray, score: np.ndarray, k: int, train: Interactions,
                 source: str) -> PreferencePairs:
    """Chosen = the best-scored candidate, rejected = the K worst (worst first); ties to the earlier candidate."""
    order = np.argsort(-score, axis=1, kind="stable")
    rows = np.arange(len(candidates))[:, None]
    chosen = candidates[rows[:, 0], order[:, 0]]
    rejected = candidates[rows, order[:, ::-1][:, :k]]
    return PreferencePairs(user=ctx.users, history=ctx.history, history_offsets=ctx.offsets, chosen=chosen,
                           rejected=rejected, user_vocab=train.user_vocab, item_vocab=train.item_vocab,
                           sources=(source,))


def ipa(model: Any, train: Interactions, reward_model: RewardModel, config: IPAConfig | None = None, *,
        evaluate_fn: Callable[[], float] | None = None,
        constraints: Sequence[BoundConstraint] = ()) -> IPAResult:
    """Iterative preference alignment of ``model`` (a TrainableLogProb and HistoryScorer, updated in place) with
    ``reward_model`` as the judge, on the users of ``train`` (module docstring). ``evaluate_fn`` (higher is better)
    scores a round on validation; ``constraints`` (targets None are measured on the unaligned model) steer the pair
    selection through their multipliers. Returns the per-round log; the model holds the round kept."""
    cfg = config or IPAConfig()
    model = require_trainable(model)
    if not isinstance(model, HistoryScorer):
        raise ConfigError(f"IPA generates candidates from the model's scores: {getattr(model, 'name', model)!r} is not "
                          "a HistoryScorer")
    if reward_model.item_vocab is not None and reward_model.item_vocab != train.item_vocab:
        raise DataError("the reward model was built on another item catalogue than the model's training data")
    if cfg.keep == "best" and evaluate_fn is None:
        raise ConfigError("keep='best' needs an evaluate_fn (a validation score); use keep='reward' or 'last'")
    rng = np.random.default_rng(cfg.seed)
    users = train.active_users().astype(np.int64)
    if len(users) == 0:
        raise DataError("no training user to generate for")
    seen = train.to_csr(binary=True)
    n1 = train.n_items + 1
    seen_keys = np.unique(train.user.astype(np.int64) * n1 + train.item)

    def sample(n: int) -> np.ndarray:
        return users if n == 0 or n >= len(users) else np.sort(rng.choice(users, n, replace=False))

    measure_ctx = _contexts(train, sample(cfg.measure_contexts), cfg.max_history)
    kl_ctx = _contexts(train, sample(cfg.kl_contexts), cfg.max_history)
    room = train.n_items - int(train.to_csr(binary=True)[measure_ctx.users].sum(1).max(initial=0))
    n_against = min(cfg.comparison_items, room)  # a small catalogue: as many as every user has left
    if n_against < 1:
        raise DataError("a user has no unseen item to compare the lists with")
    against, _ = sample_unseen(measure_ctx.users, n_against, seen_keys, train.n_items, None, rng)
    ref_lp = full_log_probs(model, kl_ctx)
    module = model.log_prob_module()
    result = IPAResult()
    initial_state = copy.deepcopy(module.state_dict())

    def measure(round_: int, extra: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
        lists = top_lists(model, measure_ctx, seen, cfg.list_k)
        row: dict[str, Any] = {"round": round_, **extra,
                               f"reward@{cfg.list_k}": float(list_reward(
                                   reward_model, measure_ctx.rows(np.arange(len(lists))), lists, against).mean()),
                               "kl": kl_to(model, ref_lp, kl_ctx)}
        if evaluate_fn is not None:
            row["valid"] = float(evaluate_fn())
        for c in constraints:
            row[str(c.constraint)] = float(c.measure(lists))
        return row, lists

    row, lists = measure(0, {})
    for c in constraints:
        if c.target is None:
            c.target = row[str(c.constraint)]
    row["feasible"] = True if not constraints else all(c.feasible(row[str(c.constraint)], cfg.tolerance)
                                                       for c in constraints)
    result.history.append(row)
    log.info("ipa round 0 (unaligned): %s", row)
    key = {"best": "valid", "reward": f"reward@{cfg.list_k}", "last": "round"}[cfg.keep]
    best_value, best_state = (row[key], initial_state) if row["feasible"] else (-np.inf, None)
    for round_ in range(1, cfg.rounds + 1):
        t0 = time.perf_counter()
        ctx = _contexts(train, sample(cfg.contexts), cfg.max_history)
        candidates = generate(model, ctx, seen, cfg.candidates, cfg.temperature, rng)
        reward = judge(reward_model, ctx, candidates)
        score = reward.copy()
        if constraints:
            ctx_lists = top_lists(model, ctx, seen, cfg.list_k)
            for c in constraints:
                score += c.multiplier * c.gain(candidates, ctx_lists)
        pairs = select_pairs(ctx, candidates, score, cfg.align.negatives, train, f"ipa-{round_}")
        picked = reward[np.arange(len(reward)), np.argmax(score, axis=1)]
        gen_s = time.perf_counter() - t0
        step = align(model, pairs, cfg.align)  # reference: the model at the start of the round
        row, lists = measure(round_, {
            "pairs": len(pairs), "chosen_reward": float(picked.mean()), "candidate_reward": float(reward.mean()),
            "multipliers": {str(c.constraint): c.multiplier for c in constraints},
            "align": step.history[-1], "generate_s": round(gen_s, 3), "round_s": round(time.perf_counter() - t0, 3)})
        for c in constraints:
            row.setdefault("violation", {})[str(c.constraint)] = c.update(row[str(c.constraint)], cfg.dual_step)
        row["feasible"] = all(c.feasible(row[str(c.constraint)], cfg.tolerance) for c in constraints)
        result.history.append(row)
        log.info("ipa round %d: %s", round_, row)
        if row["feasible"] and (cfg.keep == "last" or row[key] > best_value):
            best_value, best_state, result.best_round = row[key], copy.deepcopy(module.state_dict()), round_
    if best_state is None:
        log.warning("ipa: no round met the constraints within tolerance %.3f: the unaligned model is kept",
                    cfg.tolerance)
        best_state, result.best_round = initial_state, 0
    module.load_state_dict(best_state)
    module.eval()
    return result
