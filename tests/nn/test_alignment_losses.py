"""The alignment objectives: hand-computed values, gradients (finite differences), masking and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from recforge.errors import ConfigError
from recforge.nn.alignment_losses import (
    info_nce,
    item_item_contrastive,
    reconstruction_loss,
    user_post_alignment,
)

EYE = torch.eye(2)


def test_info_nce_matches_the_hand_value():
    # cos = identity: logits diag(1/T); each row's loss is log(1 + e^{-1/T})
    assert info_nce(EYE, EYE, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1.0)), abs=1e-6)
    assert info_nce(EYE, EYE, 0.5).item() == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-6)
    # unnormalised rows give the same loss (cosines)
    assert info_nce(3 * EYE, 0.1 * EYE, 0.5).item() == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-6)
    # swapped pairs: the positive has cosine 0, the negative 1 -> log(1 + e^{1/T})
    assert info_nce(EYE, EYE.flip(0), 1.0).item() == pytest.approx(math.log(1 + math.e), abs=1e-6)


def test_info_nce_symmetric_averages_both_directions():
    a, b = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), torch.randn(5, 3)
    one = info_nce(a, b, 0.3, symmetric=False)
    other = info_nce(b, a, 0.3, symmetric=False)
    assert info_nce(a, b, 0.3).item() == pytest.approx(0.5 * (one + other).item(), abs=1e-6)


def test_info_nce_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: info_nce(x, y, 0.4), (a, b))
    assert torch.autograd.gradcheck(lambda x, y: reconstruction_loss(x, y), (a, b))


def test_info_nce_gradient_at_a_hand_point():
    # a = e1, b = [e1, e2], T = 1, one direction: loss = -log softmax([1, 0])[0]; d loss / d logit = p - onehot
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    info_nce(a, EYE, 1.0, symmetric=False).backward()
    p = 1 / (1 + math.e)  # weight of the negative
    # d/d a_0 of the normalised cosines at a unit vector: the tangential part of (p - 1) e1 + p e2 -> (0, p) / 2
    assert a.grad[0].tolist() == pytest.approx([0.0, p / 2], abs=1e-6)


def test_same_id_rows_are_not_negatives():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert info_nce(a, a, 1.0, symmetric=False).item() == pytest.approx(math.log(2), abs=1e-6)
    # the two rows are the same item: the other row is masked, each row's softmax has one entry -> 0
    masked = item_item_contrastive(a, a, torch.tensor([7, 7]), 1.0)
    assert masked.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(masked)


def test_reconstruction_loss_values_and_rows_without_text():
    assert reconstruction_loss(EYE, EYE).item() == pytest.approx(0.0, abs=1e-6)
    assert reconstruction_loss(EYE, EYE.flip(0)).item() == pytest.approx(1.0, abs=1e-6)
    assert reconstruction_loss(EYE, -EYE).item() == pytest.approx(2.0, abs=1e-6)
    target = torch.tensor([[0.0, 1.0], [0.0, 0.0]])  # the second row has no text: left out
    assert reconstruction_loss(EYE.flip(0), target).item() == pytest.approx(0.0, abs=1e-6)
    pred = torch.ones(2, 2, requires_grad=True)
    loss = reconstruction_loss(pred, torch.zeros(2, 2))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_user_post_alignment_moves_the_content_side_only():
    content = torch.randn(4, 3, requires_grad=True)
    cf = torch.randn(4, 3, requires_grad=True)
    loss = user_post_alignment(content, cf, 0.2)
    loss.backward()
    assert cf.grad is None and content.grad is not None and content.grad.abs().sum() > 0
    assert loss.item() == pytest.approx(info_nce(content, cf, 0.2, symmetric=False).item(), abs=1e-6)


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="temperature"):
        info_nce(EYE, EYE, 0.0)
    with pytest.raises(ConfigError, match="same shape"):
        info_nce(EYE, torch.ones(3, 2), 0.2)
    with pytest.raises(ConfigError, match="must match"):
        reconstruction_loss(EYE, torch.ones(2, 3))
