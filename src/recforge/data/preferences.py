"""Preference pairs: (history, chosen item, rejected items) for reward models and DPO-style alignment.

:class:`PreferencePairs` is columnar, B pairs with K rejected items each, in dense ids (users 1..n_users, items
1..n_items; external ids only in files, through the vocabularies)::

    user             (B,)    int64   who expressed the preference
    history          (N,)    int64   jagged item histories: row b is history[history_offsets[b]:history_offsets[b+1]]
    history_offsets  (B+1,)  int64
    chosen           (B,)    int64   the preferred item
    rejected         (B, K)  int64   the dispreferred item(s); K = 1 for pairwise, K > 1 for S-DPO-style lists
    source           (B,)    int64   index into ``sources`` (where the pair came from: "random", "ratings", a file)
    weight           (B,)    float32 or None

:func:`build_pairs` derives pairs from a split's **training part only**: chosen = the observed next item of the training
sequence, rejected = uniformly sampled (``random``) or popularity-sampled (``popular``) unseen items; or, from explicit
ratings (``ratings``), the higher- against the lower-rated item of one user (ties dropped and counted).
:func:`check_leakage` refuses pairs whose chosen or history items are a user's validation/test events.
:func:`sample_unseen` is the negative sampler they share (also used for held-out pairs and comparison items).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from recforge.data.interactions import Interactions
from recforge.data.jagged import gather_jagged
from recforge.data.split import Split
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

REJECTED_KINDS = ("random", "popular", "ratings")
_EXACT_AFTER_ROUNDS = 64  # rejection-sampling rounds before the few rows left are drawn exactly from their unseen items


@dataclass(frozen=True, eq=False)
class PreferencePairs:
    """B preference pairs (module docstring for the columns); validated at construction, arrays read-only."""

    user: np.ndarray
    history: np.ndarray
    history_offsets: np.ndarray
    chosen: np.ndarray
    rejected: np.ndarray
    user_vocab: Vocab
    item_vocab: Vocab
    source: np.ndarray | None = None
    sources: tuple[str, ...] = ("custom",)
    weight: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        user = _ints(self.user, "user")
        b = len(user)
        if b == 0:
            raise DataError("no preference pairs (empty)")
        rejected = _ints(self.rejected, "rejected")
        if rejected.ndim == 1:
            rejected = rejected.reshape(-1, 1)
        if rejected.ndim != 2 or rejected.shape[0] != b or rejected.shape[1] < 1:
            raise DataError(f"rejected must have shape ({b}, K) with K >= 1, got {rejected.shape}", column="rejected")
        chosen = _ints(self.chosen, "chosen")
        if chosen.shape != (b,):
            raise DataError(f"chosen must have shape ({b},), got {chosen.shape}", column="chosen")
        history, offsets = _ints(self.history, "history"), _ints(self.history_offsets, "history_offsets")
        if offsets.shape != (b + 1,) or offsets[0] != 0 or (np.diff(offsets) < 0).any() or offsets[-1] != len(history):
            raise DataError(f"history_offsets must have shape ({b + 1},), start at 0, never decrease and end at "
                            f"len(history)={len(history)}", column="history_offsets")
        source = np.zeros(b, np.int64) if self.source is None else _ints(self.source, "source")
        sources = tuple(str(s) for s in self.sources)
        if source.shape != (b,) or not sources or source.min() < 0 or source.max() >= len(sources):
            raise DataError(f"source must have shape ({b},) with values in 0..{len(sources) - 1}", column="source")
        weight = None if self.weight is None else np.asarray(self.weight, dtype=np.float32)
        if weight is not None:
            _check_rows(weight.shape != (b,), np.flatnonzero(~np.isfinite(weight) | (weight < 0)), "weight",
                        "must be finite and >= 0", f"must have shape ({b},), got {weight.shape}")
        n_users, n_items = len(self.user_vocab), len(self.item_vocab)
        _check_rows(False, np.flatnonzero((user < 1) | (user > n_users)), "user", f"must be in 1..{n_users}")
        _check_rows(False, np.flatnonzero((chosen < 1) | (chosen > n_items)), "chosen", f"must be in 1..{n_items}")
        _check_rows(False, np.flatnonzero(((rejected < 1) | (rejected > n_items)).any(axis=1)), "rejected",
                    f"must be in 1..{n_items}")
        bad_hist = np.flatnonzero((history < 1) | (history > n_items))
        _check_rows(False, np.unique(np.searchsorted(offsets, bad_hist, side="right") - 1), "history",
                    f"must be in 1..{n_items}")
        _check_rows(False, np.flatnonzero((rejected == chosen[:, None]).any(axis=1)), "rejected",
                    "equals the chosen item")
        for name, arr in (("user", user), ("chosen", chosen), ("rejected", rejected), ("history", history),
                          ("history_offsets", offsets), ("source", source), ("weight", weight)):
            if arr is not None:
                arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "sources", sources)

    # ---------------------------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.user)

    @property
    def k(self) -> int:
        """Rejected items per pair."""
        return self.rejected.shape[1]

    def __repr__(self) -> str:
        return f"PreferencePairs(n={len(self)}, k={self.k}, sources={list(self.sources)})"

    def histories(self) -> tuple[np.ndarray, np.ndarray]:
        """The histories as a jagged array (items (N,), offsets (B+1,))."""
        return self.history, self.history_offsets

    def source_counts(self) -> dict[str, int]:
        """Pairs per source label."""
        counts = np.bincount(self.source, minlength=len(self.sources))
        return {s: int(c) for s, c in zip(self.sources, counts)}

    def select(self, rows: np.ndarray | Sequence[int]) -> PreferencePairs:
        """A subset of the pairs (a bool mask or row indices), same vocabularies and sources."""
        rows = np.arange(len(self))[np.asarray(rows)]
        history, offsets = gather_jagged(self.history, self.history_offsets, rows)
        return PreferencePairs(user=self.user[rows], history=history, history_offsets=offsets, chosen=self.chosen[rows],
                               rejected=self.rejected[rows], user_vocab=self.user_vocab, item_vocab=self.item_vocab,
                               source=self.source[rows], sources=self.sources,
                               weight=None if self.weight is None else self.weight[rows], meta=dict(self.meta))

    def with_rejected(self, rejected: np.ndarray, source: str) -> PreferencePairs:
        """The same histories and chosen items with other rejected items (B, K), all labelled ``source`` (e.g. hard
        negatives a model picked)."""
        return PreferencePairs(user=self.user, history=self.history, history_offsets=self.history_offsets,
                               chosen=self.chosen, rejected=rejected, user_vocab=self.user_vocab,
                               item_vocab=self.item_vocab, sources=(source,), weight=self.weight,
                               meta={**self.meta, "rejected": source})

    @classmethod
    def concat(cls, parts: Sequence[PreferencePairs]) -> PreferencePairs:
        """Pairs of several sources in one table (same vocabularies and K); source labels are merged by name.
        Weights are kept only when every part has them."""
        if not parts:
            raise DataError("no preference pairs to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if p.user_vocab != first.user_vocab or p.item_vocab != first.item_vocab:
                raise DataError("cannot concatenate pairs built on different vocabularies")
            if p.k != first.k:
                raise DataError(f"cannot concatenate pairs with K={first.k} and K={p.k}")
        sources = tuple(dict.fromkeys(s for p in parts for s in p.sources))
        codes = [np.asarray([sources.index(s) for s in p.sources], dtype=np.int64)[p.source] for p in parts]
        lengths = np.concatenate([np.diff(p.history_offsets) for p in parts])
        weights = [p.weight for p in parts]
        return cls(user=np.concatenate([p.user for p in parts]), history=np.concatenate([p.history for p in parts]),
                   history_offsets=np.concatenate([[0], np.cumsum(lengths)]),
                   chosen=np.concatenate([p.chosen for p in parts]),
                   rejected=np.concatenate([p.rejected for p in parts]), user_vocab=first.user_vocab,
                   item_vocab=first.item_vocab, source=np.concatenate(codes), sources=sources,
                   weight=None if any(w is None for w in weights) else np.concatenate(weights),
                   meta={"parts": [dict(p.meta) for p in parts]})

    def fingerprint(self) -> str:
        """sha256 (hex) over every column (dense ids, fixed little-endian dtypes), the vocabulary sizes and sources."""
        h = hashlib.sha256(str((len(self.user_vocab), len(self.item_vocab), self.sources)).encode())
        for arr in (self.user, self.history, self.history_offsets, self.chosen, self.rejected, self.source):
            h.update(b"|" + np.ascontiguousarray(arr, dtype="<i8").tobytes())
        h.update(b"|-" if self.weight is None else b"|" + np.ascontiguousarray(self.weight, dtype="<f4").tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------------------------------------ files
    def to_frame(self) -> pl.DataFrame:
        """One row per pair in external ids: user, history (list), chosen, rejected (list of K), source[, weight]."""
        items = self.item_vocab.decode
        hist = pa.LargeListArray.from_arrays(pa.array(self.history_offsets), pa.array(items(self.history)))
        rej = pa.LargeListArray.from_arrays(pa.array(np.arange(0, self.rejected.size + 1, self.k)),
                                            pa.array(items(self.rejected.ravel())))
        cols: dict[str, Any] = {
            "user": pl.Series("user", self.user_vocab.decode(self.user)),
            "history": pl.from_arrow(hist),
            "chosen": pl.Series("chosen", items(self.chosen)),
            "rejected": pl.from_arrow(rej),
            "source": pl.Series("source", np.asarray(self.sources, dtype=object)[self.source].tolist(), pl.String),
        }
        if self.weight is not None:
            cols["weight"] = pl.Series("weight", self.weight)
        return pl.DataFrame(cols)

    def to_parquet(self, path: str | Path) -> Path:
        """Write :meth:`to_frame` as a parquet file."""
        path = Path(path)
        self.to_frame().write_parquet(path)
        return path

    @classmethod
    def from_frame(cls, df: pl.DataFrame, user_vocab: Vocab, item_vocab: Vocab) -> PreferencePairs:
        """Pairs from a frame in external ids (the layout of :meth:`to_frame`; ``rejected`` may also be a scalar
        column, K = 1; ``source`` and ``weight`` are optional). Unknown ids, nulls and ragged ``rejected`` lists are a
        DataError naming the column and rows."""
        if df.height == 0:
            raise DataError("no preference pairs (empty)")
        for col in ("user", "history", "chosen", "rejected"):
            if col not in df.columns:
                raise DataError(f"missing column (the frame has {df.columns})", column=col)
        for col in df.columns:
            _check_rows(False, np.flatnonzero(df[col].is_null().to_numpy()), col, "is null")
        user = _encode(df["user"].to_list(), user_vocab, "user")
        chosen = _encode(df["chosen"].to_list(), item_vocab, "chosen")
        if not isinstance(df["history"].dtype, pl.List | pl.Array):
            raise DataError(f"history must be a list column, got {df['history'].dtype}", column="history")
        history, offsets = _encode_lists(df["history"], item_vocab)
        if isinstance(df["rejected"].dtype, pl.List | pl.Array):
            flat, roff = _encode_lists(df["rejected"], item_vocab)
            lengths = np.diff(roff)
            _check_rows(False, np.flatnonzero(lengths != lengths[0]), "rejected",
                        f"has another number of items than row 0 ({int(lengths[0])})")
            rejected = flat.reshape(df.height, int(lengths[0]))
        else:
            rejected = _encode(df["rejected"].to_list(), item_vocab, "rejected").reshape(-1, 1)
        source, sources = np.zeros(df.height, np.int64), ("custom",)
        if "source" in df.columns:
            labels = df["source"].cast(pl.String).to_numpy().astype(str)
            names, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
            order = np.argsort(first)  # labels in order of first appearance, as written
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            source, sources = rank[inverse], tuple(names[order].tolist())
        weight = None
        if "weight" in df.columns:
            if not df["weight"].dtype.is_numeric():
                raise DataError(f"weight must be numeric, got {df['weight'].dtype}", column="weight")
            weight = df["weight"].cast(pl.Float64).to_numpy()
        return cls(user=user, history=history, history_offsets=offsets, chosen=chosen, rejected=rejected,
                   user_vocab=user_vocab, item_vocab=item_vocab, source=source, sources=sources, weight=weight)

    @classmethod
    def read_parquet(cls, path: str | Path, user_vocab: Vocab, item_vocab: Vocab) -> PreferencePairs:
        """Read a pair file written by :meth:`to_parquet` (or by hand, same columns). Errors name the file."""
        p = str(path)
        if not Path(path).is_file():
            raise DataError("pair file not found", path=p)
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars raises its own error types for a garbled or non-parquet file
            raise DataError(f"not a readable parquet file ({str(exc).splitlines()[0]})", path=p) from None
        try:
            return cls.from_frame(df, user_vocab, item_vocab)
        except DataError as exc:
            raise DataError(str(exc), path=p) from None


# ------------------------------------------------------------------------------------------------------ builders
def build_pairs(
    split: Split,
    rejected: Literal["random", "popular", "ratings"] = "random",
    *,
    k: int = 1,
    positions: Literal["last", "all"] = "last",
    max_history: int | None = 50,
    max_pairs_per_user: int | None = 100,
    seed: int = 0,
) -> PreferencePairs:
    """Preference pairs from ``split.train`` only (validation and test events are never read, and the result passes
    :func:`check_leakage`).

    ``random`` / ``popular``: chosen = the observed next item of a user's training sequence (``positions="last"``:
    the last training event, one pair per user with >= 2 events; ``"all"``: every event after the first), history =
    the up to ``max_history`` training items before it, rejected = ``k`` distinct items the user has no training event
    with, drawn uniformly or in proportion to their training counts. Users with fewer than ``k`` such items are left
    out (``meta["users_without_negatives"]``).

    ``ratings`` (K = 1): pairs of one user's training events with different values, the higher-rated item chosen;
    equal values (``meta["ties_dropped"]``) and the same item twice (``meta["same_item_dropped"]``) are dropped. A user
    with more than ``max_pairs_per_user`` candidate pairs gets that many sampled ones (duplicates merged); None keeps
    all. History = the up to ``max_history`` training items before the earlier of the two events.

    Seeded by ``seed``; vectorised over users.
    """
    if rejected not in REJECTED_KINDS:
        raise ConfigError(f"rejected must be one of {REJECTED_KINDS}, got {rejected!r}")
    if positions not in ("last", "all"):
        raise ConfigError(f"positions must be 'last' or 'all', got {positions!r}")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if max_history is not None and max_history < 0:
        raise ConfigError(f"max_history must be >= 0 or None, got {max_history}")
    if max_pairs_per_user is not None and max_pairs_per_user < 1:
        raise ConfigError(f"max_pairs_per_user must be >= 1 or None, got {max_pairs_per_user}")
    if rejected == "ratings" and k != 1:
        raise ConfigError(f"ratings pairs have one rejected item (k=1), got k={k}")
    rng = np.random.default_rng(seed)
    train = split.train
    if rejected == "ratings":
        pairs = _rating_pairs(train, max_history, max_pairs_per_user, rng)
    else:
        pairs = _next_item_pairs(train, rejected, k, positions, max_history, rng)
    pairs.meta.update(split_hash=split.hash, seed=seed, rejected=rejected)
    check_leakage(pairs, split)
    log.info("built %d %s preference pairs (k=%d) from the training part", len(pairs), rejected, pairs.k)
    return pairs


def check_leakage(pairs: PreferencePairs, split: Split) -> None:
    """DataError naming the rows whose chosen item, or an item of whose history, is a validation or test event of
    the row's user and not one of the user's training events (what a builder from the training part never makes)."""
    if pairs.user_vocab != split.train.user_vocab or pairs.item_vocab != split.train.item_vocab:
        raise DataError("the pairs and the split use different vocabularies")
    n1 = len(pairs.item_vocab) + 1
    train = np.unique(split.train.user * n1 + split.train.item)
    held = [p for p in (split.valid, split.test) if p is not None and len(p)]
    if not held:
        return
    held_keys = np.setdiff1d(np.concatenate([p.user * n1 + p.item for p in held]), train)
    chosen = np.flatnonzero(_isin_sorted(pairs.user * n1 + pairs.chosen, held_keys))
    _check_rows(False, chosen, "chosen", "is a validation/test item of its user (leakage)")
    lengths = np.diff(pairs.history_offsets)
    hist_rows = np.repeat(np.arange(len(pairs)), lengths)
    bad = np.unique(hist_rows[_isin_sorted(pairs.user[hist_rows] * n1 + pairs.history, held_keys)])
    _check_rows(False, bad, "history", "holds a validation/test item of its user (leakage)")


def _next_item_pairs(train: Interactions, kind: str, k: int, positions: str, max_history: int | None,
                     rng: np.random.Generator) -> PreferencePairs:
    offsets = train.user_offsets()
    pos = np.arange(len(train)) - offsets[train.user]  # position of each event in its user's sequence
    if positions == "last":
        target = np.flatnonzero((pos >= 1) & (np.arange(len(train)) == offsets[train.user + 1] - 1))
    else:
        target = np.flatnonzero(pos >= 1)
    if len(target) == 0:
        raise DataError("no user has two training events: no next-item pairs can be built")
    users = train.user[target]
    seen = np.unique(train.user * (train.n_items + 1) + train.item)
    counts = train.item_counts() if kind == "popular" else None
    negatives, ok = sample_unseen(users, k, seen, train.n_items, counts, rng)
    dropped = int(len(np.unique(users[~ok])))
    if dropped:
        log.info("%d users have fewer than %d unseen %s items: left out", dropped, k, kind)
    target = target[ok]
    if len(target) == 0:
        raise DataError(f"no user has {k} unseen items to reject")
    starts = offsets[train.user[target]]
    if max_history is not None:
        starts = np.maximum(starts, target - max_history)
    history, hist_offsets = _slices(train.item, starts, target)
    return PreferencePairs(user=train.user[target], history=history, history_offsets=hist_offsets,
                           chosen=train.item[target], rejected=negatives[ok], user_vocab=train.user_vocab,
                           item_vocab=train.item_vocab, sources=(kind,),
                           meta={"positions": positions, "k": k, "max_history": max_history,
                                 "users_without_negatives": dropped})


def _rating_pairs(train: Interactions, max_history: int | None, cap: int | None,
                  rng: np.random.Generator) -> PreferencePairs:
    offsets = train.user_offsets()
    n_u = np.diff(offsets)[1:]  # events per user 1..n_users
    starts = offsets[1:-1]
    n_pairs = n_u * (n_u - 1) // 2
    full = n_pairs <= cap if cap is not None else np.ones(len(n_u), bool)
    a_full, b_full = _all_pairs(starts[full], n_u[full])
    a_s, b_s = _sampled_pairs(starts[~full & (n_u >= 2)], n_u[~full & (n_u >= 2)], cap or 0, rng)
    a, b = np.concatenate([a_full, a_s]), np.concatenate([b_full, b_s])
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    va, vb = train.value[a], train.value[b]
    same_item = train.item[a] == train.item[b]
    tie = (va == vb) & ~same_item
    keep = ~tie & ~same_item
    meta = {"candidate_pairs": len(a), "ties_dropped": int(tie.sum()), "same_item_dropped": int(same_item.sum()),
            "max_pairs_per_user": cap, "max_history": max_history}
    if not keep.any():
        raise DataError(f"no training pair of one user has two different ratings ({meta['ties_dropped']} ties): "
                        "ratings pairs need explicit ratings")
    a, b, va, vb = a[keep], b[keep], va[keep], vb[keep]
    win = np.where(va > vb, a, b)
    lose = np.where(va > vb, b, a)
    first = np.minimum(a, b)
    hist_start = offsets[train.user[first]]
    if max_history is not None:
        hist_start = np.maximum(hist_start, first - max_history)
    history, hist_offsets = _slices(train.item, hist_start, first)
    log.info("ratings pairs: %d kept, %d ties and %d same-item pairs dropped", len(a), meta["ties_dropped"],
             meta["same_item_dropped"])
    return PreferencePairs(user=train.user[first], history=history, history_offsets=hist_offsets,
                           chosen=train.item[win], rejected=train.item[lose], user_vocab=train.user_vocab,
                           item_vocab=train.item_vocab, sources=("ratings",), meta=meta)


# ------------------------------------------------------------------------------------------------------ helpers
def _all_pairs(starts: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, b) with start <= a < b < start + n of each block, as row indices; no loop per block."""
    first, _ = _slices(np.arange(int((starts + n).max(initial=0))), starts, starts + n)  # rows of every block
    ends = np.repeat(starts + n, n)
    partners = ends - first - 1  # rows after each row in its block
    a = np.repeat(first, partners)
    group_start = np.concatenate([[0], np.cumsum(partners)])[:-1]
    b = a + 1 + np.arange(len(a)) - np.repeat(group_start, partners)
    return a, b


