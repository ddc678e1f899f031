"""PersonalLoRA: starts as its base layer, gives each user their own low-rank update, and adds exactly it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recforge.errors import ConfigError
from recforge.nn.personal_lora import PersonalLoRA


def _layer(seed: int = 0, **kw) -> PersonalLoRA:
    torch.manual_seed(seed)
    return PersonalLoRA(nn.Linear(6, 5), n_experts=3, rank=2, user_dim=4, **kw)


def test_starts_as_the_base_layer():
    layer = _layer()
    x, u = torch.randn(7, 6), torch.randn(7, 4)
    assert torch.equal(layer(x, u), layer.base(x))
    assert torch.equal(layer.delta_weight(u), torch.zeros(7, 5, 6))


def test_each_user_gets_their_own_update_and_forward_adds_exactly_it():
    layer = _layer()
    with torch.no_grad():
        layer.lora_b.normal_()
    x = torch.randn(2, 6)
    users = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 0.0, -3.0, 1.0]])
    gates = layer.gates(users)
    assert torch.allclose(gates.sum(-1), torch.ones(2)) and not torch.allclose(gates[0], gates[1], atol=1e-3)
    delta = layer.delta_weight(users)  # (2, 5, 6)
    assert (delta[0] - delta[1]).abs().max() > 1e-2
    expected = layer.base(x) + torch.einsum("bod,bd->bo", delta, x)
    assert torch.allclose(layer(x, users), expected, atol=1e-5)
    # the same input through two users' layers differs; the same user twice does not
    same_x = x[:1].expand(2, 6)
    out = layer(same_x, users)
    assert not torch.allclose(out[0], out[1], atol=1e-3)
    assert torch.allclose(layer(same_x, users[:1].expand(2, 4)), out[:1].expand(2, 5), atol=1e-6)
    # leading dimensions broadcast: (B, L, d)
    assert layer(torch.randn(2, 3, 6), torch.randn(2, 3, 4)).shape == (2, 3, 5)


def test_alpha_scales_the_update_and_freeze_base_stops_its_training():
    layer = _layer(alpha=4.0, freeze_base=True)
    assert layer.scale == 2.0
    assert not any(p.requires_grad for p in layer.base.parameters())
    with torch.no_grad():
        layer.lora_b.normal_()
    layer(torch.randn(3, 6), torch.randn(3, 4)).sum().backward()
    assert layer.lora_a.grad is not None and layer.lora_b.grad is not None and layer.gate.weight.grad is not None


@pytest.mark.parametrize("kw", [{"n_experts": 0}, {"rank": 0}, {"user_dim": 0}])
def test_bad_sizes_are_config_errors(kw):
    args = {"n_experts": 2, "rank": 2, "user_dim": 4, **kw}
    with pytest.raises(ConfigError, match="PersonalLoRA"):
        PersonalLoRA(nn.Linear(3, 3), **args)
