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
from recforge.data.jagged import gather_jagged
from recforge.data.split import Split
from recforge.errors import ConfigError
from recforge.metrics.ranking import compute, parse_metric
from recforge.metrics.stats import bootstrap_cis
from recforge.progress import track
from recforge.protocols import HistoryScorer, TimedHistoryScorer

log = logging.getLogger(__name__)

Protocol = Literal["full", "sampled-uniform", "sampled-popularity"]
SAMPLED_WARNING = (
    "SAMPLED METRICS: the held-out items were ranked against {n} sampled negatives, not the full catalog. "
    "Sampled metrics can flip model orderings (Krichene & Rendle, KDD 2020); use full ranking to compare models."
)


@dataclass
class Report:
    """Evaluation result. ``metrics[name] = {"mean", "ci_low", "ci_high"}``; ``per_user[name]`` has shape (U,)
    aligned with ``users`` (dense ids); ``top_items`` (U, K) holds each user's ranked dense item ids."""

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
    hist = split.train
    if on == "test" and split.valid is not None:
        hist = hist.concat(split.valid)
    if split.fold_in is not None:
        hist = hist.concat(split.fold_in)
    return hist


def evaluate(
    model: Any,
    split: Split,
    metrics: tuple[str, ...] | list[str] = ("ndcg@10", "recall@10"),
    on: Literal["valid", "test"] = "test",
    batch_size: int = 1024,
    exclude_seen: bool = True,
    history: Literal["auto", "train", "train+valid"] = "auto",
    protocol: Protocol = "full",
    n_negatives: int = 100,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool | None = None,
) -> Report:
    """Rank all items for every user with a ``on`` event and compute ``metrics`` (per user, mean, bootstrap 95% CI).

    ``history="auto"`` lets models that score ad-hoc histories see train (+ valid when ``on="test"``) as the user's
    history; other models score from what they were trained on. Seen items (that same history) are masked unless
    ``exclude_seen=False``. ``protocol`` other than "full" ranks each target among ``n_negatives`` sampled items and
    adds a loud warning to the report.
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
    target = split.part(on)
    hist = _history(split, on)
    n_items = hist.n_items
    k_eff = min(k_max, n_items)

    use_hist = {"auto": isinstance(model, HistoryScorer), "train": False, "train+valid": True}[history]
    if split.fold_in is not None and not use_hist:
        raise ConfigError(f"split {split.name!r} holds out whole users; model {getattr(model, 'name', model)!r} "
                          "must score ad-hoc histories (a HistoryScorer) to be evaluated on it")
    users = target.active_users()
    target_csr = target.to_csr()
    seen_csr = hist.to_csr()
    h_items, h_offsets = hist.sequences()
    n_rel_all = np.diff(target_csr.indptr)
    popularity = torch.from_numpy(split.train.item_counts().astype(np.float64))
    gen = torch.Generator().manual_seed(seed)

    hits_parts, top_parts = [], []
    # Sorted (user, item) keys of the targets: with full ranking, hits are looked up for the top-k only, so no dense
    # (batch x n_items) target matrix is built.
    target_keys = np.sort(target.user.astype(np.int64) * (n_items + 1) + target.item)
    buffer = torch.empty(0)  # reused score buffer: fresh 50 MB allocations per batch cost page faults, not just copies
    batches = [users[i : i + batch_size] for i in range(0, len(users), batch_size)]
    for batch in track(batches, f"evaluating {on}", total=len(batches), show=progress):
        if use_hist and isinstance(model, TimedHistoryScorer):  # e.g. HSTU's time-gap bias needs the timestamps
            scores = model.score_timed_histories(gather_jagged(h_items, h_offsets, batch),
                                                 gather_jagged(hist.time, h_offsets, batch)[0])
        elif use_hist:
            scores = model.score_histories(gather_jagged(h_items, h_offsets, batch))
        else:
            scores = model.score(batch)
        if buffer.shape[0] < len(batch) or buffer.shape[1] != scores.shape[1]:
            buffer = torch.empty(len(batch), scores.shape[1])
        scores = buffer[: len(batch)].copy_(scores)  # never write into a tensor the model may still own
        scores[:, 0] = -torch.inf
        if exclude_seen:
            seen = seen_csr[batch]
            r, c = seen.nonzero()
            scores[torch.from_numpy(r), torch.from_numpy(c)] = -torch.inf
        if protocol != "full":
            tgt = torch.from_numpy(target_csr[batch].toarray() > 0)
            scores = _restrict_to_sample(scores, tgt, protocol, n_negatives, popularity, gen)
        top = torch.topk(scores, k_eff, dim=1).indices
        keys = (torch.from_numpy(batch.astype(np.int64))[:, None] * (n_items + 1) + top).numpy()
        pos = np.minimum(np.searchsorted(target_keys, keys), max(len(target_keys) - 1, 0))
        in_target = torch.from_numpy(target_keys[pos] == keys) if len(target_keys) else torch.zeros_like(top, dtype=torch.bool)
        hit = in_target & torch.isfinite(scores.gather(1, top))
        hits_parts.append(hit.numpy())
        top_parts.append(top.numpy().astype(np.int32))
    hits = np.concatenate(hits_parts) if hits_parts else np.zeros((0, k_eff), bool)
    if k_eff < k_max:  # catalog smaller than k: pad with misses
        hits = np.pad(hits, ((0, 0), (0, k_max - k_eff)))
    n_rel = n_rel_all[users]
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
        "exclude_seen": exclude_seen,
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
