"""DPO-style alignment of any model with a likelihood over items (:class:`~recforge.protocols.TrainableLogProb`).

With the policy pi (the model being aligned), the frozen reference pi_ref (a copy of the fitted model taken before the
first step) and rho(i) = log pi(i | h) - log pi_ref(i | h), a pair (h, chosen c, rejected r_1..r_K) costs::

    dpo:   -log sigmoid(beta * (rho(c) - rho(r_1)))                          (K > 1: mean over the K rejected)
    ipo:   (rho(c) - rho(r_1) - 1 / (2 beta))^2                              (K > 1: mean over the K rejected)
    sdpo:  -log sigmoid(-log sum_k exp(beta * (rho(r_k) - rho(c))))          (softmax-DPO; K = 1 is DPO exactly)

The network runs in eval mode (no dropout), so before the first step rho is exactly 0 and the policy equals its
reference. Each epoch logs the loss, the implicit reward margin beta * (rho(c) - rho(r)), the share of pairs it
orders correctly, its training seconds, and (when given) a validation score; the epoch with the best validation score
is kept (``keep="best"``, the reference itself included), or the last one (``keep="last"``).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from recforge.config import check_choices
from recforge.data.jagged import gather_jagged
from recforge.data.preferences import PreferencePairs
from recforge.errors import ConfigError
from recforge.protocols import LogProb, TrainableLogProb
from recforge.registry import MODELS, resolve

log = logging.getLogger(__name__)

Method = Literal["dpo", "ipo", "sdpo"]


@dataclass(frozen=True)
class AlignConfig:
    """How to align: the objective, its beta, the optimiser and the number of rejected items used."""

    method: Method = "dpo"  # dpo | ipo | sdpo
    beta: float = 0.1  # strength of the KL anchor to the reference (> 0); smaller moves further
    negatives: int = 1  # rejected items per pair used (the first ``negatives`` columns); sdpo's K
    epochs: int = 1  # passes over the pairs
    batch_size: int = 256  # pairs per step
    lr: float = 1e-4  # Adam learning rate
    seed: int = 0  # batch order
    keep: Literal["best", "last"] = "best"  # the epoch kept: best on validation (the reference included), or the last

    def __post_init__(self) -> None:
        check_choices(self)
        if not self.beta > 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        if self.negatives < 1:
            raise ConfigError(f"negatives (K) must be >= 1, got {self.negatives}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1 (epochs={self.epochs}, "
                              f"batch_size={self.batch_size})")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")


@dataclass
class AlignResult:
    """Per-epoch log and the epoch kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0  # 0: the reference itself was best on validation (nothing changed)

    def to_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best_epoch": self.best_epoch}


