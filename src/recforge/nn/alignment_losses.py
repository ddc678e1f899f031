"""Objectives that align collaborative-filtering (CF) embeddings with text vectors (language-model representations).

- :func:`info_nce`: the contrastive text <-> CF objective (RLMRec-Con): row k of one view and row k of the other are
  a positive pair, every other row of the batch a negative; cosine similarities over a temperature, both directions.
- :func:`reconstruction_loss`: the generative objective (RLMRec-Gen): a CF vector mapped into the text space must
  reconstruct its text vector (1 - cosine, no negatives).
- :func:`item_item_contrastive`: items that co-occur in a user's history are positives (ILM's item-item term);
  in-batch negatives that are the positive's own item are masked (a repeated item is not a negative of itself).
- :func:`user_post_alignment`: Molar's post-alignment: a content-side user vector (from the user's item texts) is
  pulled toward the user's trained CF vector, which stays fixed (no gradient reaches the CF side).

Every function takes (B, d) row-aligned batches and returns a scalar; rows need not be normalised (the losses use
cosines). ``temperature`` must be > 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recforge.errors import ConfigError

#: value given to masked logits (finite: a row whose negatives are all masked keeps a finite loss and gradient)
MASKED_LOGIT = -1e9


def _cosine_logits(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, d), (B, d) -> (B, B) cosine similarities / temperature."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if a.ndim != 2 or a.shape != b.shape:
        raise ConfigError(f"both views must be (B, d) with the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return F.normalize(a, dim=1, eps=1e-8) @ F.normalize(b, dim=1, eps=1e-8).T / temperature


def _same_id_mask(ids: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor | None:
    """(B,) ids -> bool (B, B): True where two different rows carry the same id (false negatives), or None."""
    if ids is None:
        return None
    same = ids[:, None] == ids[None, :]
    return same & ~torch.eye(n, dtype=torch.bool, device=device)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2, *, ids: torch.Tensor | None = None,
             symmetric: bool = True) -> torch.Tensor:
    """Contrastive loss between two views of the same B things: a (B, d), b (B, d) -> scalar.

    ``-mean_k log softmax_j(cos(a_k, b_j) / temperature)[k]``, averaged with the b -> a direction when
    ``symmetric``. ``ids`` (B,) optional: other rows with the same id as row k are not negatives of k (masked)."""
    logits = _cosine_logits(a, b, temperature)
    mask = _same_id_mask(ids, len(a), a.device)
    if mask is not None:
        logits = logits.masked_fill(mask, MASKED_LOGIT)
    target = torch.arange(len(a), device=a.device)
    loss = F.cross_entropy(logits, target)
    return 0.5 * (loss + F.cross_entropy(logits.T, target)) if symmetric else loss


def reconstruction_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Generative alignment: mean ``1 - cos(predicted_k, target_k)`` over rows; predicted (B, d) (CF vectors mapped
    into the text space), target (B, d) (text vectors) -> scalar in [0, 2]. Rows whose target is zero (items without
    text) are left out; with none left the loss is 0."""
    if predicted.shape != target.shape:
        raise ConfigError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} must match")
    keep = target.abs().sum(1) > 0
    if not keep.any():
        return predicted.sum() * 0.0
    cos = F.cosine_similarity(predicted[keep], target[keep], dim=1, eps=1e-8)
    return (1.0 - cos).mean()


def item_item_contrastive(anchors: torch.Tensor, partners: torch.Tensor, partner_ids: torch.Tensor,
                          temperature: float = 0.2) -> torch.Tensor:
    """Item-item contrastive loss over co-occurrence: anchors (B, d) the representations of items i_k, partners
    (B, d) those of items j_k that co-occur with i_k (e.g. in one user's history), partner_ids (B,) the items j_k.
    One direction (anchor -> partner); in-batch partners that are the same item as the positive are masked."""
    return info_nce(anchors, partners, temperature, ids=partner_ids, symmetric=False)


def user_post_alignment(content: torch.Tensor, cf: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Post-alignment of users: content (B, d) user vectors from the content side (e.g. a trained map of the mean
    text vector of the user's items), cf (B, d) the users' trained CF vectors, held fixed -> scalar. One direction
    (content -> CF) with in-batch negatives; the gradient reaches the content side only."""
    return info_nce(content, cf.detach(), temperature, symmetric=False)
