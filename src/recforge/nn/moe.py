"""Sparse mixture-of-experts feed-forward: a router sends every token to its top-2 experts (Switch/GShard style).

Each expert is a two-layer GELU MLP; a token's output is the gate-weighted sum of its two experts' outputs (the two
gates renormalised to sum to 1). The load-balancing loss (Switch Transformer) is ``E * sum_e f_e * p_e`` with f_e
the share of tokens whose FIRST choice is expert e and p_e the mean router probability of e: 1 when the load is
uniform, up to E when every token goes to one expert. It is kept in ``aux_loss`` after each forward pass, for the
model to add to its training loss.

Shapes: x (..., D) -> (..., D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recforge.errors import ConfigError
from recforge.nn.attention import FeedForward


class MoEFeedForward(nn.Module):
    """Top-``top_k`` routed experts, each ``FeedForward(dim, hidden)``; ``aux_loss`` after every forward."""

    def __init__(self, dim: int, hidden: int, dropout: float, n_experts: int, top_k: int = 2):
        super().__init__()
        if n_experts < 2 or not 1 <= top_k <= n_experts:
            raise ConfigError(f"a mixture of experts needs >= 2 experts and 1 <= top_k <= experts, got "
                              f"experts={n_experts}, top_k={top_k}")
        self.top_k = top_k
        self.router = nn.Linear(dim, n_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(dim, hidden, dropout) for _ in range(n_experts))
        self.aux_loss = torch.zeros(())
        #: tokens routed to each expert (first choice) in the last forward pass, for inspection
        self.last_load = torch.zeros(n_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        probs = torch.softmax(self.router(flat).float(), dim=-1)  # (N, E)
        gate, choice = probs.topk(self.top_k, dim=-1)  # (N, k)
        gate = (gate / gate.sum(-1, keepdim=True)).to(flat.dtype)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.nonzero(choice == e, as_tuple=True)
            if len(rows):
                out.index_add_(0, rows, expert(flat[rows]) * gate[rows, slot, None])
        n_e = probs.shape[1]
        first = F.one_hot(choice[:, 0], n_e).float()
        self.last_load = first.sum(0).detach()
        self.aux_loss = n_e * (first.mean(0) * probs.mean(0)).sum() if len(flat) else probs.new_zeros(())
        return out.reshape(shape)


def make_ffn(dim: int, hidden: int, dropout: float, n_experts: int) -> nn.Module:
    """A dense :class:`FeedForward` (``n_experts`` = 0) or a top-2 :class:`MoEFeedForward` of ``n_experts``."""
    if n_experts == 0:
        return FeedForward(dim, hidden, dropout)
    return MoEFeedForward(dim, hidden, dropout, n_experts, top_k=2)


def moe_aux_loss(module: nn.Module) -> torch.Tensor:
    """Sum of the load-balancing losses of every :class:`MoEFeedForward` inside ``module`` (0 without any)."""
    losses = [m.aux_loss for m in module.modules() if isinstance(m, MoEFeedForward)]
    return torch.stack(losses).sum() if losses else torch.zeros(())
