"""Self-attention blocks shared by SASRec (causal) and BERT4Rec (bidirectional), plus their attention masks.

Sequences are left-padded with item 0. Masks are boolean with True = may attend. Every query may always attend to
itself, so that rows of padding never see an all-masked row (which would turn softmax into NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(items: torch.Tensor, causal: bool) -> torch.Tensor:
    """items (B, L) -> boolean mask (B, 1, L, L): query i may attend key j when j is not padding (and j <= i if
    causal); the diagonal is always allowed."""
    length = items.shape[1]
    keys = (items > 0)[:, None, None, :]
    eye = torch.eye(length, dtype=torch.bool, device=items.device)
    if causal:
        keys = keys & torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
    return keys | eye


class FeedForward(nn.Module):
    """Position-wise two-layer MLP with GELU: (B, L, D) -> (B, L, D)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm transformer layer: x + MHA(LN(x)), then x + FFN(LN(x)). Input/output (B, L, D).

    Pre-norm (rather than SASRec's original post-norm) trains stably without a learning-rate warm-up.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float, ffn_mult: int = 4):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_mult * dim, dropout)
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x (B, L, D), mask (B, 1, L, L) boolean -> (B, L, D); with ``last_only`` only the last position is
        computed, -> (B, 1, D) (keys and values still come from every position)."""
        b, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if last_only:
            q, mask, x = q[:, :, -1:], mask[:, :, -1:], x[:, -1:]
        att = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        x = x + self.dropout(self.out(att.transpose(1, 2).reshape(b, q.shape[2], d)))
        return x + self.dropout(self.ffn(self.norm2(x)))


def right_aligned_positions(pos_emb: nn.Embedding, length: int, device: torch.device) -> torch.Tensor:
    """Position embeddings (L, D) of a left-padded window of ``length`` columns, counted back from the last slot:
    a batch trimmed of all-padding columns keeps each item's position (the newest item is always at max_len - 1)."""
    n_pos = pos_emb.num_embeddings
    return pos_emb(torch.arange(n_pos - length, n_pos, device=device))


class TransformerEncoder(nn.Module):
    """Item + learned position embeddings -> stack of :class:`TransformerBlock` -> final LayerNorm.

    ``n_tokens`` rows of item embeddings (items 0..n_items, plus a mask token for cloze models); row 0 is padding.
    forward: items (B, L) -> hidden (B, L, D).
    """

    def __init__(self, n_tokens: int, max_len: int, dim: int, n_layers: int, n_heads: int, dropout: float,
                 causal: bool):
        super().__init__()
        self.causal = causal
        self.item_emb = nn.Embedding(n_tokens, dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, items: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """items (B, L) -> hidden (B, L, D); with ``last_only`` the last block computes only the final position
        (inference), -> (B, 1, D)."""
        pos = right_aligned_positions(self.pos_emb, items.shape[1], items.device)
        # Scale by sqrt(D) so item identity dominates the small position embedding at initialisation.
        x = self.item_emb(items) * self.item_emb.embedding_dim**0.5 + pos[None]
        x = self.dropout(x) * (items > 0).unsqueeze(-1)
        mask = attention_mask(items, self.causal)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only=last_only and i == len(self.blocks) - 1)
        return self.norm(x)
