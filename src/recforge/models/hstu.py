"""HSTU (Zhai et al., "Actions Speak Louder than Words", ICML 2024): hierarchical sequential transduction units.

Each layer computes U, V, Q, K = split(SiLU(f1(LN(x)))), pointwise attention A = SiLU(Q K^T + rab) / max_len without a
softmax (so attention strength is not normalised away: how much of a history matches is itself a signal),
masked causally, and the gated output ``x + f2(LN(A V) * U)``. The relative attention bias ``rab`` has a learned
term per (head, distance i - j) and, when timestamps are known, a learned term per (head, log2 bucket of the time
gap t_i - t_j). Ad-hoc histories scored without timestamps use the position term only. As in the reference code
(generative-recommenders), learned absolute position embeddings can be added to the scaled item embeddings at the
input (``position_emb``); off by default, as the paper describes HSTU by its relative bias alone, and on Amazon
Beauty they did not help (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recforge.errors import ConfigError
from recforge.models.base import TimedHistoryScoring
from recforge.models.sequential import AttentionConfig, SequenceNet, SequentialRecommender
from recforge.nn.attention import right_aligned_positions
from recforge.train.trainer import TrainConfig


@dataclass(frozen=True)
class HSTUConfig(AttentionConfig):
    """HSTU hyper-parameters: :class:`AttentionConfig` (``n_heads`` must also divide linear_dim and attention_dim when
    set; ``dropout`` is on embeddings and layer outputs) plus HSTU's own."""

    linear_dim: int = 0  # width of U and V over all heads (the reference code's linear_dim x heads); 0: dim
    attention_dim: int = 0  # width of Q and K over all heads (the reference's attention_dim x heads); 0: dim
    attn_dropout: float = 0.0  # dropout on the attention weights SiLU(QK^T + rab) (the reference's attn_dropout_ratio)
    time_bias: bool = True  # add the time-gap relative bias when the data has timestamps
    n_time_buckets: int = 64  # log2 buckets of the time gap (gaps beyond 2^63 share the last one)
    position_emb: bool = False  # add learned absolute position embeddings to the input (the reference code does)
    reference_layer: bool = False  # the reference code's layer details (see HSTULayer); off: torch defaults

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_time_buckets < 1:
            raise ConfigError(f"n_time_buckets must be >= 1, got {self.n_time_buckets}")
        if not 0.0 <= self.attn_dropout < 1.0:
            raise ConfigError(f"attn_dropout must be in [0, 1), got {self.attn_dropout}")
        for name in ("linear_dim", "attention_dim"):
            width = getattr(self, name)
            if width < 0 or width % self.n_heads:
                raise ConfigError(f"{name} must be 0 (= dim) or a positive multiple of n_heads "
                                  f"(n_heads={self.n_heads}), got {width}")


