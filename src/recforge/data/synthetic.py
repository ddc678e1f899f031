"""Synthetic interaction logs with known, planted structure (fast, seeded): tests and sanity checks for models.

A model that learns anything should beat random ranking on these logs, and by how much is predictable from the
generator's parameters.
"""

from __future__ import annotations

import numpy as np

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError


def planted_clusters(
    n_users: int = 300,
    n_items: int = 200,
    n_clusters: int = 5,
    events_per_user: int = 20,
    p_in_cluster: float = 0.85,
    zipf: float = 1.0,
    seed: int = 0,
) -> Interactions:
    """Users and items each belong to one of ``n_clusters`` groups; user u's events are items of u's group with
    probability ``p_in_cluster`` (else any item), popularity-skewed (Zipf exponent ``zipf``) within a group.

    Every user has exactly ``events_per_user`` distinct items, in random order with times 0..events_per_user-1.
    External ids are ``"u<k>"`` / ``"i<k>"``; ``meta["user_cluster"]`` (n_users,) and ``meta["item_cluster"]``
    (n_items,) hold the planted groups, indexed by the external number k. Memory is O(n_users x n_items).
    """
    if n_clusters < 1 or n_items < n_clusters or n_users < 1:
        raise ConfigError(f"need n_users >= 1 and n_items >= n_clusters >= 1, got {n_users=}, {n_items=}, {n_clusters=}")
    if not 1 <= events_per_user <= n_items:
        raise ConfigError(f"events_per_user must be in 1..{n_items}, got {events_per_user}")
    if not 0.0 <= p_in_cluster <= 1.0:
        raise ConfigError(f"p_in_cluster must be in [0, 1], got {p_in_cluster}")
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(0, n_clusters, n_users)
    item_cluster = rng.permutation(np.arange(n_items) % n_clusters)
    # Zipf popularity within each item group: rank by a random order inside the group.
    rank_in_group = np.empty(n_items, np.int64)
    for c in range(n_clusters):  # loop over groups (few), not users
        members = np.flatnonzero(item_cluster == c)
        rank_in_group[rng.permutation(members)] = np.arange(len(members))
    pop = 1.0 / (rank_in_group + 1.0) ** zipf
    same = item_cluster[None, :] == user_cluster[:, None]  # (U, I)
    group_mass = np.zeros(n_clusters)
    np.add.at(group_mass, item_cluster, pop)
    prob = (1 - p_in_cluster) * pop / pop.sum() + p_in_cluster * same * pop / group_mass[user_cluster][:, None]
    # Sampling without replacement for every user at once: Gumbel top-k over log-probabilities.
    keys = np.log(prob + 1e-300) + rng.gumbel(size=prob.shape)
    chosen = np.argpartition(-keys, events_per_user - 1, axis=1)[:, :events_per_user]
    chosen = np.take_along_axis(chosen, rng.permuted(np.tile(np.arange(events_per_user), (n_users, 1)), axis=1), 1)
    users = np.repeat(np.arange(n_users), events_per_user)
    times = np.tile(np.arange(events_per_user), n_users)
    return Interactions.from_arrays(
        np.char.add("u", users.astype(str)),
        np.char.add("i", chosen.ravel().astype(str)),
        time=times,
        meta={"generator": "planted_clusters", "user_cluster": user_cluster, "item_cluster": item_cluster, "seed": seed},
    )


def sequential_world(
    n_users: int = 200, n_items: int = 60, length: int = 12, p_follow: float = 0.9, seed: int = 0
) -> Interactions:
    """A planted next-item rule: every item i has one successor ``meta["successor"][i]`` (a random permutation);
    each user starts at a random item and then, at every step, moves to the successor of the last item with
    probability ``p_follow``, else to a uniformly random item. Popularity is flat, so only the order carries signal:
    a sequential model should predict the held-out item with probability about ``p_follow``.

    External ids are ``"u<k>"`` / ``"i<k>"``; user k's events have times k, k + 60, k + 120, ... (seconds).
    """
    if n_users < 1 or n_items < 2 or length < 2:
        raise ConfigError(f"need n_users >= 1, n_items >= 2, length >= 2, got {n_users=}, {n_items=}, {length=}")
    if not 0.0 <= p_follow <= 1.0:
        raise ConfigError(f"p_follow must be in [0, 1], got {p_follow}")
    rng = np.random.default_rng(seed)
    successor = rng.permutation(n_items)
    seqs = np.empty((n_users, length), np.int64)
    seqs[:, 0] = rng.integers(0, n_items, n_users)
    follow = rng.random((n_users, length)) < p_follow
    jumps = rng.integers(0, n_items, (n_users, length))
    for t in range(1, length):  # loop over positions (few), vectorized over users
        seqs[:, t] = np.where(follow[:, t], successor[seqs[:, t - 1]], jumps[:, t])
    users = np.repeat(np.arange(n_users), length)
    times = users + np.tile(np.arange(length), n_users) * 60
    return Interactions.from_arrays(
        np.char.add("u", users.astype(str)),
        np.char.add("i", seqs.ravel().astype(str)),
        time=times,
        meta={"generator": "sequential_world", "successor": successor, "seed": seed},
    )
