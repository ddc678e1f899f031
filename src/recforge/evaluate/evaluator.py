"""The one evaluator: full ranking over all items in user batches, seen items masked, CIs on every mean.

Memory is bounded by ``batch_size x n_items``; results do not depend on the batch size.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.data.split import Split
from recforge.errors import ConfigError
from recforge.metrics.ranking import compute, parse_metric
from recforge.metrics.stats import bootstrap_cis
from recforge.models.rank import Ranked, SeenPolicy, mask_seen, seen_policy, top_k
from recforge.models.validation import MaskedTargets, Targets, repeatable_items, score_users
from recforge.progress import track
from recforge.protocols import HistoryScorer

log = logging.getLogger(__name__)

Protocol = Literal["full", "sampled-uniform", "sampled-popularity"]
#: "index": one ranking, ties broken by the documented rule (lower item index first); "expected": the expected
#: metric over a uniformly random order within each group of tied scores (McSherry & Najork, ECIR 2008).
Ties = Literal["index", "expected"]
#: Metrics linear in the hit vector (given |relevant| and k): their tie-aware expectation is exact.
LINEAR_METRICS = ("ndcg", "recall", "precision", "f1", "rprec")
SAMPLED_WARNING = (
    "SAMPLED METRICS: the held-out items were ranked against {n} sampled negatives, not the full catalog. "
    "Sampled metrics can flip model orderings (Krichene & Rendle, KDD 2020); use full ranking to compare models."
)


@dataclass
class Report:
    """Evaluation result. ``metrics[name] = {"mean", "ci_low", "ci_high"}``; ``per_user[name]`` has shape (U,)
    aligned with ``users`` (dense ids); ``top_items`` (U, K) holds each user's ranked dense item ids (0 pads a user
    with fewer than K rankable items)."""

    metrics: dict[str, dict[str, float]]
    per_user: dict[str, np.ndarray]
    users: np.ndarray
    top_items: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def mean(self, name: str) -> float:
        return self.metrics[name]["mean"]

    def to_dict(self) -> dict[str, Any]:
        return {**{k: dict(v) for k, v in self.metrics.items()}, "_info": dict(self.info)}


def _history(split: Split, on: str) -> Interactions:
    """Everything the model may know at evaluation time: train (+ valid when testing) (+ fold-in histories)."""
    return split.history(on)


def evaluate(
    model: Any,
    split: Split,
    metrics: tuple[str, ...] | list[str] = ("ndcg@10", "recall@10"),
    on: Literal["valid", "test"] = "test",
    batch_size: int = 1024,
    exclude_seen: SeenPolicy | bool = "all-seen",
    history: Literal["auto", "train", "train+valid"] = "auto",
    protocol: Protocol = "full",
    n_negatives: int = 100,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool | None = None,
    repeatable: np.ndarray | None = None,
    masked_targets: MaskedTargets = "drop",
    ties: Ties = "index",
) -> Report:
    """Rank all items for every user with a ``on`` event and compute ``metrics`` (per user, mean, bootstrap 95% CI).

    ``history="auto"`` lets models that score ad-hoc histories see train (+ valid when ``on="test"``) as the user's
    history; other models score from what they were trained on. ``protocol`` other than "full" ranks each target among
    ``n_negatives`` sampled items and adds a loud warning to the report.

    ``exclude_seen`` is the repeat policy (``models.rank.seen_policy``; True/False mean "all-seen"/"none"): which
    items of that same history are masked. Under "seen-except-repeatable", ``repeatable`` (dense item ids) stay
    rankable; by default the items some user consumed more than once in the history. A target the policy masks can
    never be ranked: ``masked_targets="drop"`` removes it from the user's relevant set (users left with none are not
    evaluated), "miss" keeps it as a guaranteed miss; ``info`` counts both.

    Ranking follows ``models.rank.top_k`` (ties: lower item index first), so a metric does not depend on which other
    metrics were asked; ``info["tied_share"]`` is the share of users whose top-k boundary is tied, per cut-off.
    ``ties="expected"`` reports the expectation over random orders within tied groups instead (linear metrics only).
    """
    t0 = time.perf_counter()
    names = [m.lower() for m in metrics]
    if not names:
        raise ConfigError("metrics must not be empty")
    k_max = max(parse_metric(m)[1] for m in names)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if protocol not in ("full", "sampled-uniform", "sampled-popularity"):
        raise ConfigError(f"protocol must be full, sampled-uniform or sampled-popularity, got {protocol!r}")
    if masked_targets not in ("drop", "miss"):
        raise ConfigError(f"masked_targets must be drop or miss, got {masked_targets!r}")
    if ties not in ("index", "expected"):
        raise ConfigError(f"ties must be index or expected, got {ties!r}")
    nonlinear = [m for m in names if parse_metric(m)[0] not in LINEAR_METRICS]
    if ties == "expected" and nonlinear:
        raise ConfigError(f"ties='expected' is exact only for metrics linear in the hits ({', '.join(LINEAR_METRICS)}); "
                          f"got {', '.join(nonlinear)}")
    policy = seen_policy(exclude_seen)
    target = split.part(on)
    hist = _history(split, on)
    n_items = hist.n_items
    k_eff = min(k_max, n_items)

    use_hist = {"auto": isinstance(model, HistoryScorer), "train": False, "train+valid": True}[history]
    if split.fold_in is not None and not use_hist:
        raise ConfigError(f"split {split.name!r} holds out whole users; model {getattr(model, 'name', model)!r} "
                          "must score ad-hoc histories (a HistoryScorer) to be evaluated on it")
    rep_items = repeatable_items(hist, repeatable) if policy == "seen-except-repeatable" else None
    # Relevant (user, item) keys after the policy: hits are looked up for the top-k only (no dense target matrix).
    targets = Targets.build(target, hist, policy, rep_items, masked_targets)
    users = targets.users
    target_csr = target.to_csr()
    seen_csr = hist.to_csr()
    popularity = torch.from_numpy(split.train.item_counts().astype(np.float64))
    gen = torch.Generator().manual_seed(seed)
    cut_offs = sorted({parse_metric(m)[1] for m in names})
    n_tied = dict.fromkeys(cut_offs, 0)

    hits_parts, top_parts = [], []
    buffer = torch.empty(0)  # reused score buffer: fresh 50 MB allocations per batch cost page faults, not just copies
    batches = [users[i : i + batch_size] for i in range(0, len(users), batch_size)]
    for batch in track(batches, f"evaluating {on}", total=len(batches), show=progress):
        scores = score_users(model, batch, hist if use_hist else None)
        if buffer.shape[0] < len(batch) or buffer.shape[1] != scores.shape[1]:
            buffer = torch.empty(len(batch), scores.shape[1])
        scores = buffer[: len(batch)].copy_(scores)  # never write into a tensor the model may still own
        scores[:, 0] = -torch.inf
        mask_seen(scores, seen_csr[batch], policy, rep_items)
        if protocol != "full":
            tgt = torch.from_numpy(target_csr[batch].toarray() > 0)
            scores = _restrict_to_sample(scores, tgt, protocol, n_negatives, popularity, gen)
        ranked = top_k(scores, k_max)  # a catalog smaller than k pads with item 0: misses
        for k in cut_offs:
            n_tied[k] += int(ranked.tied_at(k).sum())
        hit = targets.hits(batch, ranked.items)
        hits_parts.append(_expected_hits(scores, ranked, batch, hit, targets) if ties == "expected" else hit)
        top_parts.append(ranked.items[:, :k_eff].numpy().astype(np.int32))
    hits = np.concatenate(hits_parts) if hits_parts else np.zeros((0, k_max), bool)
    n_rel = targets.n_rel[users]
    per_user = compute(names, hits, n_rel)
    summary = {}
    # one set of resamples for all metrics: the CIs of every metric come from the same resampled user sets
    cis = bootstrap_cis(np.stack(list(per_user.values()), axis=1), n_boot=n_boot, seed=seed)
    for (name, vals), (lo, hi) in zip(per_user.items(), cis):
        summary[name] = {"mean": float(vals.mean()) if len(vals) else float("nan"), "ci_low": lo, "ci_high": hi}
    warnings = []
    if protocol != "full":
        warnings.append(SAMPLED_WARNING.format(n=n_negatives))
        log.warning(warnings[-1])
    info = {
        "on": on,
        "protocol": protocol,
        "n_negatives": n_negatives if protocol != "full" else None,
        "exclude_seen": policy,
        "n_repeatable": None if rep_items is None else int(len(rep_items)),
        "masked_targets": masked_targets,
        "n_targets_masked": targets.n_masked,
        "n_users_all_targets_masked": targets.n_users_dropped,
        "ties": ties,
        "tied_share": {f"@{k}": n_tied[k] / len(users) if len(users) else 0.0 for k in cut_offs},
        "history": "train+valid" if use_hist and on == "test" else "train",
        "n_users": int(len(users)),
        "n_items": int(n_items),
        "split": split.name,
        "split_hash": split.hash,
        "batch_size": batch_size,
        "n_boot": n_boot,
        "ci": 0.95,
        "seconds": round(time.perf_counter() - t0, 3),
        "warnings": warnings,
    }
    tops = np.concatenate(top_parts) if top_parts else np.zeros((0, k_eff), np.int32)
    return Report(metrics=summary, per_user=per_user, users=users, top_items=tops, info=info)


def _expected_hits(scores: torch.Tensor, ranked: Ranked, users: np.ndarray, hits: np.ndarray, targets: Targets
                   ) -> np.ndarray:
    """Expected hit of each top-k position (B, k) float64 over a uniformly random order within tied groups.

    A position whose score group G (every rankable item with that score) lies inside the top-k shares G's hits with the
    group's other positions: rel(G)/|G|. The boundary group reaches past k, so its size and relevant count come from
    the whole row of ``scores`` (B, n_items+1). Both cases are rel(G)/|G|."""
    vals = ranked.scores
    real = vals > -torch.inf
    same = (vals[:, :, None] == vals[:, None, :]) & real[:, :, None]  # (B, k, k): groups seen inside the top-k
    size = same.sum(2).double()
    rel = (same.double() * torch.from_numpy(hits).double()[:, None, :]).sum(2)
    k = vals.shape[1]
    rows = torch.nonzero(ranked.tied_at(k)).ravel()
    if len(rows):
        t = vals[rows, k - 1]
        group_size = (scores[rows] == t[:, None]).sum(1).double()
        n = targets.n_items + 1
        u = users[rows.numpy()].astype(np.int64)
        starts, ends = np.searchsorted(targets.keys, u * n), np.searchsorted(targets.keys, (u + 1) * n)
        row_of = np.repeat(np.arange(len(rows)), ends - starts)
        items = targets.keys[np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])] % n
        in_group = scores[rows[row_of], torch.from_numpy(items)] == t[row_of]
        group_rel = torch.bincount(torch.from_numpy(row_of)[in_group], minlength=len(rows)).double()
        boundary = vals[rows] == t[:, None]
        size[rows] = torch.where(boundary, group_size[:, None], size[rows])
        rel[rows] = torch.where(boundary, group_rel[:, None], rel[rows])
    return torch.where(real, rel / size.clamp(min=1), 0.0).numpy()


def _restrict_to_sample(
    scores: torch.Tensor, tgt: torch.Tensor, protocol: str, n_neg: int, popularity: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """Keep only targets plus ``n_neg`` sampled non-target, non-masked items per row; everything else -> -inf."""
    allowed = torch.isfinite(scores) & ~tgt
    base = popularity.expand_as(scores) + 1e-9 if protocol == "sampled-popularity" else torch.ones_like(scores, dtype=torch.float64)
    weights = torch.where(allowed, base.to(torch.float64), torch.zeros((), dtype=torch.float64))
    n_allowed = allowed.sum(1)
    keep = tgt.clone()
    m = int(min(n_neg, int(n_allowed.min()))) if len(n_allowed) else 0
    if m > 0:
        neg = torch.multinomial(weights, m, replacement=False, generator=gen)
        keep.scatter_(1, neg, True)
    return torch.where(keep, scores, torch.tensor(-torch.inf))