def time_buckets(times: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """times (B, L) -> (B, L, L) bucket ids floor(log2(1 + max(t_i - t_j, 0))), capped at n_buckets - 1."""
    gap = (times[:, :, None] - times[:, None, :]).clamp(min=0).double()
    return torch.log2(gap + 1.0).floor().long().clamp(max=n_buckets - 1)


class HSTULayer(nn.Module):
    """One HSTU layer: (B, L, D) -> (B, L, D). U and V are ``linear_dim`` wide, Q and K ``attention_dim`` (all heads);
    the output projection maps ``linear_dim`` back to D.

    ``reference_layer`` follows the reference code (generative-recommenders) where it differs from torch defaults:
    a bias-free U/V/Q/K projection drawn from N(0, 0.02), a Xavier-uniform output projection, LayerNorms without
    affine parameters (eps 1e-6), and dropout on ``LN(A V) * U`` before the output projection rather than after it.
    """

    def __init__(self, cfg: HSTUConfig):
        super().__init__()
        dim, self.n_heads, self.max_len, self.reference = cfg.dim, cfg.n_heads, cfg.max_len, cfg.reference_layer
        self.linear_dim, self.attention_dim = cfg.linear_dim or dim, cfg.attention_dim or dim
        self.attn_dropout = nn.Dropout(cfg.attn_dropout)
        norm_kw = {"eps": 1e-6, "elementwise_affine": False} if self.reference else {}
        self.norm_in = nn.LayerNorm(dim, **norm_kw)
        self.uvqk = nn.Linear(dim, 2 * self.linear_dim + 2 * self.attention_dim, bias=not self.reference)
        self.norm_att = nn.LayerNorm(self.linear_dim, **norm_kw)
        self.out = nn.Linear(self.linear_dim, dim)
        self.dropout = nn.Dropout(cfg.dropout)
        if self.reference:
            nn.init.normal_(self.uvqk.weight, std=0.02)
            nn.init.xavier_uniform_(self.out.weight)
        self.pos_bias = nn.Embedding(cfg.max_len, cfg.n_heads)
        self.time_bias = nn.Embedding(cfg.n_time_buckets, cfg.n_heads) if cfg.time_bias else None
        nn.init.zeros_(self.pos_bias.weight)
        if self.time_bias is not None:
            nn.init.zeros_(self.time_bias.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, distance: torch.Tensor,
                buckets: torch.Tensor | None, last_only: bool = False) -> torch.Tensor:
        """x (B, L, D); mask (B, 1, L, L) float 0/1; distance (L, L) long i - j clamped to >= 0; buckets (B, L, L).
        Returns (B, L, D), or (B, 1, D) with ``last_only`` (only the final position's query; inference)."""
        b, length, _ = x.shape
        h, lin, att_dim = self.n_heads, self.linear_dim, self.attention_dim
        u, v, q, k = F.silu(self.uvqk(self.norm_in(x))).split([lin, lin, att_dim, att_dim], dim=-1)
        if last_only:
            x, u, q, mask, distance = x[:, -1:], u[:, -1:], q[:, -1:], mask[:, :, -1:], distance[-1:]
            buckets = buckets[:, -1:] if buckets is not None else None
        q = q.reshape(b, q.shape[1], h, att_dim // h).transpose(1, 2)
        k = k.reshape(b, length, h, att_dim // h).transpose(1, 2)
        v = v.reshape(b, length, h, lin // h).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) + self.pos_bias(distance).permute(2, 0, 1).unsqueeze(0)
        if buckets is not None and self.time_bias is not None:
            scores = scores + self.time_bias(buckets).permute(0, 3, 1, 2)
        # A fixed normaliser (not the batch's trimmed length) keeps training and scoring on the same scale.
        att = self.attn_dropout(F.silu(scores) * mask / self.max_len)
        o = (att @ v).transpose(1, 2).reshape(b, q.shape[2], lin)
        gated = self.norm_att(o) * u
        if self.reference:
            return x + self.out(self.dropout(gated))
        return x + self.dropout(self.out(gated))


class HSTUNet(SequenceNet):
    """Item embeddings -> HSTU layers -> LayerNorm; the item table doubles as the output layer."""

    def __init__(self, n_items: int, cfg: HSTUConfig):
        super().__init__(n_items, cfg.loss, cfg.gbce_t, cfg.temperature)
        self.n_time_buckets = cfg.n_time_buckets
        self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=cfg.dim**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim) if cfg.position_emb else None
        if self.pos_emb is not None:
            nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(HSTULayer(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.dim)

    @property
    def item_weight(self) -> torch.Tensor:
        return self.item_emb.weight

    def encode(self, items: torch.Tensor, times: torch.Tensor | None = None, last_only: bool = False
               ) -> torch.Tensor:
        """items (B, L) (+ times (B, L)) -> (B, L, D); (B, 1, D) with ``last_only`` (see :class:`HSTULayer`)."""
        length = items.shape[1]
        real = items > 0
        pos = torch.arange(length, device=items.device)
        distance = (pos[:, None] - pos[None, :]).clamp(min=0)
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        mask = (causal[None] & real[:, None, :] & real[:, :, None]).unsqueeze(1).to(self.item_emb.weight.dtype)
        buckets = time_buckets(times, self.n_time_buckets) if times is not None else None
        x = self.item_emb(items) * self.item_emb.embedding_dim**0.5
        if self.pos_emb is not None:
            x = x + right_aligned_positions(self.pos_emb, length, items.device)[None]
        x = self.dropout(x) * real.unsqueeze(-1)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, distance, buckets, last_only=last_only and i == len(self.layers) - 1)
        return self.norm(x)

    def last_hidden(self, items: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(items, times, last_only=True)[:, -1]


class HSTU(SequentialRecommender, TimedHistoryScoring):
    """Generative sequential recommendation with pointwise (softmax-free) gated attention; a TimedHistoryScorer (its
    time-gap bias uses the events' timestamps)."""

    name = "hstu"
    config_class = HSTUConfig
    #: small and fast, for the shared contract tests
    test_config = HSTUConfig(dim=32, n_layers=1, n_heads=1, max_len=20,
                              train=TrainConfig(epochs=8, batch_size=64, lr=3e-3, threads=1))

    def _build_net(self, n_items: int) -> HSTUNet:
        return HSTUNet(n_items, self.config)