def preference_loss(method: str, rho_chosen: torch.Tensor, rho_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-pair loss (B,) from log-ratios to the reference of the chosen (B,) and rejected (B, K) items."""
    diff = rho_chosen[:, None] - rho_rejected  # (B, K)
    if method == "dpo":
        return -F.logsigmoid(beta * diff).mean(1)
    if method == "ipo":
        return ((diff - 1.0 / (2.0 * beta)) ** 2).mean(1)
    if method == "sdpo":
        return -F.logsigmoid(-torch.logsumexp(-beta * diff, dim=1))
    raise ConfigError(f"method must be one of ('dpo', 'ipo', 'sdpo'), got {method!r}")


def log_prob_models() -> list[str]:
    """Registered models that declare a trainable likelihood over items (what ``align`` accepts)."""
    return [name for name in MODELS if _is_trainable(resolve("model", name))]


def _is_trainable(cls: type) -> bool:
    try:
        return issubclass(cls, TrainableLogProb)
    except TypeError:
        return False


def require_trainable(model: Any) -> TrainableLogProb:
    """``model`` as a TrainableLogProb, or a ConfigError naming the models that are."""
    if not isinstance(model, TrainableLogProb):
        what = "has log_prob but cannot be trained in place" if isinstance(model, LogProb) else "has no log_prob"
        name = getattr(model, "name", type(model).__name__)
        raise ConfigError(f"model {name!r} {what}: alignment needs a likelihood over items it can update "
                          f"(registered models that have one: {', '.join(log_prob_models())})")
    return model


def _batch(pairs: PreferencePairs, rows: np.ndarray, k: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    hist = gather_jagged(pairs.history, pairs.history_offsets, rows)
    items = np.concatenate([np.asarray(pairs.chosen)[rows, None], np.asarray(pairs.rejected)[rows, :k]], axis=1)
    return hist, items


@torch.no_grad()
def _log_probs(model: TrainableLogProb, pairs: PreferencePairs, k: int, batch_size: int) -> torch.Tensor:
    """log p of chosen and the first k rejected items for every pair (B, 1+k), no gradients."""
    module = model.log_prob_module()
    module.eval()
    out = []
    for s in range(0, len(pairs), batch_size):
        hist, items = _batch(pairs, np.arange(s, min(s + batch_size, len(pairs))), k)
        out.append(model.differentiable_log_prob(hist, items).cpu())
    return torch.cat(out)


def align(model: Any, pairs: PreferencePairs, config: AlignConfig | None = None,
          evaluate_fn: Callable[[], float] | None = None, reference: Any = None) -> AlignResult:
    """Align ``model`` (a TrainableLogProb, updated in place) to the preferences ``pairs``.

    ``reference`` (default: a frozen copy of ``model`` as it is now) anchors the log-ratios. ``evaluate_fn`` (higher
    is better, e.g. validation NDCG) is called before training and after every epoch; the best state is kept.
    """
    cfg = config or AlignConfig()
    model = require_trainable(model)
    if pairs.k < cfg.negatives:
        raise ConfigError(f"negatives={cfg.negatives} but the pairs have only K={pairs.k} rejected item(s) per row")
    if cfg.method != "sdpo" and cfg.negatives > 1:
        log.info("%s with K=%d rejected items: the loss is averaged over them", cfg.method, cfg.negatives)
    k = cfg.negatives
    ref = reference if reference is not None else copy.deepcopy(model)
    ref_lp = _log_probs(require_trainable(ref), pairs, k, cfg.batch_size)  # (B, 1+k), the frozen reference
    weight = torch.ones(len(pairs)) if pairs.weight is None else torch.from_numpy(np.array(pairs.weight))
    module = model.log_prob_module()
    module.eval()  # no dropout: rho starts at exactly 0
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    result = AlignResult()
    best = evaluate_fn() if evaluate_fn is not None else None
    best_state = copy.deepcopy(module.state_dict())
    if best is not None:
        result.history.append({"epoch": 0, "valid": best})
    for epoch in range(1, cfg.epochs + 1):
        order = rng.permutation(len(pairs))
        tot_loss = tot_margin = tot_acc = 0.0
        t0 = time.perf_counter()
        for s in range(0, len(order), cfg.batch_size):
            rows = order[s : s + cfg.batch_size]
            hist, items = _batch(pairs, rows, k)
            lp = model.differentiable_log_prob(hist, items)
            rho = lp - ref_lp[rows].to(lp.device)
            losses = preference_loss(cfg.method, rho[:, 0], rho[:, 1:], cfg.beta)
            w = weight[rows].to(lp.device)
            loss = (losses * w).sum() / w.sum().clamp_min(1e-12)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            margin = (cfg.beta * (rho[:, :1] - rho[:, 1:])).detach()
            tot_loss += float(losses.detach().sum())
            tot_margin += float(margin.mean(1).sum())
            tot_acc += float((margin > 0).float().mean(1).sum())
        n = len(pairs)
        row = {"epoch": epoch, "loss": tot_loss / n, "reward_margin": tot_margin / n, "pair_accuracy": tot_acc / n,
               "train_s": time.perf_counter() - t0}
        if evaluate_fn is not None:
            row["valid"] = evaluate_fn()
        if evaluate_fn is None or cfg.keep == "last" or row["valid"] > best:
            best_state, result.best_epoch = copy.deepcopy(module.state_dict()), epoch
            best = row.get("valid", best)
        result.history.append(row)
        log.info("align %s epoch %d: %s", cfg.method, epoch, row)
    module.load_state_dict(best_state)
    module.eval()
    return result
