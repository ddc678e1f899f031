"""Synthetic preference worlds with known answers (tests and targets; seconds on a CPU).

- :func:`cyclic_pairs`: rock-paper-scissors. Items fall into 3 classes, class c+1 beats class c (mod 3). No scalar
  reward orders them: Bradley–Terry's best fit is a tie (~50 % accuracy), a general preference model gets ~100 %.
- :func:`multi_source_pairs`: several annotator sources sharing one item utility, each with its own utility noise and
  its own size; labels drawn from sigmoid(utility difference). The ``shared`` part is labelled by the shared utility
  alone: the calibration a reward model should reach when the sources' idiosyncrasies cancel out.
- :func:`planted_utility`: a sequential log (next item near the previous one on a ring) plus a planted item utility
  with a known optimum, and :func:`utility_pairs` preferring the higher-utility item: alignment should move the
  model's next-item probability mass towards high-utility items.

Users are ``"u<k>"``, items ``"i<k>"`` (dense id k+1 for item k).
"""

from __future__ import annotations

import numpy as np

from recforge.data.interactions import Interactions
from recforge.data.preferences import PreferencePairs
from recforge.data.split import Split
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError


def _vocabs(n_users: int, n_items: int) -> tuple[Vocab, Vocab]:
    return (Vocab([f"u{k}" for k in range(n_users)], name="user"), Vocab([f"i{k}" for k in range(n_items)], name="item"))


