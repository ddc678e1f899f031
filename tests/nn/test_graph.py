"""LightGCN propagation against a dense numpy reference on a tiny graph (duplicates, isolated nodes), its gradient
against dense autograd, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.errors import ConfigError
from recforge.nn.graph import normalized_adjacency, propagate

#: 4 users x 5 items; (1, 2) is seen twice (one edge), user 3 and item 4 have no edge (isolated)
USERS = np.array([0, 0, 1, 1, 1, 2, 0])
ITEMS = np.array([0, 1, 1, 2, 3, 3, 0])
N_USERS, N_ITEMS = 4, 5


def _dense_reference(layers: int, user_emb: np.ndarray, item_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The textbook formula with dense matrices: A bipartite 0/1, Â = D^-1/2 A D^-1/2 (0 for isolated nodes), mean of
    Â^k E for k = 0..K."""
    n = N_USERS + N_ITEMS
    a = np.zeros((n, n))
    for u, i in zip(USERS, ITEMS, strict=True):
        a[u, N_USERS + i] = a[N_USERS + i, u] = 1.0
    d = a.sum(1)
    inv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1.0)), 0.0)
    norm = inv[:, None] * a * inv[None, :]
    e = np.vstack([user_emb, item_emb])
    layers_out = [e]
    for _ in range(layers):
        layers_out.append(norm @ layers_out[-1])
    mean = np.mean(layers_out, axis=0)
    return mean[:N_USERS], mean[N_USERS:]


def test_adjacency_is_the_symmetric_normalised_bipartite_graph():
    adj = normalized_adjacency(USERS, ITEMS, N_USERS, N_ITEMS).to_dense().numpy()
    assert adj.shape == (9, 9) and np.allclose(adj, adj.T)
    assert adj[0, N_USERS + 0] == pytest.approx(1 / np.sqrt(2 * 1))  # user 0 has 2 items (duplicate counted once)
    assert adj[1, N_USERS + 3] == pytest.approx(1 / np.sqrt(3 * 2))  # user 1: 3 items; item 3: 2 users
    assert not adj[3].any() and not adj[N_USERS + 4].any()  # isolated nodes
    assert not adj[:N_USERS, :N_USERS].any() and not adj[N_USERS:, N_USERS:].any()  # bipartite


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_propagation_matches_the_dense_reference(layers):
    rng = np.random.default_rng(layers)
    user_emb, item_emb = rng.normal(size=(N_USERS, 3)), rng.normal(size=(N_ITEMS, 3))
    adj = normalized_adjacency(torch.from_numpy(USERS), torch.from_numpy(ITEMS), N_USERS, N_ITEMS)
    users, items = propagate(adj, torch.from_numpy(user_emb).float(), torch.from_numpy(item_emb).float(), layers)
    ref_users, ref_items = _dense_reference(layers, user_emb, item_emb)
    assert users.shape == (N_USERS, 3) and items.shape == (N_ITEMS, 3)
    np.testing.assert_allclose(users.numpy(), ref_users, atol=1e-6)
    np.testing.assert_allclose(items.numpy(), ref_items, atol=1e-6)
    np.testing.assert_allclose(items[4].numpy(), item_emb[4] / (layers + 1), atol=1e-6)  # isolated: own / (K+1)


def test_gradient_matches_dense_autograd():
    torch.manual_seed(0)
    user_emb = torch.randn(N_USERS, 3, dtype=torch.float64, requires_grad=True)
    item_emb = torch.randn(N_ITEMS, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(N_USERS + N_ITEMS, 3, dtype=torch.float64)
    adj = normalized_adjacency(USERS, ITEMS, N_USERS, N_ITEMS).double()
    users, items = propagate(adj, user_emb, item_emb, 2)
    (torch.cat([users, items]) * weights).sum().backward()
    sparse_grads = user_emb.grad.clone(), item_emb.grad.clone()
    user_emb.grad, item_emb.grad = None, None
    dense = adj.to_dense()
    e0 = torch.cat([user_emb, item_emb])
    e1 = dense @ e0
    ((e0 + e1 + dense @ e1) / 3 * weights).sum().backward()
    torch.testing.assert_close(sparse_grads[0], user_emb.grad)
    torch.testing.assert_close(sparse_grads[1], item_emb.grad)


@pytest.mark.parametrize("call, message", [
    (lambda: normalized_adjacency(np.array([0, 1]), np.array([0]), 2, 2), "one entry per pair"),
    (lambda: normalized_adjacency(np.array([0, 2]), np.array([0, 1]), 2, 2), r"\[0, 2\) x \[0, 2\)"),
    (lambda: normalized_adjacency(np.array([0]), np.array([-1]), 2, 2), "must lie in"),
    (lambda: propagate(normalized_adjacency(USERS, ITEMS, N_USERS, N_ITEMS), torch.zeros(N_USERS, 2),
                       torch.zeros(N_ITEMS, 2), -1), "layers"),
    (lambda: propagate(normalized_adjacency(USERS, ITEMS, N_USERS, N_ITEMS), torch.zeros(N_USERS, 2),
                       torch.zeros(N_ITEMS + 1, 2), 1), "nodes"),
])
def test_bad_inputs_are_config_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
