"""Graph propagation over the user-item bipartite graph (LightGCN, He et al., SIGIR 2020).

- :func:`normalized_adjacency`: the symmetric-normalised adjacency ``D^-1/2 A D^-1/2`` of the bipartite graph of
  observed (user, item) pairs, as one torch sparse matrix built once from the training log.
- :func:`propagate`: LightGCN's layer combination: ``E^(k+1) = Â E^(k)`` for k = 0..K-1 from the ID embeddings
  ``E^(0)``, and the mean of ``E^(0) .. E^(K)``. Differentiable in the embeddings (one sparse-dense product per layer,
  no Python loop over nodes).

Nodes are numbered users first, then items: node ``u`` is user row ``u``, node ``n_users + i`` is item row ``i``.
Rows without an edge (padding rows, users or items absent from the log) are isolated: their propagated vector is
their own embedding divided by ``K + 1``.
"""

from __future__ import annotations

import numpy as np
import torch

from recforge.errors import ConfigError


def normalized_adjacency(users: np.ndarray | torch.Tensor, items: np.ndarray | torch.Tensor, n_users: int,
                         n_items: int) -> torch.Tensor:
    """The bipartite graph of E observed pairs as a coalesced sparse COO float32 matrix ``D^-1/2 A D^-1/2`` of shape
    (n_users + n_items, n_users + n_items).

    users (E,), items (E,) int: row indices in ``[0, n_users)`` and ``[0, n_items)`` of each pair; a pair seen more
    than once is one edge. ``A`` is symmetric with ``A[u, n_users + i] = A[n_users + i, u] = 1`` per edge; ``D`` its
    diagonal degree matrix (isolated nodes keep zero rows)."""
    u = torch.as_tensor(np.asarray(users), dtype=torch.long).reshape(-1)
    i = torch.as_tensor(np.asarray(items), dtype=torch.long).reshape(-1)
    if len(u) != len(i):
        raise ConfigError(f"users ({len(u)}) and items ({len(i)}) must have one entry per pair")
    if len(u) and (int(u.min()) < 0 or int(u.max()) >= n_users or int(i.min()) < 0 or int(i.max()) >= n_items):
        raise ConfigError(f"pair indices must lie in [0, {n_users}) x [0, {n_items}), got users "
                          f"[{int(u.min())}, {int(u.max())}] and items [{int(i.min())}, {int(i.max())}]")
    n = n_users + n_items
    edges = torch.unique(u * n_items + i)  # one edge per distinct pair
    u, i = edges // n_items, edges % n_items + n_users
    rows, cols = torch.cat([u, i]), torch.cat([i, u])
    degree = torch.bincount(rows, minlength=n).float()
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(1.0).rsqrt(), torch.zeros_like(degree))
    values = inv_sqrt[rows] * inv_sqrt[cols]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=True).coalesce()


def propagate(adjacency: torch.Tensor, user_emb: torch.Tensor, item_emb: torch.Tensor,
              layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LightGCN propagation: adjacency (N, N) sparse with N = n_users + n_items (from :func:`normalized_adjacency`),
    user_emb (n_users, d), item_emb (n_items, d), ``layers`` = K >= 0 -> (users (n_users, d), items (n_items, d)),
    the mean over k = 0..K of ``Â^k E^(0)`` split back into users and items."""
    if layers < 0:
        raise ConfigError(f"layers must be >= 0, got {layers}")
    n_users = user_emb.shape[0]
    if adjacency.shape[0] != n_users + item_emb.shape[0]:
        raise ConfigError(f"the adjacency has {adjacency.shape[0]} nodes for {n_users} users + "
                          f"{item_emb.shape[0]} items")
    layer = torch.cat([user_emb, item_emb])
    total = layer
    for _ in range(layers):  # K sparse-dense products over the whole graph
        layer = torch.sparse.mm(adjacency, layer)
        total = total + layer
    out = total / (layers + 1)
    return out[:n_users], out[n_users:]