def _random_histories(n: int, n_items: int, max_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lengths = rng.integers(0, max_len + 1, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return rng.integers(1, n_items + 1, int(offsets[-1])), offsets


def cyclic_pairs(n_pairs: int = 3000, n_items: int = 30, n_users: int = 50, noise: float = 0.0,
                 seed: int = 0) -> PreferencePairs:
    """Rock-paper-scissors pairs: item k is of class k % 3; an item of class (c + 1) % 3 beats one of class c. Pairs
    draw two items of different classes uniformly (both orders equally often), the winner chosen, flipped with
    probability ``noise``. Histories are random and carry no signal. ``meta["item_class"]`` (n_items+1,) by dense id."""
    if n_items < 3 or n_pairs < 1 or not 0.0 <= noise < 0.5:
        raise ConfigError(f"need n_items >= 3, n_pairs >= 1 and noise in [0, 0.5), got {n_items}, {n_pairs}, {noise}")
    rng = np.random.default_rng(seed)
    cls = (np.arange(n_items + 1) - 1) % 3  # by dense id (item k = dense k+1)
    a = rng.integers(1, n_items + 1, n_pairs)
    b = rng.integers(1, n_items + 1, n_pairs)
    clash = cls[a] == cls[b]
    while clash.any():
        b[clash] = rng.integers(1, n_items + 1, int(clash.sum()))
        clash = cls[a] == cls[b]
    a_wins = cls[a] == (cls[b] + 1) % 3
    a_wins ^= rng.random(n_pairs) < noise
    history, offsets = _random_histories(n_pairs, n_items, 5, rng)
    users, items = _vocabs(n_users, n_items)
    return PreferencePairs(user=rng.integers(1, n_users + 1, n_pairs), history=history, history_offsets=offsets,
                           chosen=np.where(a_wins, a, b), rejected=np.where(a_wins, b, a), user_vocab=users,
                           item_vocab=items, sources=("cyclic",),
                           meta={"generator": "cyclic", "seed": seed, "noise": noise, "item_class": cls})


def multi_source_pairs(sizes: tuple[int, ...] = (6000, 1000, 1000), source_noise: tuple[float, ...] = (1.5, 0.3, 0.3),
                       n_items: int = 40, n_users: int = 50, scale: float = 2.0, n_shared: int = 4000,
                       seed: int = 0) -> dict[str, PreferencePairs]:
    """Annotator sources sharing the utility u_i ~ N(0, 1), source s adding its own d_si ~ N(0, source_noise[s]^2);
    a pair of source s has P(a chosen over b) = sigmoid(scale * (u_a + d_sa - u_b - d_sb)).

    Returns {"train": the sources' pairs (labelled "s0", "s1", ...), "valid": more of the same mix (1/4 the size),
    "shared": ``n_shared`` pairs labelled by the shared utility alone}; ``meta["utility"]`` (n_items+1,) by dense id."""
    if len(sizes) != len(source_noise) or not sizes or min(sizes) < 1 or min(source_noise) < 0:
        raise ConfigError(f"sizes and source_noise need one entry per source (sizes >= 1, noise >= 0), got "
                          f"{sizes} and {source_noise}")
    rng = np.random.default_rng(seed)
    users, items = _vocabs(n_users, n_items)
    utility = np.concatenate([[0.0], rng.normal(size=n_items)])
    own = [np.concatenate([[0.0], rng.normal(scale=s, size=n_items)]) for s in source_noise]

    def draw(n: int, util: np.ndarray) -> tuple[np.ndarray, ...]:
        a = rng.integers(1, n_items + 1, n)
        b = (a - 1 + rng.integers(1, n_items, n)) % n_items + 1  # b != a
        a_wins = rng.random(n) < 1.0 / (1.0 + np.exp(-scale * (util[a] - util[b])))
        history, offsets = _random_histories(n, n_items, 3, rng)
        return np.where(a_wins, a, b), np.where(a_wins, b, a), history, offsets

    def mix(fraction: float) -> PreferencePairs:
        parts = []
        for s, size in enumerate(sizes):
            n = max(1, int(size * fraction))
            c, r, h, o = draw(n, utility + own[s])
            parts.append(PreferencePairs(user=rng.integers(1, n_users + 1, n), history=h, history_offsets=o, chosen=c,
                                         rejected=r, user_vocab=users, item_vocab=items, sources=(f"s{s}",)))
        out = PreferencePairs.concat(parts)
        out.meta.update(generator="multi_source", seed=seed, utility=utility)
        return out

    c, r, h, o = draw(n_shared, utility)
    shared = PreferencePairs(user=rng.integers(1, n_users + 1, n_shared), history=h, history_offsets=o, chosen=c,
                             rejected=r, user_vocab=users, item_vocab=items, sources=("shared",),
                             meta={"generator": "multi_source", "seed": seed, "utility": utility})
    return {"train": mix(1.0), "valid": mix(0.25), "shared": shared}


def planted_utility(n_users: int = 200, n_items: int = 40, length: int = 12, spread: int = 3,
                    seed: int = 0) -> tuple[Interactions, np.ndarray]:
    """A sequential log on a ring of items (each next item within ``spread`` steps of the previous one) and a planted
    utility over items (n_items+1,) by dense id, a smooth bump whose maximum (the known optimum) is item 0 (dense 1).
    Every user has ``length`` events at times 0..length-1."""
    if n_items < 2 * spread + 2 or length < 3 or n_users < 1:
        raise ConfigError(f"need n_items >= 2*spread+2, length >= 3, n_users >= 1 (got {n_items}, {length}, {n_users})")
    rng = np.random.default_rng(seed)
    steps = rng.integers(-spread, spread + 1, (n_users, length))
    steps[:, 0] = rng.integers(0, n_items, n_users)
    seq = np.cumsum(steps, axis=1) % n_items
    users = np.repeat(np.arange(n_users), length)
    data = Interactions.from_arrays(np.char.add("u", users.astype(str)), np.char.add("i", seq.ravel().astype(str)),
                                    time=np.tile(np.arange(length), n_users),
                                    meta={"generator": "planted_utility", "seed": seed})
    ext = np.asarray([int(str(x)[1:]) for x in data.item_vocab.decode(np.arange(1, len(data.item_vocab) + 1))])
    ring = np.minimum(ext, n_items - ext)  # distance to item 0 on the ring
    utility = np.concatenate([[0.0], np.exp(-(ring / (n_items / 8)) ** 2)])
    return data, utility


def utility_pairs(split: Split, utility: np.ndarray, n_pairs_per_user: int = 4, seed: int = 0) -> PreferencePairs:
    """Pairs from the split's training part: history = a training prefix, two distinct random items, the one of
    higher planted ``utility`` (n_items+1,) chosen (ties redrawn)."""
    rng = np.random.default_rng(seed)
    train = split.train
    items, offsets = train.sequences()
    n_items = train.n_items
    users = np.repeat(np.arange(1, train.n_users + 1), n_pairs_per_user)
    lengths = np.diff(offsets)[users]
    cut = (rng.random(len(users)) * lengths).astype(np.int64)  # prefix length in 0..len-1
    starts = offsets[users]
    hist_len = cut
    hist_off = np.concatenate([[0], np.cumsum(hist_len)]).astype(np.int64)
    idx = np.repeat(starts - hist_off[:-1], hist_len) + np.arange(hist_off[-1])
    a = rng.integers(1, n_items + 1, len(users))
    b = (a - 1 + rng.integers(1, n_items, len(users))) % n_items + 1
    tie = utility[a] == utility[b]
    for _ in range(100):  # redraw the tied pairs (items at the same distance from the optimum)
        if not tie.any():
            break
        b[tie] = (a[tie] - 1 + rng.integers(1, n_items, int(tie.sum()))) % n_items + 1
        tie = utility[a] == utility[b]
    a_wins = utility[a] > utility[b]
    return PreferencePairs(user=users, history=items[idx], history_offsets=hist_off, chosen=np.where(a_wins, a, b),
                           rejected=np.where(a_wins, b, a), user_vocab=train.user_vocab, item_vocab=train.item_vocab,
                           sources=("utility",), weight=(~tie).astype(np.float32),
                           meta={"split_hash": split.hash, "generator": "utility", "seed": seed})
