"""Losses against naive per-row references."""

from __future__ import annotations

import math

import pytest
import torch

from recforge.errors import ConfigError
from recforge.nn.losses import bce, full_ce, gbce, gbce_beta, prior_logit, sampled_softmax, sequence_loss


def _setup(n: int = 6, d: int = 4, n_items: int = 9, k: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(n_items + 1, d, generator=g, dtype=torch.float64)
    bias = torch.randn(n_items + 1, generator=g, dtype=torch.float64)
    targets = torch.randint(1, n_items + 1, (n,), generator=g)
    negatives = torch.randint(1, n_items + 1, (n, k), generator=g)
    negatives[0, 0] = targets[0]  # an accidental hit must be ignored
    return h, w, bias, targets, negatives


def _score(h, w, bias, i, j):
    return float(h[i] @ w[j] + bias[j])


def test_full_ce_matches_naive_softmax():
    h, w, bias, t, _ = _setup()
    n_items = w.shape[0] - 1
    expected = 0.0
    for i in range(len(t)):
        logits = [_score(h, w, bias, i, j) for j in range(1, n_items + 1)]
        expected += -(logits[int(t[i]) - 1] - math.log(sum(math.exp(x) for x in logits)))
    assert float(full_ce(h, t, w, n_items, bias)) == pytest.approx(expected / len(t), rel=1e-5)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("chunk_elements", [1, 27, 10_000])
def test_chunked_full_ce_has_the_value_and_gradients_of_plain_cross_entropy(with_bias, chunk_elements):
    """The loss never holds all N x V logits; value and gradients (h, weight, bias) must still be exact."""
    h, w, bias, t, _ = _setup(n=11, d=5, n_items=13, seed=2)
    h, w, bias = (x.float().requires_grad_() for x in (h, w, bias))
    b = bias if with_bias else None
    n_items = w.shape[0] - 1
    ours = full_ce(h, t, w, n_items, b, chunk_elements=chunk_elements)
    (2.5 * ours).backward()  # a non-unit upstream gradient must scale every gradient
    got = [x.grad.clone() for x in (h, w, bias) if x.grad is not None]
    for x in (h, w, bias):
        x.grad = None
    logits = h @ w[1:].T + (bias[1:] if with_bias else 0.0)
    ref = torch.nn.functional.cross_entropy(logits, t - 1)
    (2.5 * ref).backward()
    want = [x.grad for x in (h, w, bias) if x.grad is not None]
    torch.testing.assert_close(ours, ref)
    assert len(got) == len(want) == (3 if with_bias else 2)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r)
    with torch.no_grad():  # evaluation path: no gradients are computed or kept
        torch.testing.assert_close(full_ce(h, t, w, n_items, b, chunk_elements=chunk_elements), ref.detach())


def _naive_bce(h, w, bias, t, neg, beta=1.0):
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    total = 0.0
    for i in range(len(t)):
        total += -beta * math.log(sig(_score(h, w, bias, i, int(t[i]))))
        for j in neg[i].tolist():
            if j != int(t[i]):
                total += -math.log(1 - sig(_score(h, w, bias, i, j)))
    return total / len(t)


def test_bce_matches_naive_and_skips_accidental_hits():
    h, w, bias, t, neg = _setup()
    assert float(bce(h, t, neg, w, bias)) == pytest.approx(_naive_bce(h, w, bias, t, neg), rel=1e-5)


def test_bce_with_shared_negatives_equals_broadcast_per_row():
    h, w, bias, t, neg = _setup()
    shared = neg[1]
    per_row = shared.expand(len(t), -1)
    assert float(bce(h, t, shared, w, bias)) == pytest.approx(float(bce(h, t, per_row, w, bias)), rel=1e-6)


def test_gbce_beta_and_reference():
    assert gbce_beta(5, 101, 0.0) == pytest.approx(1.0)
    assert gbce_beta(5, 101, 1.0) == pytest.approx(5 / 100)
    h, w, bias, t, neg = _setup()
    n_items = w.shape[0] - 1
    beta = gbce_beta(neg.shape[1], n_items, 0.75)
    assert 0 < beta < 1
    got = float(gbce(h, t, neg, w, n_items, t=0.75, bias=bias))
    assert got == pytest.approx(_naive_bce(h, w, bias, t, neg, beta=beta), rel=1e-5)


