"""Semantic IDs: every item named by a short, unique code sequence learnt from item features.

Item features come from the TRAINING split only (a held-out event never shapes its item's code), then a tokenizer of
the ``tokenizer`` registry table (``nn/quantisers``: residual k-means, balanced residual k-means) turns them into
``L`` codes of ``K`` values each. Items whose codes coincide are separated by a collision policy:

- ``uniform`` (LC-Rec's uniform mapping): within each group of items sharing the first L-1 codes, colliding items
  move to the nearest free last-level centroid, so the IDs stay L tokens long; a prefix group of more than K items
  cannot be separated and is a DataError;
- ``dedup``: one extra token, the item's rank inside its group of identical codes (0 for unique codes).

The result, :class:`SemanticIds`, is an artifact (table ``tokenizer``) carrying the training split's fingerprint and
a hash of the final codes; a model trained on it records that hash and refuses another table.

Feature sources: ``cf`` (truncated SVD of the training user x item matrix), ``attributes`` (SVD of the catalogue's
multi-hot attributes), ``text`` (vectors of a :class:`~recforge.protocols.TextEmbedder` over item sentences);
``+`` joins sources (``cf+attributes``), each standardised and weighted equally.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from recforge.artifacts import load_artifact, save_artifact
from recforge.config import check_choices, from_dict, to_dict
from recforge.data.catalog import ItemCatalog
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError
from recforge.protocols import TextEmbedder
from recforge.registry import resolve
from recforge.threads import single_thread

log = logging.getLogger(__name__)

#: Feature sources a SID table can be built from.
SOURCES = ("cf", "attributes", "text")

Collisions = Literal["uniform", "dedup"]


def parse_sources(features: str) -> list[str]:
    """"cf+attributes" -> ["cf", "attributes"]; an unknown or repeated source is a ConfigError."""
    parts = [p.strip() for p in features.split("+")]
    bad = [p for p in parts if p not in SOURCES]
    if bad or not parts:
        raise ConfigError(f"unknown feature source {bad[0] if bad else features!r} in features={features!r} "
                          f"(expected sources {list(SOURCES)} joined by '+')")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"features={features!r} repeats a source")
    return parts


@dataclass(frozen=True)
class SidConfig:
    """How a semantic-ID table is built."""

    features: str = "cf"  # feature sources joined by '+': cf | attributes | text
    tokenizer: str = "rkmeans"  # a key of the tokenizer registry table: rkmeans | balanced-rkmeans | rqvae
    levels: int = 3  # L: codes per item before collision handling
    codebook_size: int = 256  # K: values per code
    collisions: Collisions = "uniform"  # uniform (re-assign the last level) | dedup (an extra token)
    dim: int = 64  # SVD components per cf / attributes source
    iters: int = 20  # k-means iterations per level
    epochs: int = 200  # training epochs of a learnt tokenizer (rqvae); ignored by the k-means ones
    seed: int = 0  # seeds the SVD and the tokenizer

    def __post_init__(self) -> None:
        check_choices(self)
        parse_sources(self.features)
        if self.levels < 1 or self.codebook_size < 1:
            raise ConfigError(f"levels (L) and codebook_size (K) must be >= 1, got L={self.levels}, "
                              f"K={self.codebook_size}")
        if self.dim < 1 or self.epochs < 1:
            raise ConfigError(f"dim and epochs must be >= 1, got dim={self.dim}, epochs={self.epochs}")


# ------------------------------------------------------------------------------------------------------ features


def _svd_rows(m: sp.csr_array, dim: int, seed: int) -> np.ndarray:
    """Row factors U * S of a randomized truncated SVD: (n, m) sparse -> (n, min(dim, n, m)) float32.

    Sparse products in scipy, the dense factorisations in torch on one thread (numpy's threaded LAPACK is slower
    by an order of magnitude on a shared 2-core machine)."""
    m = sp.csr_array(m, dtype=np.float64)
    mt = sp.csr_array(m.T)
    k = max(1, min(dim, m.shape[0], m.shape[1]))
    rng = np.random.default_rng(seed)
    y = torch.from_numpy(m @ rng.standard_normal((m.shape[1], k + 10)))
    with single_thread():
        for _ in range(4):  # power iterations sharpen the spectrum
            q = torch.linalg.qr(y).Q
            y = torch.from_numpy(m @ (mt @ q.numpy()))
        q = torch.linalg.qr(y).Q
        u_b, s, _ = torch.linalg.svd(torch.from_numpy(mt @ q.numpy()).T, full_matrices=False)  # Q^T M
        return (q @ u_b[:, :k] * s[:k]).float().numpy()


def _standardise(x: np.ndarray) -> np.ndarray:
    """Rows L2-normalised (a rarely consumed item's SVD row is short but its direction is informative), then the
    columns of items 1..n to mean 0 and variance 1, and the block scaled to unit total variance per row."""
    x = x.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    body = x[1:]
    std = body.std(0)
    body = (body - body.mean(0)) / np.where(std > 0, std, 1.0)
    out = np.zeros_like(x)
    out[1:] = body / np.sqrt(x.shape[1])
    return out.astype(np.float32)


def item_features(train: Interactions, features: str, *, catalog: ItemCatalog | None = None,
                  embedder: TextEmbedder | None = None, texts: Sequence[str] | None = None, dim: int = 64,
                  seed: int = 0) -> np.ndarray:
    """Standardised item features (n_items+1, d) float32 (row 0 = padding, zeros) from ``train`` and side data.

    ``cf`` needs only ``train``; ``attributes`` a catalogue aligned to ``train``'s item vocabulary; ``text`` an
    embedder and one text per dense id (``texts[0]`` is padding). A missing source or NaN values are DataErrors."""
    n1 = train.n_items + 1
    blocks = []
    for source in parse_sources(features):
        if source == "cf":
            x = train.to_csr(binary=True)
            block = _svd_rows(sp.csr_array(x.T), dim, seed)
        elif source == "attributes":
            if catalog is None:
                raise DataError("features 'attributes' need an item catalogue, and this dataset has none")
            if len(catalog.item_vocab) != train.n_items or catalog.item_vocab.ids != train.item_vocab.ids:
                raise DataError("the item catalogue is not aligned to the training items (align it to the split's "
                                "item vocabulary)")
            if catalog.n_attributes == 0:
                raise DataError("features 'attributes': the catalogue has no attributes")
            block = _svd_rows(catalog.attributes, dim, seed)
        else:
            if embedder is None or texts is None:
                raise DataError("features 'text' need a text embedder and item texts (recforge sid build embeds "
                                "the catalogue's item sentences with --embedder)")
            if not isinstance(embedder, TextEmbedder):
                raise ConfigError(f"embedder must implement TextEmbedder, got {type(embedder).__name__}")
            if len(texts) != n1:
                raise DataError(f"texts must hold n_items+1={n1} entries (index 0 = padding), got {len(texts)}")
            block = np.asarray(embedder.embed(list(texts)), dtype=np.float32)
        if block.shape[0] != n1:
            raise DataError(f"features {source!r}: {block.shape[0]} rows, expected n_items+1={n1}")
        if not np.isfinite(block).all():
            bad = np.flatnonzero(~np.isfinite(block).all(1))
            raise DataError(f"features {source!r} hold NaN or infinite values for {len(bad)} items "
                            f"(dense ids {bad[:5].tolist()})")
        blocks.append(_standardise(block))
    return np.concatenate(blocks, axis=1)


# -------------------------------------------------------------------------------------------------- collisions


def group_sizes(codes: np.ndarray) -> np.ndarray:
    """Size of each row's group of identical code rows: (N, L) -> (N,) int64."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()]


def check_unique(codes: np.ndarray, what: str = "semantic IDs") -> None:
    """DataError when two rows of ``codes`` (N, L) coincide."""
    sizes = group_sizes(codes)
    if len(sizes) and sizes.max() > 1:
        first = np.flatnonzero(sizes > 1)[:4] + 1
        raise DataError(f"{what} are not unique: {int((sizes > 1).sum())} items share an ID "
                        f"(largest group {int(sizes.max())}; e.g. dense items {first.tolist()})")


def resolve_uniform(codes: np.ndarray, dist: np.ndarray, k: int) -> np.ndarray:
    """LC-Rec's uniform mapping: items sharing their whole code move, within their group of equal first L-1 codes,
    to the nearest free last-level value (``dist`` (N, K): squared distance of each item's last residual to every
    last-level centroid). codes (N, L) -> unique codes (N, L). A prefix group larger than K is a DataError."""
    out = codes.copy()
    prefix = codes[:, :-1]
    if prefix.shape[1]:
        _, pgroup = np.unique(prefix, axis=0, return_inverse=True)
    else:
        pgroup = np.zeros(len(codes), np.int64)
    pgroup = pgroup.ravel()
    psize = np.bincount(pgroup)
    if psize.max() > k:
        g = int(psize.argmax())
        raise DataError(f"collision policy 'uniform': {int(psize.max())} items share the prefix "
                        f"{codes[pgroup == g][0, :-1].tolist()} but the last level has only K={k} values; "
                        "use collisions='dedup', more levels or a larger codebook")
    dup = group_sizes(codes) > 1
    for g in np.unique(pgroup[dup]):  # only the prefix groups holding a collision (build time, not a hot path)
        members = np.flatnonzero(pgroup == g)
        last = out[members, -1]
        taken = np.zeros(k, bool)
        keep = np.zeros(len(members), bool)
        _, first = np.unique(last, return_index=True)  # the first item of each last value keeps it
        keep[first] = True
        taken[last[first]] = True
        movers = members[~keep]
        order = np.argsort(dist[movers].min(1))  # the closest to some centroid choose first
        for m in movers[order]:
            pref = np.argsort(dist[m], kind="stable")
            free = pref[~taken[pref]][0]
            out[m, -1] = free
            taken[free] = True
    return out


def resolve_dedup(codes: np.ndarray) -> np.ndarray:
    """An extra last token: each item's rank (by dense id) among the items sharing its code. (N, L) -> (N, L+1)."""
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    sorted_g = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_g)) + 1]
    rank_sorted = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(order), np.int64)
    rank[order] = rank_sorted
    return np.concatenate([codes, rank[:, None]], axis=1)


