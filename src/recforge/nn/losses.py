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

import math

import torch
import torch.nn.functional as F

from recforge.errors import ConfigError

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


#: logits computed at once by the full cross-entropy (rows x items); bounds the loss's memory (4 MB in float32)
CE_CHUNK_ELEMENTS = 1 << 20


class _ChunkedSoftmaxCE(torch.autograd.Function):
    """Mean softmax cross-entropy whose (N, V) logits never exist at once.

    Forward walks the rows in chunks and, when gradients are wanted, computes them on the spot (softmax - onehot is
    the gradient of the logits); backward only scales them by the incoming gradient. The arithmetic is that of
    ``F.cross_entropy`` (same three matrix products), but peak memory is one chunk of logits instead of about four
    N x V tensors (logits, log-softmax, and their gradients) — the largest allocation of sequential training.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, targets: torch.Tensor,
                chunk: int, need_grad: bool) -> torch.Tensor:
        n = h.shape[0]
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        gh = torch.empty_like(h) if need_grad else None
        gw = torch.zeros_like(w) if need_grad else None
        gb = torch.zeros_like(b) if need_grad and b is not None else None
        for s in range(0, n, chunk):
            hc, tc = h[s : s + chunk], targets[s : s + chunk]
            logits = (hc @ w.T if b is None else torch.addmm(b, hc, w.T)).float()
            lse = torch.logsumexp(logits, 1)
            total += (lse - logits.gather(1, tc[:, None]).squeeze(1)).sum()
            if need_grad:
                grad = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                grad[torch.arange(len(tc), device=grad.device), tc] -= 1.0
                grad = grad.div_(n).to(h.dtype)
                gh[s : s + chunk] = grad @ w
                gw.addmm_(grad.T, hc)
                if gb is not None:
                    gb += grad.sum(0)
        ctx.save_for_backward(gh, gw, gb)
        return total / n

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out: torch.Tensor):
        gh, gw, gb = ctx.saved_tensors
        return gh * grad_out, gw * grad_out, gb * grad_out if gb is not None else None, None, None, None


def full_ce(h: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, n_items: int,
            bias: torch.Tensor | None = None, chunk_elements: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of the full softmax over items 1..n_items. h (N, D), targets (N,), weight (>=n_items+1, D).

    Computed in row chunks of at most ``chunk_elements`` logits (default :data:`CE_CHUNK_ELEMENTS`), so memory does
    not grow with N x n_items; the value and gradients are those of ``F.cross_entropy`` on the full logits.
    """
    # Score items 1..n_items only (row 0 is padding), so the targets shift down by one.
    w = weight[1 : n_items + 1]
    b = bias[1 : n_items + 1] if bias is not None else None
    chunk = max(1, (chunk_elements or CE_CHUNK_ELEMENTS) // n_items)
    need_grad = torch.is_grad_enabled() and (h.requires_grad or w.requires_grad or (b is not None and b.requires_grad))
    return _ChunkedSoftmaxCE.apply(h, w, b, targets - 1, chunk, need_grad)


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


def prior_logit(name: str, n_negatives: int, n_items: int, t: float = 0.75) -> float:
    """Logit at which a binary loss (``bce``, ``gbce``) is in balance when every item scores the same; 0 for the
    softmax losses, which do not see a shift shared by all items.

    With K negatives per target and the positive term weighted by beta, a common score s is stationary where
    beta (1 - sigmoid(s)) = K sigmoid(s), i.e. s = log(beta / K): -6.9 for gBCE with 256 negatives on Amazon Beauty.
    Starting the per-item output bias there matters: from 0, the first updates spend the encoder on pushing every
    score down together, and its states collapse onto one shared direction (same for every user) that training
    does not leave (SASRec + gBCE on Beauty stayed below validation NDCG@10 0.008 for 18 epochs; docs/benchmarks.md,
    "Which loss?").
    """
    if name not in ("bce", "gbce"):
        return 0.0
    beta = gbce_beta(n_negatives, n_items, t) if name == "gbce" else 1.0
    return math.log(beta / n_negatives)


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
