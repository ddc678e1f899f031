"""Feature tables: user, item or context side features aligned to a vocabulary.

A :class:`FeatureTable` holds one row per dense id of its ``vocab``: row ``i`` describes dense id ``i`` and row 0 is
padding (always empty). Three kinds of feature share the table:

- **categorical**: one value per row, stored as a code into the feature's own :class:`Vocab` of values
  (``codes`` (n+1,) int64; 0 = missing, e.g. the padding row or a null);
- **bag**: several values per row (genres, tags), jagged: ``codes`` (M,) int64 >= 1, ``offsets`` (n+2,) so that row
  ``i`` is ``codes[offsets[i]:offsets[i+1]]``, optional ``weights`` (M,) float32;
- **dense**: a float32 matrix (n+1, d) per feature (d = 1 for a scalar column).

Rows of the vocabulary that the source frame does not describe are *filled*: categorical code 0, an empty bag, dense
zeros; ``present`` (n+1,) says which rows came from the frame, so a model can tell a filled row from a real zero.
:attr:`FeatureTable.hash` is a stable digest of the content: a model records it to say which features it was trained
on. Persistence goes through :mod:`recforge.artifacts` (registry table ``"features"``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from recforge.artifacts import load_artifact, save_artifact
from recforge.data.jagged import gather_jagged
from recforge.data.vocab import Vocab
from recforge.errors import DataError

log = logging.getLogger(__name__)

ARTIFACT_TABLE = "features"
ARTIFACT_NAME = "FeatureTable"


@dataclass(frozen=True, eq=False)
class Categorical:
    """One value per row: ``codes`` (n+1,) int64 in 0..len(vocab) (0 = missing); ``vocab`` holds the values."""

    codes: np.ndarray
    vocab: Vocab


@dataclass(frozen=True, eq=False)
class Bag:
    """Several values per row, jagged: ``codes`` (M,) int64 in 1..len(vocab), ``offsets`` (n+2,) int64, optional
    ``weights`` (M,) float32 (one per code)."""

    codes: np.ndarray
    offsets: np.ndarray
    vocab: Vocab
    weights: np.ndarray | None = None

    def lengths(self) -> np.ndarray:
        """Number of values per row, shape (n+1,)."""
        return np.diff(self.offsets)


@dataclass(frozen=True, eq=False)
class FeatureRows:
    """The features of a batch of ids (from :meth:`FeatureTable.select`); B = number of ids.

    categorical: name -> codes (B,); bag: name -> (codes (M,), offsets (B+1,), weights (M,) or None);
    dense: name -> (B, d) float32; present: (B,) bool.
    """

    ids: np.ndarray
    categorical: dict[str, np.ndarray]
    bag: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    dense: dict[str, np.ndarray]
    present: np.ndarray


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """Features of the ids of ``vocab`` (users, items or contexts); every per-row array has n+1 rows, n = len(vocab).

    ``categorical``, ``bag`` and ``dense`` map feature names (unique across the three) to their data; their order is
    the column order of :meth:`to_multi_hot` and :meth:`dense_matrix`. ``present`` (n+1,) bool marks the rows the
    source described (row 0 never). Validated at construction; arrays are made read-only.
    """

    vocab: Vocab
    categorical: dict[str, Categorical] = field(default_factory=dict)
    bag: dict[str, Bag] = field(default_factory=dict)
    dense: dict[str, np.ndarray] = field(default_factory=dict)
    present: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n1 = len(self.vocab) + 1
        names = [*self.categorical, *self.bag, *self.dense]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise DataError(f"feature names must be unique across categorical, bag and dense; repeated: {dup}")
        present = np.zeros(n1, bool) if self.present is None else np.asarray(self.present, dtype=bool)
        if present.shape != (n1,):
            raise DataError(f"present has shape {present.shape}, expected ({n1},)")
        if present[0]:
            raise DataError("present[0] must be False (row 0 is padding)")
        object.__setattr__(self, "present", present)
        for name, feat in self.categorical.items():
            _check_categorical(name, feat, n1)
        for name, bag in self.bag.items():
            _check_bag(name, bag, n1)
        dense = {name: _check_dense(name, mat, n1) for name, mat in self.dense.items()}
        object.__setattr__(self, "dense", dense)
        for arr in (present, *dense.values(), *(f.codes for f in self.categorical.values()),
                    *(a for b in self.bag.values() for a in (b.codes, b.offsets, b.weights) if a is not None)):
            arr.setflags(write=False)

    # ---------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_frame(
        cls,
        df: Any,
        *,
        key: str,
        vocab: Vocab,
        categorical: Sequence[str] = (),
        bag: Sequence[str] = (),
        dense: Sequence[str] = (),
        bag_weights: dict[str, str] | None = None,
        value_vocabs: dict[str, Vocab] | None = None,
        on_unknown: Literal["drop", "raise"] = "drop",
    ) -> FeatureTable:
        """Build from a polars (or pandas) frame with one row per entity, keyed by external ids in column ``key``.

        categorical: columns with one value per row (null = missing, code 0). bag: list columns (null = empty bag);
        ``bag_weights`` maps a bag column to a list column of floats of the same lengths. dense: numeric columns
        (d = 1) or list/array columns of one fixed length d; a null, NaN or infinite value is a DataError naming the
        column, the frame row and the key. Value vocabularies are built in sorted order unless ``value_vocabs`` gives
        one (values it lacks become code 0 and are counted in ``meta["unknown_values"]``).

        Keys not in ``vocab`` are dropped and counted in ``meta["unknown_keys"]`` (``on_unknown="drop"``, logged) or
        raise a DataError naming them (``"raise"``); a repeated or null key is always a DataError. Vocabulary ids the
        frame does not describe are filled (see the module docstring) and counted in ``meta["missing_rows"]``.
        """
        if on_unknown not in ("drop", "raise"):
            raise DataError(f"on_unknown must be 'drop' or 'raise', got {on_unknown!r}")
        if not isinstance(df, pl.DataFrame):
            df = pl.from_pandas(df)
        weights = dict(bag_weights or {})
        for col in (key, *categorical, *bag, *dense, *weights.values()):
            if col not in df.columns:
                raise DataError(f"missing column (the frame has {df.columns})", column=col)
        stray = sorted(set(weights) - set(bag))
        if stray:
            raise DataError(f"bag_weights names column(s) {stray} that are not bag features")
        frame_rows, ids = _encode_keys(df[key], vocab, on_unknown)
        n1 = len(vocab) + 1
        kept = df[frame_rows]
        value_vocabs = dict(value_vocabs or {})
        unknown_values: dict[str, int] = {}
        cats = {}
        for name in categorical:
            cats[name], unknown_values[name] = _categorical(kept[name], ids, n1, value_vocabs.get(name))
        bags = {}
        for name in bag:
            w = kept[weights[name]] if name in weights else None
            bags[name], unknown_values[name] = _bag(kept[name], w, kept[key], frame_rows, ids, n1,
                                                    value_vocabs.get(name))
        dens = {name: _dense(kept[name], kept[key], frame_rows, ids, n1) for name in dense}
        present = np.zeros(n1, bool)
        present[ids] = True
        meta = {"rows": df.height, "unknown_keys": df.height - len(ids), "missing_rows": len(vocab) - len(ids),
                "unknown_values": {k: v for k, v in unknown_values.items() if v}}
        if meta["unknown_keys"] or meta["missing_rows"]:
            log.info("features: %d frame rows with keys outside the %s vocabulary dropped; %d of %d ids have no row "
                     "(filled)", meta["unknown_keys"], vocab.name, meta["missing_rows"], len(vocab))
        return cls(vocab=vocab, categorical=cats, bag=bags, dense=dens, present=present, meta=meta)

    @classmethod
    def from_catalog(cls, catalog: Any, name: str = "attribute") -> FeatureTable:
        """The attributes of an :class:`~recforge.data.catalog.ItemCatalog` as one bag feature ``name`` over its item
        vocabulary (codes = the catalog's attribute columns). Items with neither a title nor an attribute are filled."""
        mat = sp.csr_array(catalog.attributes)
        mat.sort_indices()
        bag = Bag(codes=mat.indices.astype(np.int64), offsets=mat.indptr.astype(np.int64), vocab=catalog.attr_vocab)
        present = (np.diff(mat.indptr) > 0) | np.asarray([t is not None for t in catalog.titles])
        present[0] = False
        return cls(vocab=catalog.item_vocab, bag={name: bag}, present=present, meta={"source": "catalog"})

    # ---------------------------------------------------------------------------------------------------- access
    @property
    def n(self) -> int:
        """Number of real ids (rows are n+1 with the padding row)."""
        return len(self.vocab)

    @property
    def names(self) -> list[str]:
        """Feature names: categorical, then bag, then dense, each in insertion order."""
        return [*self.categorical, *self.bag, *self.dense]

    def __repr__(self) -> str:
        return (f"FeatureTable({self.vocab.name}, n={self.n}, categorical={list(self.categorical)}, "
                f"bag={list(self.bag)}, dense={ {k: v.shape[1] for k, v in self.dense.items()} })")

    def column_offsets(self, features: Sequence[str] | None = None) -> dict[str, int]:
        """Where each categorical / bag feature starts in :meth:`to_multi_hot`: value code c of feature f is column
        ``offsets[f] + c`` (column 0 is padding). ``features`` defaults to every categorical and bag feature."""
        chosen = self._sparse_names(features)
        out, start = {}, 0
        for name in chosen:
            out[name] = start
            start += len(self._value_vocab(name))
        return out

    def to_multi_hot(self, features: Sequence[str] | None = None) -> sp.csr_array:
        """csr (n+1, n_values) float32 over the categorical and bag features, n_values = 1 + the sum of their value
        vocabulary sizes (column 0 padding, see :meth:`column_offsets`). A categorical value counts 1; a bag value its
        weight (1 without weights), repeated values summed, so an unweighted row sums to its number of values."""
        offsets = self.column_offsets(features)
        n_values = 1 + sum(len(self._value_vocab(name)) for name in offsets)
        rows, cols, data = [], [], []
        for name, start in offsets.items():
            if name in self.categorical:
                codes = self.categorical[name].codes
                r = np.flatnonzero(codes)
                rows.append(r)
                cols.append(start + codes[r])
                data.append(np.ones(len(r), np.float32))
            else:
                b = self.bag[name]
                rows.append(np.repeat(np.arange(self.n + 1), b.lengths()))
                cols.append(start + b.codes)
                data.append(b.weights if b.weights is not None else np.ones(len(b.codes), np.float32))
        if not rows:
            return sp.csr_array((self.n + 1, n_values), dtype=np.float32)
        mat = sp.csr_array((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(self.n + 1, n_values), dtype=np.float32)
        mat.sum_duplicates()
        mat.sort_indices()
        return mat

    def dense_matrix(self, features: Sequence[str] | None = None) -> np.ndarray:
        """The dense features side by side, (n+1, sum of d) float32, in ``features`` order (default: all)."""
        chosen = list(self.dense) if features is None else list(features)
        unknown = [f for f in chosen if f not in self.dense]
        if unknown:
            raise DataError(f"unknown dense feature(s) {unknown} (have {list(self.dense)})")
        if not chosen:
            return np.zeros((self.n + 1, 0), np.float32)
        return np.concatenate([self.dense[f] for f in chosen], axis=1)

    def select(self, ids: np.ndarray | Sequence[int]) -> FeatureRows:
        """The features of dense ids ``ids`` (B,) (0 gives the padding row), gathered without a loop per id."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        bad = np.flatnonzero((ids < 0) | (ids > self.n))
        if len(bad):
            raise DataError(f"ids must be in 0..{self.n}; position {int(bad[0])} has {int(ids[bad[0]])} "
                            f"({len(bad)} out of range)")
        bags = {}
        for name, b in self.bag.items():
            codes, offsets = gather_jagged(b.codes, b.offsets, ids)
            w = None if b.weights is None else gather_jagged(b.weights, b.offsets, ids)[0]
            bags[name] = (codes, offsets, w)
        return FeatureRows(ids=ids, categorical={k: f.codes[ids] for k, f in self.categorical.items()}, bag=bags,
                           dense={k: m[ids] for k, m in self.dense.items()}, present=self.present[ids])

    # --------------------------------------------------------------------------------------------- identity
    def fingerprint(self) -> str:
        """sha256 (hex) over the vocabulary, every feature's name, kind, value vocabulary and arrays, and ``present``.
        Stable across processes and machines (fixed little-endian dtypes, JSON of the ids); ``meta`` is left out."""
        h = hashlib.sha256()
        h.update(_ids_json(self.vocab))
        h.update(np.ascontiguousarray(self.present, dtype="|b1").tobytes())
        for name, f in self.categorical.items():
            h.update(b"|categorical|" + name.encode() + b"|" + _ids_json(f.vocab))
            h.update(np.ascontiguousarray(f.codes, dtype="<i8").tobytes())
        for name, b in self.bag.items():
            h.update(b"|bag|" + name.encode() + b"|" + _ids_json(b.vocab))
            for arr in (b.codes, b.offsets):
                h.update(np.ascontiguousarray(arr, dtype="<i8").tobytes())
            h.update(b"-" if b.weights is None else np.ascontiguousarray(b.weights, dtype="<f4").tobytes())
        for name, m in self.dense.items():
            h.update(b"|dense|" + name.encode() + str(m.shape).encode())
            h.update(np.ascontiguousarray(m, dtype="<f4").tobytes())
        return h.hexdigest()

    @property
    def hash(self) -> str:
        """First 16 hex digits of :meth:`fingerprint` (what a model records)."""
        return self.fingerprint()[:16]

    # ------------------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the table as an artifact (table ``"features"``) into directory ``path``; no pickle."""
        tensors: dict[str, np.ndarray] = {"present": self.present}
        for name, f in self.categorical.items():
            tensors[f"categorical/{name}/codes"] = f.codes
        for name, b in self.bag.items():
            tensors[f"bag/{name}/codes"] = b.codes
            tensors[f"bag/{name}/offsets"] = b.offsets
            if b.weights is not None:
                tensors[f"bag/{name}/weights"] = b.weights
        for name, m in self.dense.items():
            tensors[f"dense/{name}"] = m
        config = {"categorical": list(self.categorical), "bag": list(self.bag), "dense": list(self.dense)}
        extra = {"vocab": self.vocab.to_json(), "hash": self.hash, "meta": self.meta,
                 "value_vocabs": {name: self._value_vocab(name).to_json() for name in self._sparse_names(None)}}
        writable = {k: np.array(v) for k, v in tensors.items()}  # torch refuses to wrap read-only arrays silently
        return save_artifact(path, table=ARTIFACT_TABLE, name=ARTIFACT_NAME, config=config, tensors=writable,
                             extra=extra)

    @classmethod
    def load(cls, path: str | Path) -> FeatureTable:
        """Inverse of :meth:`save`; DataError when the artifact is not a feature table, was altered, or its content
        no longer matches the recorded hash."""
        art = load_artifact(path, table=ARTIFACT_TABLE)
        t = {k: v.numpy() for k, v in art.tensors.items()}
        try:
            vocabs = {k: Vocab.from_json(v) for k, v in art.extra["value_vocabs"].items()}
            cats = {n: Categorical(codes=t[f"categorical/{n}/codes"], vocab=vocabs[n]) for n in art.config["categorical"]}
            bags = {n: Bag(codes=t[f"bag/{n}/codes"], offsets=t[f"bag/{n}/offsets"], vocab=vocabs[n],
                           weights=t.get(f"bag/{n}/weights")) for n in art.config["bag"]}
            dens = {n: t[f"dense/{n}"] for n in art.config["dense"]}
            table = cls(vocab=Vocab.from_json(art.extra["vocab"]), categorical=cats, bag=bags, dense=dens,
                        present=t["present"], meta=art.extra.get("meta", {}))
        except KeyError as exc:
            raise DataError(f"incomplete feature table artifact (missing {exc}): {path}") from None
        if table.hash != art.extra.get("hash"):
            raise DataError(f"feature table content hash {table.hash} != recorded {art.extra.get('hash')}: {path}")
        return table

    # ---------------------------------------------------------------------------------------------------- helpers
    def _sparse_names(self, features: Sequence[str] | None) -> list[str]:
        if features is None:
            return [*self.categorical, *self.bag]
        unknown = [f for f in features if f not in self.categorical and f not in self.bag]
        if unknown:
            raise DataError(f"unknown categorical/bag feature(s) {unknown} (have {[*self.categorical, *self.bag]})")
        return list(features)

    def _value_vocab(self, name: str) -> Vocab:
        return self.categorical[name].vocab if name in self.categorical else self.bag[name].vocab


# -------------------------------------------------------------------------------------------------- validation
def _check_categorical(name: str, feat: Categorical, n1: int) -> None:
    codes = np.asarray(feat.codes)
    if codes.shape != (n1,) or not np.issubdtype(codes.dtype, np.integer):
        raise DataError(f"categorical feature {name!r}: codes must be int with shape ({n1},), got {codes.dtype} "
                        f"{codes.shape}")
    bad = np.flatnonzero((codes < 0) | (codes > len(feat.vocab)))
    if len(bad):
        raise DataError(f"categorical feature {name!r}: row {int(bad[0])} has code {int(codes[bad[0]])}, expected "
                        f"0..{len(feat.vocab)}")
    if codes[0] != 0:
        raise DataError(f"categorical feature {name!r}: row 0 (padding) must have code 0")
    object.__setattr__(feat, "codes", codes.astype(np.int64, copy=False))


def _check_bag(name: str, bag: Bag, n1: int) -> None:
    codes, offsets = np.asarray(bag.codes), np.asarray(bag.offsets)
    if offsets.shape != (n1 + 1,) or not np.issubdtype(offsets.dtype, np.integer):
        raise DataError(f"bag feature {name!r}: offsets must be int with shape ({n1 + 1},), got {offsets.shape}")
    if offsets[0] != 0 or offsets[1] != 0 or (np.diff(offsets) < 0).any() or offsets[-1] != len(codes):
        raise DataError(f"bag feature {name!r}: offsets must start 0, 0 (row 0 is padding), never decrease and end "
                        f"at len(codes)={len(codes)}")
    if codes.ndim != 1 or (len(codes) and not np.issubdtype(codes.dtype, np.integer)):
        raise DataError(f"bag feature {name!r}: codes must be a 1-d int array, got {codes.dtype} {codes.shape}")
    bad = np.flatnonzero((codes < 1) | (codes > len(bag.vocab)))
    if len(bad):
        row = int(np.searchsorted(offsets, bad[0], side="right") - 1)
        raise DataError(f"bag feature {name!r}: row {row} has code {int(codes[bad[0]])}, expected 1..{len(bag.vocab)}")
    object.__setattr__(bag, "codes", codes.astype(np.int64, copy=False))
    object.__setattr__(bag, "offsets", offsets.astype(np.int64, copy=False))
    if bag.weights is not None:
        w = np.asarray(bag.weights, dtype=np.float32)
        if w.shape != codes.shape or not np.isfinite(w).all():
            raise DataError(f"bag feature {name!r}: weights must be finite with shape {codes.shape}")
        object.__setattr__(bag, "weights", w)


def _check_dense(name: str, mat: np.ndarray, n1: int) -> np.ndarray:
    m = np.asarray(mat, dtype=np.float32)
    if m.ndim != 2 or m.shape[0] != n1:
        raise DataError(f"dense feature {name!r}: expected shape ({n1}, d), got {m.shape}")
    bad = np.argwhere(~np.isfinite(m))
    if len(bad):
        raise DataError(f"dense feature {name!r}: row {int(bad[0, 0])} has a non-finite value")
    if m[0].any():
        raise DataError(f"dense feature {name!r}: row 0 (padding) must be zeros")
    return m


# ----------------------------------------------------------------------------------------------- frame parsing
def _encode_keys(keys: pl.Series, vocab: Vocab, on_unknown: str) -> tuple[np.ndarray, np.ndarray]:
    """(frame rows kept (R,), their dense ids (R,)); raises on null or repeated keys and, with "raise", unknown keys."""
    nulls = np.flatnonzero(keys.is_null().to_numpy())
    if len(nulls):
        raise DataError(f"null key in row {int(nulls[0])} ({len(nulls)} null keys)", column=keys.name)
    values = keys.to_list()
    dense = vocab.encode(values, on_unknown="zero")
    unknown = np.flatnonzero(dense == 0)
    if len(unknown) and on_unknown == "raise":
        shown = ", ".join(f"row {int(r)}: {values[r]!r}" for r in unknown[:5])
        raise DataError(f"{len(unknown)} key(s) not in the {vocab.name} vocabulary ({shown})", column=keys.name)
    rows = np.flatnonzero(dense > 0)
    ids = dense[rows]
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(np.diff(ids[order]) == 0)
    if len(repeated):
        first, second = rows[order[repeated[0]]], rows[order[repeated[0] + 1]]
        raise DataError(f"key {values[first]!r} appears in rows {int(first)} and {int(second)} ({len(repeated)} "
                        f"repeated keys)", column=keys.name)
    return rows, ids


def _value_codes(values: list[Any], vocab: Vocab | None, name: str) -> tuple[np.ndarray, Vocab, int]:
    """(codes (len(values),), the value vocabulary, how many values it lacks); builds a sorted vocabulary if None."""
    if vocab is None:
        vocab = Vocab(sorted(set(values), key=_sort_key), name=name)
    codes = vocab.encode(values, on_unknown="zero") if values else np.zeros(0, np.int64)
    return codes, vocab, int((codes == 0).sum())


def _categorical(col: pl.Series, ids: np.ndarray, n1: int, vocab: Vocab | None) -> tuple[Categorical, int]:
    values = col.to_list()
    known = np.asarray([v is not None and v == v for v in values], dtype=bool)  # v != v: a float NaN
    codes, vocab, unknown = _value_codes([v for v, k in zip(values, known) if k], vocab, col.name)
    out = np.zeros(n1, np.int64)
    out[ids[known]] = codes
    return Categorical(codes=out, vocab=vocab), unknown


def _bag(col: pl.Series, weights: pl.Series | None, keys: pl.Series, frame_rows: np.ndarray, ids: np.ndarray,
         n1: int, vocab: Vocab | None) -> tuple[Bag, int]:
    col = _as_list(col)
    if not isinstance(col.dtype, pl.List):
        raise DataError(f"a bag column must hold lists, got {col.dtype} (split a text column first, e.g. "
                        f"pl.col(...).str.split('|'))", column=col.name)
    lengths = col.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = col.filter(pl.Series(lengths > 0)).explode()
    bad = np.flatnonzero(flat.is_null().to_numpy())
    if len(bad):
        row = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
        raise DataError(f"null value inside the bag of row {int(frame_rows[row])} (key {keys[row]!r})",
                        column=col.name)
    values, vocab, unknown = _value_codes(flat.to_list(), vocab, col.name)
    w = None
    if weights is not None:
        w = _bag_weights(weights, lengths, keys, frame_rows)
    if unknown:  # values outside a given vocabulary are dropped from the bag (code 0 cannot sit in a bag)
        keep = values > 0
        lengths = np.bincount(np.repeat(np.arange(len(lengths)), lengths)[keep], minlength=len(lengths))
        values, w = values[keep], None if w is None else w[keep]
    frame_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    order = np.argsort(ids, kind="stable")  # frame rows in dense-id order
    codes, _ = gather_jagged(values, frame_offsets, order)
    dense_len = np.zeros(n1, np.int64)
    dense_len[ids] = lengths
    offsets = np.concatenate([[0], np.cumsum(dense_len)]).astype(np.int64)
    wd = None if w is None else gather_jagged(w, frame_offsets, order)[0]
    return Bag(codes=codes, offsets=offsets, vocab=vocab, weights=wd), unknown


def _bag_weights(weights: pl.Series, lengths: np.ndarray, keys: pl.Series, frame_rows: np.ndarray) -> np.ndarray:
    weights = _as_list(weights)
    if not isinstance(weights.dtype, pl.List):
        raise DataError(f"bag weights must be a list column, got {weights.dtype}", column=weights.name)
    wlen = weights.list.len().fill_null(0).to_numpy().astype(np.int64)
    bad = np.flatnonzero(wlen != lengths)
    if len(bad):
        r = int(bad[0])
        raise DataError(f"row {int(frame_rows[r])} (key {keys[r]!r}) has {int(wlen[r])} weights for "
                        f"{int(lengths[r])} bag values", column=weights.name)
    w = weights.filter(pl.Series(wlen > 0)).explode().cast(pl.Float64, strict=False).to_numpy().astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(w))
    if len(bad):
        row = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
        raise DataError(f"row {int(frame_rows[row])} (key {keys[row]!r}) has a null, NaN or infinite weight",
                        column=weights.name)
    return w.astype(np.float32)


def _dense(col: pl.Series, keys: pl.Series, frame_rows: np.ndarray, ids: np.ndarray, n1: int) -> np.ndarray:
    col = _as_list(col)
    if isinstance(col.dtype, pl.List):
        lengths = col.list.len().to_numpy()
        nulls = np.flatnonzero(col.is_null().to_numpy())
        if len(nulls):
            r = int(nulls[0])
            raise DataError(f"row {int(frame_rows[r])} (key {keys[r]!r}) has no vector", column=col.name)
        if len(lengths) and (lengths != lengths[0]).any():
            r = int(np.flatnonzero(lengths != lengths[0])[0])
            raise DataError(f"row {int(frame_rows[r])} (key {keys[r]!r}) has {int(lengths[r])} values, the first row "
                            f"{int(lengths[0])}", column=col.name)
        d = int(lengths[0]) if len(lengths) else 0
        flat = col.explode() if len(col) and d else pl.Series([], dtype=pl.Float64)
        if not (flat.dtype.is_numeric() or flat.dtype == pl.Null):
            raise DataError(f"a dense column must hold numbers, got {col.dtype}", column=col.name)
        values = flat.cast(pl.Float64).to_numpy().reshape(len(col), d)
    else:
        if not col.dtype.is_numeric():
            raise DataError(f"a dense column must hold numbers, got {col.dtype}", column=col.name)
        values = col.cast(pl.Float64).to_numpy().reshape(-1, 1)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        r = int(bad[0, 0])
        raise DataError(f"row {int(frame_rows[r])} (key {keys[r]!r}) has a null, NaN or infinite value "
                        f"({len(np.unique(bad[:, 0]))} rows affected)", column=col.name)
    out = np.zeros((n1, values.shape[1]), np.float32)
    out[ids] = values
    return out


def _as_list(col: pl.Series) -> pl.Series:
    """A fixed-size array column as a list column (one code path for both)."""
    return col.cast(pl.List(col.dtype.inner)) if isinstance(col.dtype, pl.Array) else col


def _ids_json(vocab: Vocab) -> bytes:
    return json.dumps(vocab.ids, default=str, separators=(",", ":")).encode()


def _sort_key(x: Any) -> tuple[int, Any]:
    """Numbers before strings, each in natural order (values may be either)."""
    return (0, x) if isinstance(x, int | float) and not isinstance(x, bool) else (1, str(x))
