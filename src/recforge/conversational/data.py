"""CRS datasets: items with binary attributes plus (user, target item) dialogue pairs per split.

A :class:`CRSDataset` is what the simulator and every policy read:

- ``item_attrs``: scipy CSR (n_items, n_attrs), 1.0 where the item has the attribute;
- ``attr_groups``: (n_attrs,) int group id per attribute (``group_names`` names them; LastFM* has one group "tag",
  ML-latest-small has "genre" and "tag") — multiple-choice questions offer attributes of one group;
- ``splits``: {"train" | "valid" | "test": (users (P,), items (P,))} dialogue pairs. "train" pairs fit the item/attribute
  scorer, "valid" pairs drive policy training episodes, "test" pairs are the evaluation episodes (the SCPR protocol).

Ids are 0-based dense ints inside; ``item_ids`` / ``user_ids`` / ``attr_names`` / ``item_titles`` hold the external view.

Readers: :func:`load_lastfm_crs` (LastFM*, SCPR JSON format), :func:`build_movielens` (ML-latest-small genres + tags),
:func:`build_s3rec` (S3-Rec ``<Name>.txt`` + ``<Name>_item2attributes.json``, e.g. Yelp). Built datasets are saved as
``crs.json`` + ``crs.safetensors`` (never pickle) and read back with :func:`load_crs_dataset`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from recforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
NAMED = {"lastfm-crs": "lastfm-crs-scpr"}


@dataclass(frozen=True)
class CRSDataset:
    """Items, attributes and dialogue pairs of one conversational-recommendation dataset (see module doc)."""

    name: str
    item_attrs: sp.csr_array
    attr_names: list[str]
    attr_groups: np.ndarray
    group_names: list[str]
    item_ids: list[str]
    item_titles: list[str]
    user_ids: list[str]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]

    @property
    def n_items(self) -> int:
        return int(self.item_attrs.shape[0])

    @property
    def n_attrs(self) -> int:
        return int(self.item_attrs.shape[1])

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def attrs_of(self, item: int) -> np.ndarray:
        """Attribute ids of one item, shape (n,)."""
        a = self.item_attrs
        return a.indices[a.indptr[item] : a.indptr[item + 1]]

    def pairs(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(users (P,), targets (P,)) of a split."""
        if split not in self.splits:
            raise ConfigError(f"unknown CRS split {split!r} (expected one of {sorted(self.splits)})")
        return self.splits[split]

    def summary(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {"name": self.name, "users": self.n_users, "items": self.n_items,
                                     "attributes": self.n_attrs, "item_attribute_links": int(self.item_attrs.nnz)}
        for s, (u, _) in self.splits.items():
            out[f"{s}_pairs"] = len(u)
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``crs.json`` (names, titles) + ``crs.safetensors`` (attribute matrix, splits) into folder ``path``."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        a = self.item_attrs.tocsr()
        arrays = {"item_attrs_indptr": a.indptr.astype(np.int64), "item_attrs_indices": a.indices.astype(np.int64),
                  "attr_groups": self.attr_groups.astype(np.int64)}
        for s, (u, i) in self.splits.items():
            arrays[f"{s}_users"] = u.astype(np.int64)
            arrays[f"{s}_items"] = i.astype(np.int64)
        save_file(arrays, str(p / "crs.safetensors"))
        meta = {"format": "recforge-crs-1", "name": self.name, "n_items": self.n_items, "n_attrs": self.n_attrs,
                "attr_names": self.attr_names, "group_names": self.group_names, "item_ids": self.item_ids,
                "item_titles": self.item_titles, "user_ids": self.user_ids, "splits": sorted(self.splits)}
        (p / "crs.json").write_text(json.dumps(meta), encoding="utf-8")
        return p


def _validate(ds: CRSDataset, where: str) -> CRSDataset:
    """Boundary checks: every split pair points at a known user and an item that has at least one attribute."""
    for s, (u, i) in ds.splits.items():
        if len(u) != len(i):
            raise DataError(f"split {s!r}: {len(u)} users but {len(i)} items", path=where)
        if len(u) and (u.min() < 0 or u.max() >= ds.n_users or i.min() < 0 or i.max() >= ds.n_items):
            raise DataError(f"split {s!r} has ids out of range (users < {ds.n_users}, items < {ds.n_items})", path=where)
    if len(ds.attr_groups) != ds.n_attrs or len(ds.attr_names) != ds.n_attrs:
        raise DataError(f"attribute names/groups ({len(ds.attr_names)}/{len(ds.attr_groups)}) != {ds.n_attrs} attributes",
                        path=where)
    return ds


def _drop_attributeless(ds_pairs: dict[str, tuple[np.ndarray, np.ndarray]], item_attrs: sp.csr_array) -> dict:
    """Dialogue targets need >= 1 attribute (the user opens the dialogue with one of them)."""
    has = np.diff(item_attrs.indptr) > 0
    for s, (_, i) in ds_pairs.items():
        if len(i) and (i.min() < 0 or i.max() >= len(has)):
            raise DataError(f"split {s!r} has item ids out of range (items < {len(has)})")
    return {s: (u[has[i]], i[has[i]]) for s, (u, i) in ds_pairs.items()}


def _csr(rows: list[list[int]], n_cols: int) -> sp.csr_array:
    """Binary (len(rows), n_cols) matrix from per-row column lists (duplicates collapse)."""
    rows = [sorted(set(r)) for r in rows]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.fromiter((a for r in rows for a in r), dtype=np.int64, count=int(indptr[-1]))
    return sp.csr_array((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(rows), n_cols))


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DataError("file not found", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object, got {type(data).__name__}", path=str(path))
    return data


def _int_key(key: str, path: Path) -> int:
    try:
        return int(key)
    except ValueError:
        raise DataError(f"expected integer ids as keys, got {key!r}", path=str(path)) from None


def load_lastfm_crs(root: str | Path) -> CRSDataset:
    """Read LastFM* in the SCPR JSON layout (``Graph_generate_data/``, ``UI_Interaction_data/``).

    Attribute names come from ``../lastfm-hetrec2011/tags.dat`` through ``original_tag_map.json`` when both exist;
    item titles are not recoverable (the SCPR ids are re-indexed), so titles are "artist <id>".
    """
    root = Path(root)
    item_path = root / "Graph_generate_data" / "item_dict.json"
    items = _read_json(item_path)
    n_items = max(_int_key(k, item_path) for k in items) + 1
    rows: list[list[int]] = [[] for _ in range(n_items)]
    for k, v in items.items():
        feats = v.get("feature_index") if isinstance(v, dict) else None
        if not isinstance(feats, list) or not all(isinstance(a, int) and a >= 0 for a in feats):
            raise DataError(f"item {k}: 'feature_index' must be a list of non-negative ints", path=str(item_path))
        rows[_int_key(k, item_path)] = feats
    tag_map_path = root / "Graph_generate_data" / "original_tag_map.json"
    tag_map = _read_json(tag_map_path) if tag_map_path.exists() else {}
    n_attrs = max([max(r) for r in rows if r] + [int(v) for v in tag_map.values()]) + 1
    attr_names = [f"tag {a}" for a in range(n_attrs)]
    tags_dat = root.parent / "lastfm-hetrec2011" / "tags.dat"
    if tag_map and tags_dat.exists():
        names = {}
        with open(tags_dat, encoding="latin-1") as fh:
            next(fh)
            for line in fh:
                tid, _, val = line.rstrip("\r\n").partition("\t")
                names[tid] = val
        for orig, a in tag_map.items():
            if orig in names and 0 <= int(a) < n_attrs:
                attr_names[int(a)] = names[orig]
    splits = {}
    n_users = 0
    for s in SPLITS:
        path = root / "UI_Interaction_data" / f"review_dict_{s}.json"
        d = _read_json(path)
        users, its = [], []
        for k, v in d.items():
            if not isinstance(v, list):
                raise DataError(f"user {k}: expected a list of item ids", path=str(path))
            u = _int_key(k, path)
            users.extend([u] * len(v))
            its.extend(v)
        splits[s] = (np.asarray(users, dtype=np.int64), np.asarray(its, dtype=np.int64))
        n_users = max(n_users, (max(users) + 1) if users else 0)
    item_attrs = _csr(rows, n_attrs)
    ds = CRSDataset(name="lastfm-crs", item_attrs=item_attrs, attr_names=attr_names,
                    attr_groups=np.zeros(n_attrs, dtype=np.int64), group_names=["tag"],
                    item_ids=[str(i) for i in range(n_items)], item_titles=[f"artist {i}" for i in range(n_items)],
                    user_ids=[str(u) for u in range(n_users)], splits=_drop_attributeless(splits, item_attrs))
    return _validate(ds, str(root))


def _leave_last_out(seqs: dict[int, list[int]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per user (time-ordered items): last -> test, second-to-last -> valid, the rest -> train."""
    out: dict[str, tuple[list[int], list[int]]] = {s: ([], []) for s in SPLITS}
    for u, items in seqs.items():
        parts = {"test": items[-1:], "valid": items[-2:-1], "train": items[:-2]} if len(items) >= 3 \
            else {"train": items, "valid": [], "test": []}
        for s, its in parts.items():
            out[s][0].extend([u] * len(its))
            out[s][1].extend(its)
    return {s: (np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64)) for s, (u, i) in out.items()}


def build_movielens(root: str | Path, min_tag_items: int = 2) -> CRSDataset:
    """CRS dataset from ML-latest-small: attributes = genres (group "genre") + user tags used on >= ``min_tag_items``
    movies (group "tag", lower-cased); dialogues = leave-last-out over each user's ratings in time order."""
    root = Path(root)
    movies_path, tags_path, ratings_path = root / "movies.csv", root / "tags.csv", root / "ratings.csv"
    for p in (movies_path, tags_path, ratings_path):
        if not p.exists():
            raise DataError("file not found (expected ML-latest-small movies.csv, tags.csv, ratings.csv)", path=str(p))
    movie_index: dict[str, int] = {}
    titles: list[str] = []
    genres: list[list[str]] = []
    with open(movies_path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"movieId", "title", "genres"} <= set(reader.fieldnames):
            raise DataError(f"expected columns movieId,title,genres, got {reader.fieldnames}", path=str(movies_path), line=1)
        for row in reader:
            movie_index[row["movieId"]] = len(titles)
            titles.append(row["title"])
            genres.append([g for g in row["genres"].split("|") if g and g != "(no genres listed)"])
    tag_items: dict[str, set[int]] = defaultdict(set)
    with open(tags_path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            m = movie_index.get(row["movieId"])
            if m is not None and row["tag"].strip():
                tag_items[row["tag"].strip().lower()].add(m)
    genre_names = sorted({g for gs in genres for g in gs})
    tag_names = sorted(t for t, ms in tag_items.items() if len(ms) >= min_tag_items)
    attr_names = [f"genre: {g}" for g in genre_names] + [f"tag: {t}" for t in tag_names]
    gidx = {g: a for a, g in enumerate(genre_names)}
    rows = [[gidx[g] for g in gs] for gs in genres]
    for a, t in enumerate(tag_names, start=len(genre_names)):
        for m in tag_items[t]:
            rows[m].append(a)
    events: dict[int, list[tuple[int, int]]] = defaultdict(list)
    user_index: dict[str, int] = {}
    with open(ratings_path, encoding="utf-8", newline="") as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            m = movie_index.get(row["movieId"])
            if m is None:
                raise DataError(f"movieId {row['movieId']} not in movies.csv", path=str(ratings_path), line=line_no)
            u = user_index.setdefault(row["userId"], len(user_index))
            events[u].append((int(row["timestamp"]), m))
    seqs = {u: [m for _, m in sorted(ev)] for u, ev in events.items()}
    item_attrs = _csr(rows, len(attr_names))
    groups = np.asarray([0] * len(genre_names) + [1] * len(tag_names), dtype=np.int64)
    ds = CRSDataset(name="ml-latest-small-crs", item_attrs=item_attrs, attr_names=attr_names, attr_groups=groups,
                    group_names=["genre", "tag"], item_ids=list(movie_index), item_titles=titles,
                    user_ids=list(user_index), splits=_drop_attributeless(_leave_last_out(seqs), item_attrs))
    return _validate(ds, str(root))


def build_s3rec(sequences: str | Path, attributes: str | Path | None = None) -> CRSDataset:
    """CRS dataset from the S3-Rec format: ``<Name>.txt`` (``user item item ...`` per line, time order) and
    ``<Name>_item2attributes.json`` (``{"item": [attr, ...]}``); dialogues = leave-last-out per user."""
    seq_path = Path(sequences)
    attr_path = Path(attributes) if attributes else seq_path.with_name(seq_path.stem + "_item2attributes.json")
    if not seq_path.exists():
        raise DataError("file not found", path=str(seq_path))
    raw_attrs = _read_json(attr_path)
    item_index: dict[str, int] = {}
    user_index: dict[str, int] = {}
    seqs: dict[int, list[int]] = {}
    with open(seq_path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataError("expected 'user item [item ...]'", path=str(seq_path), line=line_no)
            u = user_index.setdefault(parts[0], len(user_index))
            seqs[u] = [item_index.setdefault(i, len(item_index)) for i in parts[1:]]
    attr_index: dict[int, int] = {}
    rows: list[list[int]] = [[] for _ in item_index]
    for key, attrs in raw_attrs.items():
        if key not in item_index:
            continue
        if not isinstance(attrs, list) or not all(isinstance(a, int) for a in attrs):
            raise DataError(f"item {key}: expected a list of integer attribute ids", path=str(attr_path))
        rows[item_index[key]] = [attr_index.setdefault(a, len(attr_index)) for a in attrs]
    log.info("S3-Rec build: %d items, %d attributes, %d items without attributes", len(rows), len(attr_index),
             sum(1 for r in rows if not r))
    attr_names = [f"attribute {orig}" for orig, _ in sorted(attr_index.items(), key=lambda kv: kv[1])]
    item_attrs = _csr(rows, len(attr_index))
    name = seq_path.stem.lower() + "-crs"
    ds = CRSDataset(name=name, item_attrs=item_attrs, attr_names=attr_names,
                    attr_groups=np.zeros(len(attr_index), dtype=np.int64), group_names=["attribute"],
                    item_ids=list(item_index), item_titles=[f"item {i}" for i in item_index], user_ids=list(user_index),
                    splits=_drop_attributeless(_leave_last_out(seqs), item_attrs))
    return _validate(ds, str(seq_path))


def _load_saved(path: Path) -> CRSDataset:
    meta = _read_json(path / "crs.json")
    if meta.get("format") != "recforge-crs-1":
        raise DataError(f"not a recforge CRS dataset (format={meta.get('format')!r})", path=str(path / "crs.json"))
    arrays = load_file(str(path / "crs.safetensors"))
    n_items, n_attrs = int(meta["n_items"]), int(meta["n_attrs"])
    indptr, indices = arrays["item_attrs_indptr"], arrays["item_attrs_indices"]
    item_attrs = sp.csr_array((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n_items, n_attrs))
    splits = {s: (arrays[f"{s}_users"], arrays[f"{s}_items"]) for s in meta["splits"]}
    ds = CRSDataset(name=meta["name"], item_attrs=item_attrs, attr_names=meta["attr_names"],
                    attr_groups=arrays["attr_groups"], group_names=meta["group_names"], item_ids=meta["item_ids"],
                    item_titles=meta["item_titles"], user_ids=meta["user_ids"], splits=splits)
    return _validate(ds, str(path))


def data_dir() -> Path:
    """``RECFORGE_DATA_DIR`` (where the named public datasets live)."""
    value = os.environ.get("RECFORGE_DATA_DIR")
    if not value:
        raise ConfigError("RECFORGE_DATA_DIR is not set (it must point at the folder holding lastfm-crs-scpr/)")
    return Path(value)


def load_crs_dataset(name: str | Path) -> CRSDataset:
    """A named dataset (``lastfm-crs``), a folder written by ``recforge crs build`` / :meth:`CRSDataset.save`, or a
    folder in the SCPR LastFM* layout."""
    text = str(name)
    if text in NAMED:
        root = data_dir() / NAMED[text]
        if not root.exists():
            raise DataError(f"dataset {text!r} not found under RECFORGE_DATA_DIR", path=str(root))
        return load_lastfm_crs(root)
    path = Path(text)
    if (path / "crs.json").exists():
        return _load_saved(path)
    if (path / "Graph_generate_data" / "item_dict.json").exists():
        return load_lastfm_crs(path)
    raise ConfigError(f"unknown CRS dataset {text!r}: expected one of {sorted(NAMED)}, a folder written by "
                      "`recforge crs build`, or a folder in the SCPR LastFM* layout")