# ------------------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True, eq=False)
class SemanticIds:
    """A semantic-ID table.

    ``codes`` int64 (n_items+1, L') final unique IDs (row 0 = padding, all zeros); ``sizes`` values per level
    (length L'); ``raw_codes`` (n_items+1, L) the tokenizer's codes before collision handling; ``train_fingerprint``
    the training split it was built on; ``attributes`` an optional csr (n_items+1, A) kept for inspection;
    ``attribute_names`` "group=value" per attribute column
    (index 0 = padding, ""), what preference steering names; ``popularity`` (n_items+1,) training counts; ``stats`` build figures (seconds, collisions)."""

    config: SidConfig
    codes: np.ndarray
    sizes: tuple[int, ...]
    raw_codes: np.ndarray
    train_fingerprint: str
    popularity: np.ndarray
    attributes: sp.csr_array | None = None
    attribute_names: tuple[str, ...] | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.codes) - 1

    @property
    def length(self) -> int:
        """Tokens per item (L, or L+1 under dedup)."""
        return self.codes.shape[1]

    @property
    def hash(self) -> str:
        """sha256 (16 hex digits) of the final codes, the level sizes and the training fingerprint."""
        h = hashlib.sha256(np.ascontiguousarray(self.codes, dtype=np.int64).tobytes())
        h.update(repr(self.sizes).encode() + self.train_fingerprint.encode())
        return h.hexdigest()[:16]

    def check_train(self, train: Interactions) -> None:
        """DataError unless this table was built on ``train`` (same split of the same catalogue)."""
        fp = train.fingerprint()
        if fp != self.train_fingerprint or train.n_items != self.n_items:
            raise DataError(f"the SID table {self.hash} was built on another training split or catalogue "
                            f"(its training fingerprint {self.train_fingerprint[:12]} != {fp[:12]}, "
                            f"{self.n_items} items vs {train.n_items}); rebuild it with `recforge sid build`")

    def save(self, path: str | Path) -> Path:
        """Write the table as an artifact (table "tokenizer", name = the tokenizer) into directory ``path``."""
        tensors = {"codes": self.codes, "raw_codes": self.raw_codes, "popularity": self.popularity.astype(np.float32)}
        if self.attributes is not None:
            a = sp.csr_array(self.attributes)
            tensors["attributes.indptr"] = a.indptr.astype(np.int64)
            tensors["attributes.indices"] = a.indices.astype(np.int64)
        extra = {"sizes": list(self.sizes), "train_fingerprint": self.train_fingerprint, "hash": self.hash,
                 "stats": self.stats, "n_attributes": None if self.attributes is None else self.attributes.shape[1],
                 "attribute_names": None if self.attribute_names is None else list(self.attribute_names)}
        return save_artifact(path, table="tokenizer", name=self.config.tokenizer, config=to_dict(self.config),
                             tensors=tensors, extra=extra)

    @classmethod
    def load(cls, path: str | Path) -> SemanticIds:
        """Read a table written by :meth:`save`; its recorded hash must match its codes (DataError otherwise)."""
        art = load_artifact(path, table="tokenizer")
        try:
            t = art.tensors
            attrs = None
            if "attributes.indptr" in t:
                indptr, indices = t["attributes.indptr"].numpy(), t["attributes.indices"].numpy()
                attrs = sp.csr_array((np.ones(len(indices), np.float32), indices, indptr),
                                     shape=(len(indptr) - 1, int(art.extra["n_attributes"])))
            sids = cls(config=from_dict(SidConfig, art.config), codes=t["codes"].numpy(),
                       sizes=tuple(int(s) for s in art.extra["sizes"]), raw_codes=t["raw_codes"].numpy(),
                       train_fingerprint=art.extra["train_fingerprint"], popularity=t["popularity"].numpy(),
                       attributes=attrs, stats=art.extra.get("stats", {}),
                       attribute_names=None if art.extra.get("attribute_names") is None
                       else tuple(art.extra["attribute_names"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"cannot read the SID table at {path}: {type(exc).__name__}: {exc}") from None
        if sids.hash != art.extra.get("hash"):
            raise DataError(f"the SID table at {path} does not match its recorded hash")
        return sids


def build_semantic_ids(train: Interactions, config: SidConfig | None = None, *, catalog: ItemCatalog | None = None,
                       embedder: TextEmbedder | None = None, texts: Sequence[str] | None = None) -> SemanticIds:
    """Features of ``train`` (+ side data) -> tokenizer codes -> collision policy -> a :class:`SemanticIds`."""
    config = config or SidConfig()
    start = time.perf_counter()
    x = item_features(train, config.features, catalog=catalog, embedder=embedder, texts=texts, dim=config.dim,
                      seed=config.seed)
    feat_s = time.perf_counter() - start
    tok_cls = resolve("tokenizer", config.tokenizer)
    known = {f.name for f in dataclasses.fields(tok_cls.config_class)}
    settings = {"levels": config.levels, "codebook_size": config.codebook_size, "iters": config.iters,
                "epochs": config.epochs, "seed": config.seed}
    tok = tok_cls(tok_cls.config_class(**{k: v for k, v in settings.items() if k in known}))
    t0 = time.perf_counter()
    with single_thread():
        raw = tok.fit(x[1:])
        tok_s = time.perf_counter() - t0
        dist = tok.distances(x[1:], raw, config.levels - 1) if config.collisions == "uniform" else None
    sizes_raw = group_sizes(raw)
    if dist is not None:
        final = resolve_uniform(raw, dist, config.codebook_size)
        sizes = (config.codebook_size,) * config.levels
    else:
        final = resolve_dedup(raw)
        sizes = (config.codebook_size,) * config.levels + (int(final[:, -1].max()) + 1,)
    check_unique(final)
    pad = np.zeros((1, final.shape[1]), np.int64)
    stats = {"features_s": round(feat_s, 3), "tokenizer_s": round(tok_s, 3),
             "seconds": round(time.perf_counter() - start, 3),
             "collided_share_before": float((sizes_raw > 1).mean()), "largest_group_before": int(sizes_raw.max()),
             "collided_share_after": 0.0, "largest_group_after": 1}
    log.info("semantic ids: %d items, %s, %.1f%% collided before, %.1fs", train.n_items, sizes,
             100 * stats["collided_share_before"], stats["seconds"])
    return SemanticIds(config=config, codes=np.concatenate([pad, final]).astype(np.int64), sizes=sizes,
                       raw_codes=np.concatenate([np.zeros((1, raw.shape[1]), np.int64), raw]).astype(np.int64),
                       train_fingerprint=train.fingerprint(), popularity=train.item_counts().astype(np.float32),
                       attributes=None if catalog is None else catalog.attributes,
                       attribute_names=None if catalog is None else attribute_names(catalog), stats=stats)


def attribute_names(catalog: ItemCatalog) -> tuple[str, ...]:
    """"group=value" for every attribute column of ``catalog`` (column 0, padding, is "")."""
    groups = catalog.attr_groups or [None] * (catalog.n_attributes + 1)
    return ("", *(f"{groups[j] or 'attribute'}={v}" for j, v in enumerate(catalog.attr_vocab.ids, start=1)))