def _sampled_pairs(starts: np.ndarray, n: np.ndarray, per_block: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``per_block`` uniform unordered pairs of distinct rows per block, duplicates merged, as (a < b)."""
    s, m = np.repeat(starts, per_block), np.repeat(n, per_block)
    x = (rng.random(len(s)) * m).astype(np.int64)
    y = (rng.random(len(s)) * (m - 1)).astype(np.int64)
    y += y >= x
    lo, hi = np.unique(np.stack([s + np.minimum(x, y), s + np.maximum(x, y)], axis=1), axis=0).T
    return lo, hi


def _slices(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """values[starts[b]:ends[b]] for every b as a jagged array (items, offsets (B+1,))."""
    lengths = ends - starts
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return values[idx], offsets


def sample_unseen(users: np.ndarray, k: int, seen: np.ndarray, n_items: int, counts: np.ndarray | None = None,
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Negative sampling: ``k`` distinct items per row that the row's user has never interacted with.

    users (B,) dense user ids; ``seen`` the sorted unique keys ``user * (n_items + 1) + item`` of every interaction
    that rules an item out (e.g. ``np.unique(part.user * (n_items + 1) + part.item)``); ``counts`` (n_items+1,) draws
    in proportion to them (items of count 0 never drawn) instead of uniformly; ``rng`` seeds it (default: seed 0).
    Returns (items int64 (B, k), 0 in the rows that cannot be filled; ok bool (B,), the rows whose user has at least
    ``k`` eligible items). Vectorised rejection sampling; the few rows of users who have seen nearly every item are
    drawn exactly from what is left."""
    rng = np.random.default_rng(0) if rng is None else rng
    n1 = n_items + 1
    n_seen = np.bincount(seen // n1, minlength=int(users.max()) + 1)[users]
    if counts is None:
        ok = n_items - n_seen >= k
        draw = _uniform_draw(n_items, rng)
    else:
        ok = int((counts[1:] > 0).sum()) - n_seen >= k  # every seen item has a positive training count
        draw = _popular_draw(counts, rng)
    out = np.zeros((len(users), k), np.int64)
    rows = np.flatnonzero(ok)
    out[rows] = draw((len(rows), k))
    pending = rows
    for _ in range(_EXACT_AFTER_ROUNDS):  # redraw only the bad entries of the rows that still have some
        bad = _bad_draws(out[pending], users[pending], seen, n1)
        keep = bad.any(axis=1)
        pending, bad = pending[keep], bad[keep]
        if len(pending) == 0:
            return out, ok
        sub = out[pending]
        sub[bad] = draw((int(bad.sum()),))
        out[pending] = sub
    rest = pending[_bad_draws(out[pending], users[pending], seen, n1).any(axis=1)]
    for r in rest:  # the few rows whose users have seen nearly every item: draw exactly from what is left
        seen_u = seen[(seen >= users[r] * n1) & (seen < (users[r] + 1) * n1)] - users[r] * n1
        pool = np.setdiff1d(np.arange(1, n1) if counts is None else np.flatnonzero(counts), seen_u)
        p = None if counts is None else counts[pool] / counts[pool].sum()
        out[r] = rng.choice(pool, size=k, replace=False, p=p)
    return out, ok


def _uniform_draw(n_items: int, rng: np.random.Generator):
    return lambda shape: rng.integers(1, n_items + 1, size=shape)


def _popular_draw(counts: np.ndarray, rng: np.random.Generator):
    cdf = np.cumsum(counts[1:]) / counts[1:].sum()  # exact 1.0 at the end: items of count 0 are never drawn
    return lambda shape: np.searchsorted(cdf, rng.random(shape), side="right") + 1


def _bad_draws(draws: np.ndarray, users: np.ndarray, seen: np.ndarray, n1: int) -> np.ndarray:
    """(B, k) bool: a seen item, or a repeat of an earlier column of the same row."""
    bad = _isin_sorted(users[:, None] * n1 + draws, seen)
    for j in range(1, draws.shape[1]):
        bad[:, j] |= (draws[:, :j] == draws[:, j : j + 1]).any(axis=1)
    return bad


def _isin_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Elementwise membership of ``keys`` in the sorted unique array ``sorted_keys``."""
    if len(sorted_keys) == 0:
        return np.zeros(keys.shape, bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def _ints(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name} must hold integer dense ids, got {arr.dtype}", column=name)
    return arr.astype(np.int64)


def _check_rows(shape_bad: bool, bad_rows: np.ndarray, column: str, problem: str, shape_msg: str = "") -> None:
    """DataError naming up to five bad rows of ``column`` (or the shape problem)."""
    if shape_bad:
        raise DataError(shape_msg, column=column)
    if len(bad_rows):
        shown = ", ".join(str(int(r)) for r in bad_rows[:5])
        more = f" ... ({len(bad_rows)} rows)" if len(bad_rows) > 5 else ""
        raise DataError(f"row(s) {shown}{more}: {problem}", column=column)


def _encode(values: list[Any], vocab: Vocab, column: str) -> np.ndarray:
    out = vocab.encode(values, on_unknown="zero")
    bad = np.flatnonzero(out == 0)
    if len(bad):
        _check_rows(False, bad, column, f"unknown {vocab.name} id(s) (e.g. {values[int(bad[0])]!r})")
    return out


def _encode_lists(col: pl.Series, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """A list column of external ids -> (dense ids (N,), offsets (B+1,)); DataError naming rows with unknown ids."""
    if isinstance(col.dtype, pl.Array):
        col = col.cast(pl.List(col.dtype.inner))
    lengths = col.list.len().to_numpy().astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = col.filter(pl.Series(lengths > 0)).explode().to_list()
    out = vocab.encode(values, on_unknown="zero") if values else np.zeros(0, np.int64)
    bad = np.flatnonzero(out == 0)
    if len(bad):
        rows = np.unique(np.searchsorted(offsets, bad, side="right") - 1)
        _check_rows(False, rows, col.name, f"unknown {vocab.name} id(s) (e.g. {values[int(bad[0])]!r})")
    return out, offsets
