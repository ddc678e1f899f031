"""ItemCatalog: item side information (title, multi-hot attributes such as genres, free text) keyed by an item Vocab.

Readers cover the MovieLens item files (``movies.csv``, ``u.item``, ``movies.dat``), S3-Rec ``*_item2attributes.json``,
HetRec ``artists.dat`` and Coat's one-hot item features. A catalog is aligned to the item vocabulary of an interaction
log with :meth:`ItemCatalog.align`, so that row ``i`` of ``attributes`` describes dense item ``i``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recforge.data.io import _as_ids, read_table, read_text
from recforge.data.vocab import Vocab
from recforge.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ItemCatalog:
    """Side information for the items of ``item_vocab``; index 0 of every per-item field is padding.

    titles: list of length n_items+1 (None where unknown). attributes: csr (n_items+1, n_attributes+1) float32
    multi-hot over ``attr_vocab`` (column 0 padding). text: optional list of length n_items+1 (free text, e.g. tags).
    attr_groups: optional list of length n_attributes+1 naming each attribute's group ("genre", "tag"; index 0 None);
    without it every attribute is in one group named "attribute" (see :meth:`groups`).
    """

    item_vocab: Vocab
    titles: list[str | None]
    attributes: sp.csr_array
    attr_vocab: Vocab
    text: list[str | None] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    attr_groups: list[str | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.item_vocab) + 1
        if len(self.titles) != n:
            raise DataError(f"titles has {len(self.titles)} entries, expected n_items+1={n}")
        if self.attributes.shape != (n, len(self.attr_vocab) + 1):
            raise DataError(f"attributes has shape {self.attributes.shape}, expected {(n, len(self.attr_vocab) + 1)}")
        if self.text is not None and len(self.text) != n:
            raise DataError(f"text has {len(self.text)} entries, expected n_items+1={n}")
        if self.attr_groups is not None and len(self.attr_groups) != len(self.attr_vocab) + 1:
            raise DataError(f"attr_groups has {len(self.attr_groups)} entries, expected n_attributes+1="
                            f"{len(self.attr_vocab) + 1}")

    # ---------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_records(
        cls,
        item_ids: Sequence[Any],
        titles: Sequence[str | None] | None = None,
        attributes: Sequence[Sequence[Any]] | None = None,
        text: Sequence[str | None] | None = None,
        attr_vocab: Vocab | None = None,
        meta: dict[str, Any] | None = None,
        group: str | None = None,
    ) -> ItemCatalog:
        """One record per item: external id, optional title, attribute list and text (all aligned with ``item_ids``).

        The attribute vocabulary is built in sorted order unless given; ``group`` names the attributes' group.
        """
        ids = _as_ids(np.asarray(list(item_ids), dtype=object))
        vocab = Vocab(ids.tolist(), name="item")
        n = len(vocab)
        attrs = [list(a) for a in attributes] if attributes is not None else [[] for _ in range(n)]
        for name, seq in (("titles", titles), ("attributes", attrs), ("text", text)):
            if seq is not None and len(seq) != n:
                raise DataError(f"{name} has {len(seq)} entries for {n} items")
        if attr_vocab is None:
            attr_vocab = Vocab(sorted({a for row in attrs for a in row}, key=_sort_key), name="attribute")
        lengths = np.fromiter((len(a) for a in attrs), dtype=np.int64, count=n)
        cols = attr_vocab.encode([a for row in attrs for a in row]) if lengths.sum() else np.zeros(0, np.int64)
        rows = np.repeat(np.arange(1, n + 1), lengths)
        mat = sp.csr_array(
            (np.ones(len(cols), np.float32), (rows, cols)), shape=(n + 1, len(attr_vocab) + 1), dtype=np.float32
        )
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return cls(
            item_vocab=vocab,
            titles=[None, *(titles if titles is not None else [None] * n)],
            attributes=mat,
            attr_vocab=attr_vocab,
            text=None if text is None else [None, *text],
            meta=dict(meta or {}),
            attr_groups=None if group is None else [None] + [group] * len(attr_vocab),
        )

    def align(self, item_vocab: Vocab) -> ItemCatalog:
        """This catalog re-indexed to ``item_vocab`` (e.g. an interaction log's). Items unknown to the catalog get no
        title/attributes; how many is recorded in ``meta["missing_items"]`` (and catalog-only items in ``meta["unused_items"]``)."""
        src = self.item_vocab.encode(item_vocab.ids, on_unknown="zero")  # (n_new,) 0 = not in catalog
        index = np.concatenate([[0], src])
        attributes = self.attributes[index]
        attributes = sp.csr_array(attributes)
        missing = int((src == 0).sum())
        unused = len(self.item_vocab) - int(len(np.unique(src[src > 0])))
        if missing:
            log.info("catalog has no entry for %d of %d items", missing, len(item_vocab))
        return ItemCatalog(
            item_vocab=item_vocab,
            titles=[self.titles[i] for i in index.tolist()],
            attributes=attributes,
            attr_vocab=self.attr_vocab,
            text=None if self.text is None else [self.text[i] for i in index.tolist()],
            meta={**self.meta, "missing_items": missing, "unused_items": unused},
            attr_groups=self.attr_groups,
        )

    def with_attributes(self, per_item: Sequence[Sequence[Any]], group: str) -> ItemCatalog:
        """This catalog plus a group of new attributes: ``per_item[i]`` lists the new attribute ids of dense item i+1.

        The new attributes are appended after the existing ones, in sorted order; the existing ones keep their columns
        and their group (``"attribute"`` when the catalog had none). DataError if a new id already names an attribute.
        """
        if len(per_item) != self.n_items:
            raise DataError(f"per_item has {len(per_item)} entries for {self.n_items} items")
        new = sorted({a for row in per_item for a in row}, key=_sort_key)
        clash = [a for a in new if a in self.attr_vocab]
        if clash:
            raise DataError(f"attribute(s) {clash[:5]} of group {group!r} already exist in the catalog")
        vocab = Vocab([*self.attr_vocab.ids, *new], name=self.attr_vocab.name)
        lengths = np.fromiter((len(r) for r in per_item), dtype=np.int64, count=self.n_items)
        cols = vocab.encode([a for row in per_item for a in row]) if lengths.sum() else np.zeros(0, np.int64)
        rows = np.repeat(np.arange(1, self.n_items + 1), lengths)
        added = sp.csr_array((np.ones(len(cols), np.float32), (rows, cols)), shape=(self.n_items + 1, len(vocab) + 1))
        old = sp.csr_array(self.attributes, shape=(self.n_items + 1, len(self.attr_vocab) + 1))
        old.resize((self.n_items + 1, len(vocab) + 1))
        mat = sp.csr_array(old + added)
        mat.sum_duplicates()
        mat.data[:] = 1.0
        groups = self.attr_groups if self.attr_groups is not None else [None] + ["attribute"] * self.n_attributes
        return ItemCatalog(item_vocab=self.item_vocab, titles=self.titles, attributes=mat, attr_vocab=vocab,
                           text=self.text, meta=self.meta, attr_groups=[*groups, *([group] * len(new))])

    # ---------------------------------------------------------------------------------------------------- access
    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    @property
    def n_attributes(self) -> int:
        return len(self.attr_vocab)

    def title(self, item: Any) -> str | None:
        """Title of an external item id."""
        return self.titles[int(self.item_vocab.encode(item)[0])]

    def attributes_of(self, item: Any) -> list[Any]:
        """External attribute ids of an external item id."""
        row = int(self.item_vocab.encode(item)[0])
        cols = self.attributes.indices[self.attributes.indptr[row] : self.attributes.indptr[row + 1]]
        return self.attr_vocab.decode(cols)

    def groups(self) -> tuple[np.ndarray, list[str]]:
        """(group index per attribute column (n_attributes+1,) int64, -1 at the padding column; group names in order
        of first appearance)."""
        named = self.attr_groups[1:] if self.attr_groups is not None else ["attribute"] * self.n_attributes
        names = list(dict.fromkeys(g or "attribute" for g in named))
        codes = [names.index(g or "attribute") for g in named]
        return np.asarray([-1, *codes], dtype=np.int64), names

    def attribute_counts(self) -> np.ndarray:
        """Items per attribute, shape (n_attributes+1,)."""
        return np.asarray(self.attributes.sum(axis=0)).ravel().astype(np.int64)

    def to_frame(self) -> pl.DataFrame:
        """One row per item: item, title, attributes (list), text."""
        ind, ptr = self.attributes.indices, self.attributes.indptr
        attrs = [self.attr_vocab.decode(ind[ptr[i] : ptr[i + 1]]) for i in range(1, self.n_items + 1)]
        cols: dict[str, Any] = {"item": self.item_vocab.ids, "title": self.titles[1:], "attributes": attrs}
        if self.text is not None:
            cols["text"] = self.text[1:]
        return pl.DataFrame(cols, strict=False)

    def __repr__(self) -> str:
        return f"ItemCatalog(items={self.n_items}, attributes={self.n_attributes})"

    # ------------------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``catalog.json`` (vocabularies, titles, text, meta) and ``catalog.safetensors`` (the attribute csr
        as indptr/indices) into directory ``path``. No pickle."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        doc = {"format": "recforge.ItemCatalog/1", "item_vocab": self.item_vocab.to_json(),
               "attr_vocab": self.attr_vocab.to_json(), "titles": self.titles, "text": self.text, "meta": self.meta,
               "attr_groups": self.attr_groups}
        (path / "catalog.json").write_text(json.dumps(doc, default=str), encoding="utf-8")
        save_file({"indptr": self.attributes.indptr.astype(np.int64), "indices": self.attributes.indices.astype(np.int64)},
                  str(path / "catalog.safetensors"))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ItemCatalog:
        """Inverse of :meth:`save`."""
        from safetensors.numpy import load_file

        path = Path(path)
        doc_file, arr_file = path / "catalog.json", path / "catalog.safetensors"
        if not doc_file.is_file() or not arr_file.is_file():
            raise DataError("not a saved catalog (need catalog.json and catalog.safetensors)", path=str(path))
        try:
            doc = json.loads(doc_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"corrupt catalog: {exc}", path=str(doc_file)) from None
        if not isinstance(doc, dict) or doc.get("format") != "recforge.ItemCatalog/1":
            raise DataError(f"unknown catalog format {doc.get('format')!r}", path=str(doc_file))
        arrays = load_file(str(arr_file))
        item_vocab, attr_vocab = Vocab.from_json(doc["item_vocab"]), Vocab.from_json(doc["attr_vocab"])
        indices = arrays["indices"]
        mat = sp.csr_array((np.ones(len(indices), np.float32), indices, arrays["indptr"]),
                           shape=(len(item_vocab) + 1, len(attr_vocab) + 1))
        return cls(item_vocab=item_vocab, titles=doc["titles"], attributes=mat, attr_vocab=attr_vocab,
                   text=doc["text"], meta=doc["meta"], attr_groups=doc.get("attr_groups"))


def _sort_key(x: Any) -> tuple[int, Any]:
    """Numbers before strings, each in natural order (attribute ids may be either)."""
    return (0, x) if isinstance(x, int | float) else (1, str(x))


def _require(df: pl.DataFrame, cols: Sequence[str], path: str) -> None:
    for c in cols:
        if c not in df.columns:
            raise DataError(f"missing column (the file has {df.columns})", path=path, column=c)


# ------------------------------------------------------------------------------------------------------- readers
def read_movielens_csv(path: str | Path, tags: str | Path | None = None) -> ItemCatalog:
    """ML-latest ``movies.csv`` (movieId,title,genres; genres '|'-separated). ``tags``: optional ``tags.csv`` whose
    tags per movie (distinct, in file order) become the item text."""
    p = str(path)
    df, _ = read_table(path, sep=",", min_columns=3)
    _require(df, ("movieId", "title", "genres"), p)
    genres = [[] if g in (None, "(no genres listed)") else g.split("|") for g in df["genres"].to_list()]
    text = None
    ids = df["movieId"].to_list()
    if tags is not None:
        tdf, _ = read_table(tags, sep=",", min_columns=4)
        _require(tdf, ("movieId", "tag"), str(tags))
        per_item: dict[str, list[str]] = {}
        for m, t in zip(tdf["movieId"].to_list(), tdf["tag"].to_list()):
            if t and t not in per_item.setdefault(m, []):
                per_item[m].append(t)
        text = [", ".join(per_item[m]) if m in per_item else None for m in ids]
    return ItemCatalog.from_records(ids, df["title"].to_list(), genres, text=text, meta={"source": p, "attributes": "genres"},
                                    group="genre")


def read_ml100k_items(path: str | Path, genre_path: str | Path | None = None, encoding: str = "latin-1") -> ItemCatalog:
    """ML-100K ``u.item`` ('|'-separated, Latin-1): id|title|release|video release|IMDb URL|19 genre flags.
    Genre names come from ``u.genre`` when given, else they are the flag positions 0..18."""
    p = str(path)
    df, first = read_table(path, sep="|", header=False, encoding=encoding, min_columns=6, quote=False)
    flags = df.select(df.columns[5:])
    names: list[Any] = list(range(flags.width))
    if genre_path is not None:
        gdf, _ = read_table(genre_path, sep="|", header=False, min_columns=2, quote=False)
        gdf = gdf.drop_nulls()
        by_index = {int(i): g for g, i in zip(gdf[gdf.columns[0]].to_list(), gdf[gdf.columns[1]].to_list())}
        names = [by_index.get(i, i) for i in range(flags.width)]
    try:
        mat = flags.cast(pl.Int8).to_numpy()
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"genre flags must be 0/1 ({str(exc).splitlines()[0]})", path=p) from exc
    genres = [[names[j] for j in np.flatnonzero(row)] for row in mat]
    return ItemCatalog.from_records(
        df[df.columns[0]].to_list(), df[df.columns[1]].to_list(), genres, meta={"source": p, "attributes": "genres"},
        group="genre",
    )


def read_ml1m_movies(path: str | Path, encoding: str = "latin-1") -> ItemCatalog:
    """ML-1M ``movies.dat`` (MovieID::Title::Genres, Latin-1; genres '|'-separated)."""
    p = str(path)
    df, _ = read_table(path, sep="::", header=False, encoding=encoding, min_columns=3, quote=False)
    ids, titles, gen = (df[c].to_list() for c in df.columns[:3])
    return ItemCatalog.from_records(
        ids, titles, [g.split("|") if g else [] for g in gen], meta={"source": p, "attributes": "genres"}, group="genre"
    )


def read_item2attributes(path: str | Path) -> ItemCatalog:
    """S3-Rec ``*_item2attributes.json``: ``{"item_id": [attribute_id, ...]}`` (no titles)."""
    p = str(path)
    try:
        obj = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=p, line=exc.lineno) from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object item -> [attributes], got {type(obj).__name__}", path=p)
    bad = next((k for k, v in obj.items() if not isinstance(v, list)), None)
    if bad is not None:
        raise DataError(f"attributes of item {bad!r} must be a list, got {type(obj[bad]).__name__}", path=p)
    return ItemCatalog.from_records(list(obj), None, list(obj.values()), meta={"source": p, "attributes": "attribute ids"})


def read_hetrec_artists(path: str | Path) -> ItemCatalog:
    """HetRec Last.fm ``artists.dat`` (tab-separated with header: id, name, url, pictureURL; UTF-8): titles only."""
    p = str(path)
    df, _ = read_table(path, sep="\t", min_columns=2, quote=False)
    _require(df, ("id", "name"), p)
    return ItemCatalog.from_records(df["id"].to_list(), df["name"].to_list(), meta={"source": p})


def read_coat_items(path: str | Path, map_path: str | Path | None = None) -> ItemCatalog:
    """Coat ``item_features.ascii`` (300 x 33 one-hot rows, items 0..299 by row) and its ``item_features_map.txt``."""
    p = str(path)
    rows = [line.split() for line in read_text(path).splitlines() if line.strip()]
    try:
        mat = np.asarray(rows, dtype=np.int64)
    except ValueError as exc:
        raise DataError(f"expected a dense integer matrix ({exc})", path=p) from None
    names: list[Any] = list(range(mat.shape[1]))
    if map_path is not None:
        labels = [ln.strip() for ln in read_text(map_path).splitlines() if ln.strip()]
        if len(labels) == mat.shape[1]:
            names = labels
        else:
            log.warning("%s: %d names for %d feature columns; using column numbers", map_path, len(labels), mat.shape[1])
    attrs = [[names[j] for j in np.flatnonzero(r)] for r in mat]
    return ItemCatalog.from_records(list(range(len(mat))), None, attrs, meta={"source": p, "attributes": "one-hot features"})
