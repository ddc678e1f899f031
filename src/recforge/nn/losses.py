"""Next-item training losses over a shared output embedding table (one place for every sequential model).

All losses take hidden states ``h`` (N, D) at the positions that have a target, the targets (N,) (dense item ids
>= 1), and the output table ``weight`` (V, D) whose row i scores item i (row 0 = padding, never a valid answer).
Negatives are either per target (N, K) or shared by the whole batch (K,). Accidental hits (a negative equal to the
target) are removed from every sampled loss, so that an item is never pushed down as its own negative.

- ``ce``:               full softmax cross-entropy over all items (exact; cost N x V).
- ``bce``:              binary cross-entropy with sampled negatives (original SASRec, one negative per target).
- ``sampled_softmax``:  softmax over the target + K sampled negatives with the logQ correction
                        (logit - log q(item), Yi et al. 2019), which makes it consistent for non-uniform samplers.
- ``gbce``:             generalised BCE of gSASRec (Petrov & Macdonald 2023): the positive probability is raised to
                        beta = alpha (t (1 - 1/alpha) + 1/alpha), alpha = K / (n_items - 1), countering the
                        overconfidence that negative sampling causes.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from recforge.errors import ConfigError

LossName = Literal["ce", "bce", "sampled_softmax", "gbce"]
LOSSES: tuple[str, ...] = ("ce", "bce", "sampled_softmax", "gbce")
#: negative sampling each loss needs: per target (N, K), shared by the batch (K,), or none
NEGATIVES_FOR: dict[str, str] = {"ce": "none", "bce": "per_position", "sampled_softmax": "shared", "gbce": "shared"}


def _neg_logits(h: torch.Tensor, negatives: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
    """Scores of negatives: (N, K) for per-target negatives (N, K) or a shared set (K,)."""
    if negatives.dim() == 1:
        out = h @ weight[negatives].T
    else:
        out = torch.einsum("nd,nkd->nk", h, weight[negatives])
    if bias is not None:
        out = out + bias[negatives]
    return out


def _pos_logits(h: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = (h * weight[targets]).sum(-1)
    return out + bias[targets] if bias is not None else out


def _hits(targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """(N, K) True where a negative equals its row's target."""
    neg = negatives.unsqueeze(0) if negatives.dim() == 1 else negatives
    return neg == targets.unsqueeze(1)


def full_ce(h: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, n_items: int,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of the full softmax over items 1..n_items. h (N, D), targets (N,), weight (>=n_items+1, D)."""
    # Score items 1..n_items only (row 0 is padding), so the targets shift down by one; addmm fuses the bias.
    w = weight[1 : n_items + 1]
    logits = h @ w.T if bias is None else torch.addmm(bias[1 : n_items + 1], h, w.T)
    return F.cross_entropy(logits.float(), targets - 1)


def bce(h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, weight: torch.Tensor,
        bias: torch.Tensor | None = None, beta: float = 1.0) -> torch.Tensor:
    """Mean over targets of ``beta * -log sigmoid(pos) - sum_k log(1 - sigmoid(neg_k))`` (hits excluded)."""
    pos = _pos_logits(h, targets, weight, bias).float()
    neg = _neg_logits(h, negatives, weight, bias).float()
    neg_term = F.softplus(neg).masked_fill(_hits(targets, negatives), 0.0).sum(1)
    return (beta * F.softplus(-pos) + neg_term).mean()


def gbce_beta(n_negatives: int, n_items: int, t: float) -> float:
    """gSASRec's beta = t (alpha - 1) + 1 for K negatives out of n_items: t = 0 is plain BCE, t = 1 gives alpha."""
    alpha = n_negatives / max(n_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce(h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, weight: torch.Tensor, n_items: int,
         t: float = 0.75, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Generalised BCE: :func:`bce` with the positive term scaled by :func:`gbce_beta`."""
    return bce(h, targets, negatives, weight, bias, beta=gbce_beta(negatives.shape[-1], n_items, t))


def sampled_softmax(h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, weight: torch.Tensor,
                    log_q: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of the softmax over [target, K negatives], logits corrected by ``- log_q[item]``.

    log_q (V,): log sampling probability of each item (None = uniform, where the correction is a constant).
    """
    pos = _pos_logits(h, targets, weight, bias).float()
    neg = _neg_logits(h, negatives, weight, bias).float()
    if log_q is not None:
        pos = pos - log_q[targets]
        neg = neg - log_q[negatives].unsqueeze(0) if negatives.dim() == 1 else neg - log_q[negatives]
    neg = neg.masked_fill(_hits(targets, negatives), -torch.inf)
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=h.device))


def sequence_loss(name: str, hidden: torch.Tensor, batch: dict[str, torch.Tensor], weight: torch.Tensor,
                  n_items: int, bias: torch.Tensor | None = None, gbce_t: float = 0.75) -> torch.Tensor:
    """Loss ``name`` for a batch of sequences: hidden (B, L, D), batch["target"] (B, L) with 0 = no target,
    batch["negatives"] (B, L, K) or (K,) when the loss samples, batch["log_q"] (V,) for sampled softmax."""
    if name not in LOSSES:
        raise ConfigError(f"loss must be one of {list(LOSSES)}, got {name!r}")
    mask = batch["target"] > 0
    h, tgt = hidden[mask], batch["target"][mask]
    if name == "ce":
        return full_ce(h, tgt, weight, n_items, bias)
    neg = batch["negatives"]
    if neg.dim() == 3:
        neg = neg[mask]
    if name == "bce":
        return bce(h, tgt, neg, weight, bias)
    if name == "gbce":
        return gbce(h, tgt, neg, weight, n_items, gbce_t, bias)
    return sampled_softmax(h, tgt, neg, weight, batch.get("log_q"), bias)
