"""PersonalLoRA: a per-user mixture of low-rank adapters added to a linear layer (RecLoRA's personalised LoRA).

K low-rank experts ``B_k A_k`` (A_k: (r, d_in), B_k: (d_out, r)) are shared by every user; a gate computed from the
user's history representation ``u`` mixes them, so each user gets their own low-rank update of the base layer:

    y = base(x) + (alpha / r) * sum_k g_k(u) * B_k A_k x,      g(u) = softmax(W_g LN(u) + c_g)   (K gates)

B_k start at zero (the adapted layer starts as the base layer, as in LoRA); A_k and the gate are initialised at
random. The gate reads the layer-normalised user representation, so its logits start at order 1 whatever the scale of
``u`` (a mean of unit vectors is short), and different users start with visibly different mixtures. Shapes: x (..., d_in), u (..., d_user) with the same leading shape -> y (..., d_out).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recforge.errors import ConfigError


class PersonalLoRA(nn.Module):
    """``base`` (an ``nn.Linear``) plus ``n_experts`` rank-``rank`` adapters mixed by a user gate over ``user_dim``
    features. ``freeze_base`` stops the base layer's training (the adapters and the gate are always trained)."""

    def __init__(self, base: nn.Linear, n_experts: int, rank: int, user_dim: int, alpha: float | None = None,
                 freeze_base: bool = False):
        super().__init__()
        if n_experts < 1 or rank < 1 or user_dim < 1:
            raise ConfigError(f"PersonalLoRA needs n_experts, rank and user_dim >= 1, got {n_experts}, {rank}, "
                              f"{user_dim}")
        self.base = base
        if freeze_base:
            base.requires_grad_(False)
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        d_in, d_out = base.in_features, base.out_features
        self.lora_a = nn.Parameter(torch.randn(n_experts, rank, d_in) / math.sqrt(d_in))
        self.lora_b = nn.Parameter(torch.zeros(n_experts, d_out, rank))
        self.gate_norm = nn.LayerNorm(user_dim)
        self.gate = nn.Linear(user_dim, n_experts)

    @property
    def n_experts(self) -> int:
        return self.lora_a.shape[0]

    def gates(self, user: torch.Tensor) -> torch.Tensor:
        """user (..., d_user) -> mixture weights (..., K), each row summing to 1."""
        return torch.softmax(self.gate(self.gate_norm(user)), dim=-1)

    def delta_weight(self, user: torch.Tensor) -> torch.Tensor:
        """The user-specific update of the base weight: user (..., d_user) -> (..., d_out, d_in)."""
        per_expert = self.lora_b @ self.lora_a  # (K, d_out, d_in)
        return self.scale * torch.einsum("...k,kod->...od", self.gates(user), per_expert)

    def forward(self, x: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """x (..., d_in), user (..., d_user) -> (..., d_out): base(x) plus the user's mixture of low-rank updates."""
        low = torch.einsum("...d,krd->...kr", x, self.lora_a)  # (..., K, r): every expert's down-projection
        up = torch.einsum("...kr,kor->...ko", low, self.lora_b)  # (..., K, d_out)
        mixed = (self.gates(user).unsqueeze(-1) * up).sum(-2)
        return self.base(x) + self.scale * mixed