@pytest.mark.parametrize(("name", "k"), [("bce", 1), ("bce", 8), ("gbce", 256)])
def test_prior_logit_is_where_a_common_score_is_in_balance(name, k):
    """Every item scoring the prior logit (zero states, the bias alone): the loss is flat in a shared shift."""
    n_items, n = 12_000, 64
    weight = torch.zeros(n_items + 1, 4)
    shift = torch.zeros((), requires_grad=True)
    bias = torch.full((n_items + 1,), prior_logit(name, k, n_items)) + shift
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(1, n_items // 2, (n,), generator=g)  # disjoint from the negatives: no hits to drop
    negatives = torch.randint(n_items // 2, n_items + 1, (n, k), generator=g)
    loss = bce(torch.zeros(n, 4), targets, negatives, weight, bias,
               beta=gbce_beta(k, n_items, 0.75) if name == "gbce" else 1.0)
    (grad,) = torch.autograd.grad(loss, shift)
    assert abs(float(grad)) < 1e-5
    assert prior_logit("ce", k, n_items) == prior_logit("sampled_softmax", k, n_items) == 0.0
    if name == "gbce":
        assert prior_logit(name, k, n_items) == pytest.approx(math.log(gbce_beta(k, n_items, 0.75) / k))


def test_sampled_softmax_with_logq_matches_naive():
    h, w, bias, t, neg = _setup()
    g = torch.Generator().manual_seed(1)
    q = torch.rand(w.shape[0], generator=g, dtype=torch.float64) + 0.1
    log_q = torch.log(q / q.sum())
    expected = 0.0
    for i in range(len(t)):
        pos = _score(h, w, bias, i, int(t[i])) - float(log_q[t[i]])
        negs = [_score(h, w, bias, i, j) - float(log_q[j]) for j in neg[i].tolist() if j != int(t[i])]
        expected += -(pos - math.log(math.exp(pos) + sum(math.exp(x) for x in negs)))
    got = float(sampled_softmax(h, t, neg, w, log_q, bias))
    assert got == pytest.approx(expected / len(t), rel=1e-5)


def test_sampled_softmax_uniform_logq_is_a_constant_shift():
    h, w, bias, t, neg = _setup()
    uniform = torch.full((w.shape[0],), -math.log(w.shape[0] - 1), dtype=torch.float64)
    assert float(sampled_softmax(h, t, neg, w, uniform, bias)) == pytest.approx(
        float(sampled_softmax(h, t, neg, w, None, bias)), rel=1e-6)


def test_sampled_softmax_with_all_items_equals_full_ce_without_bias_correction():
    h, w, bias, t, _ = _setup()
    n_items = w.shape[0] - 1
    all_items = torch.arange(1, n_items + 1)
    assert float(sampled_softmax(h, t, all_items, w, None, bias)) == pytest.approx(
        float(full_ce(h, t, w, n_items, bias)), rel=1e-6)


def test_sequence_loss_selects_target_positions():
    h, w, bias, t, neg = _setup(n=6)
    n_items = w.shape[0] - 1
    hidden = h.view(2, 3, -1)
    target = t.view(2, 3).clone()
    target[0, 0] = 0  # no target at this position
    batch = {"target": target, "negatives": neg.view(2, 3, -1)}
    keep = target.view(-1) > 0
    assert float(sequence_loss("ce", hidden, batch, w, n_items, bias)) == pytest.approx(
        float(full_ce(h[keep], t[keep], w, n_items, bias)))
    assert float(sequence_loss("bce", hidden, batch, w, n_items, bias)) == pytest.approx(
        float(bce(h[keep], t[keep], neg[keep], w, bias)))


def test_unknown_loss_is_a_config_error():
    h, w, bias, t, _ = _setup()
    with pytest.raises(ConfigError, match="loss must be one of"):
        sequence_loss("hinge", h.view(2, 3, -1), {"target": t.view(2, 3)}, w, w.shape[0] - 1)
