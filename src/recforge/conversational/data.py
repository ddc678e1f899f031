"""CRS datasets: an item catalogue (attributes, titles) plus (user, target item) dialogue pairs per split.

A :class:`CRSDataset` joins the two shared data types that conversational recommendation needs:

- ``catalog``: :class:`~recforge.data.catalog.ItemCatalog`, the one source of item attributes, attribute groups and
  titles (LastFM* has one group "tag"; ML-latest-small has "genre" and "tag"; multiple-choice questions offer attributes
  of one group);
- ``dialogues``: :class:`~recforge.data.dialogues.DialoguePairs` over the same item vocabulary. "train" pairs fit the
  item/attribute scorer, "valid" pairs drive policy-training dialogues, "test" pairs are the evaluation dialogues.

Ids: the catalogue and the dialogue pairs use the library's dense 1-based ids (0 = padding) with their vocabularies.
**Inside the dialogue engine** (state, simulator, scorer, policies) users, items and attributes are *row indices* of
the matrices the engine works on — ``item_attrs`` (n_items, n_attrs), the scorer's embedding tables — so row ``r`` is
dense id ``r + 1``. Every per-turn step is a mask or a matrix product over those rows (candidate masks, attribute
counts, entropies over attributes, argmax/top-k over scores); a padding row would be a permanently-false entry in every
mask and a never-askable column in every question, so it is left out. The conversion happens here only:
:meth:`CRSDataset.pairs` (rows of the dialogue pairs), and ``item_ids`` / ``user_ids`` / ``attr_names`` /
``item_titles``, which are indexed by row for the edges (chat, reports).

Readers: :func:`load_lastfm_crs` (LastFM*, SCPR JSON layout), :func:`build_movielens` (ML-latest-small through
:func:`recforge.data.load_dataset`: genres + tags from its catalogue, leave-last-out dialogues),
:func:`build_s3rec` (S3-Rec ``<Name>.txt`` + ``<Name>_item2attributes.json``). A built dataset is saved as a folder
(``crs.json`` + ``catalog/`` + ``dialogues/``, never pickle) and read back with :func:`load_crs_dataset`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.data.catalog import ItemCatalog, read_item2attributes
from recforge.data.datasets import data_dir_from_env, load_dataset
from recforge.data.dialogues import SPLITS, DialoguePairs
from recforge.data.io import id_series, read_sequences
from recforge.data.split import leave_last_out
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError, UnknownIdError

NAMED = {"lastfm-crs": "lastfm-crs-scpr"}
FORMAT = "recforge-crs/2"


@dataclass(frozen=True, eq=False)
class CRSDataset:
    """Items with attributes and dialogue pairs of one conversational-recommendation dataset (see module doc).

    Derived views (row-indexed, see the module doc): ``item_attrs`` scipy CSR (n_items, n_attrs), 1.0 where the item
    has the attribute; ``attr_groups`` (n_attrs,) group index per attribute; ``group_names``.
    """

    name: str
    catalog: ItemCatalog
    dialogues: DialoguePairs
    files: tuple[Path, ...] = ()  # the files it was read from (their sha256 goes into a run's provenance)
    item_attrs: sp.csr_array = field(init=False)
    attr_groups: np.ndarray = field(init=False)
    group_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        if self.catalog.item_vocab != self.dialogues.item_vocab:
            raise DataError(f"{self.name}: the catalogue and the dialogue pairs have different item vocabularies")
        rows = sp.csr_array(self.catalog.attributes[1:, 1:])
        rows.sort_indices()
        codes, names = self.catalog.groups()
        object.__setattr__(self, "item_attrs", rows)
        object.__setattr__(self, "attr_groups", codes[1:])
        object.__setattr__(self, "group_names", names)

    @property
    def n_items(self) -> int:
        return int(self.item_attrs.shape[0])

    @property
    def n_attrs(self) -> int:
        return int(self.item_attrs.shape[1])

    @property
    def n_users(self) -> int:
        return len(self.dialogues.user_vocab)

    @property
    def item_ids(self) -> list[Any]:
        """External item id of each row."""
        return self.catalog.item_vocab.ids

    @property
    def user_ids(self) -> list[Any]:
        """External user id of each row."""
        return self.dialogues.user_vocab.ids

    @property
    def item_titles(self) -> list[str]:
        """Title of each item row ("item <id>" where the catalogue has none)."""
        return [t if t is not None else f"item {i}" for t, i in zip(self.catalog.titles[1:], self.item_ids)]

    @property
    def attr_names(self) -> list[str]:
        """Display name of each attribute column: "group: id" when there are several groups."""
        ids = self.catalog.attr_vocab.ids
        if len(self.group_names) > 1:
            return [f"{self.group_names[g]}: {a}" for g, a in zip(self.attr_groups, ids)]
        return [a if isinstance(a, str) else f"{self.group_names[0]} {a}" for a in ids]

    def attrs_of(self, item: int) -> np.ndarray:
        """Attribute columns of one item row, shape (n,)."""
        a = self.item_attrs
        return a.indices[a.indptr[item] : a.indptr[item + 1]]

    def pairs(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(user rows (P,), target item rows (P,)) of a split: the dialogue pairs' dense ids minus one."""
        users, items = self.dialogues.pairs(split)
        return users - 1, items - 1

    def user_row(self, external: Any) -> int:
        """Row of an external user id (a text id from the command line also matches an integer id)."""
        key = self.dialogues.user_vocab.canonical(external)
        if key is None:
            raise UnknownIdError(f"user {external!r} is not in dataset {self.name!r}")
        return int(self.dialogues.user_vocab.encode(key)[0]) - 1

    def summary(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {"name": self.name, "users": self.n_users, "items": self.n_items,
                                     "attributes": self.n_attrs, "item_attribute_links": int(self.item_attrs.nnz)}
        out.update({f"{s}_pairs": n for s, n in self.dialogues.sizes().items()})
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``crs.json`` (format, name), ``catalog/`` and ``dialogues/`` into folder ``path``."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        self.catalog.save(p / "catalog")
        self.dialogues.save(p / "dialogues")
        (p / "crs.json").write_text(json.dumps({"format": FORMAT, "name": self.name}), encoding="utf-8")
        return p


def with_attributed_targets(name: str, catalog: ItemCatalog, dialogues: DialoguePairs,
                            files: list[Path]) -> CRSDataset:
    """The dataset, keeping only dialogues whose target has >= 1 attribute (the user opens with one of them)."""
    has = np.diff(catalog.attributes.indptr) > 0
    return CRSDataset(name, catalog, dialogues.keep_targets(has), tuple(f for f in files if f.is_file()))


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DataError("file not found", path=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"invalid JSON: {exc}", path=str(path)) from None
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object, got {type(data).__name__}", path=str(path))
    return data


def _int_key(key: str, path: Path) -> int:
    try:
        return int(key)
    except ValueError:
        raise DataError(f"expected integer ids as keys, got {key!r}", path=str(path)) from None


def _tag_names(root: Path, n_attrs: int, tag_map: dict[str, Any]) -> list[str]:
    """Attribute names through ``original_tag_map.json`` and HetRec ``tags.dat`` when both exist, else "tag <a>"."""
    names = [f"tag {a}" for a in range(n_attrs)]
    tags_dat = root.parent / "lastfm-hetrec2011" / "tags.dat"
    if tag_map and tags_dat.exists():
        text: dict[str, str] = {}
        with open(tags_dat, encoding="latin-1") as fh:
            next(fh)
            for line in fh:
                tid, _, val = line.rstrip("\r\n").partition("\t")
                text[tid] = val
        for orig, a in tag_map.items():
            if orig in text and 0 <= int(a) < n_attrs:
                names[int(a)] = text[orig]
    seen: set[str] = set()
    for a, n in enumerate(names):  # the names are the attribute vocabulary: keep them distinct
        names[a] = n if n not in seen else f"{n} [{a}]"
        seen.add(names[a])
    return names


def load_lastfm_crs(root: str | Path) -> CRSDataset:
    """Read LastFM* in the SCPR JSON layout (``Graph_generate_data/``, ``UI_Interaction_data/``).

    Item and user ids are SCPR's integers (dense id = SCPR id + 1), attribute columns keep SCPR's feature order.
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
    names = _tag_names(root, n_attrs, tag_map)
    catalog = ItemCatalog.from_records(list(range(n_items)), [f"artist {i}" for i in range(n_items)],
                                       [[names[a] for a in r] for r in rows], attr_vocab=Vocab(names, name="attribute"),
                                       meta={"source": str(root), "attributes": "tags"}, group="tag")
    users: dict[str, list[int]] = {}
    targets: dict[str, list[int]] = {}
    for s in SPLITS:
        path = root / "UI_Interaction_data" / f"review_dict_{s}.json"
        users[s], targets[s] = [], []
        for k, v in _read_json(path).items():
            if not isinstance(v, list) or not all(isinstance(i, int) for i in v):
                raise DataError(f"user {k}: expected a list of item ids", path=str(path))
            users[s].extend([_int_key(k, path)] * len(v))
            targets[s].extend(v)
    n_users = max((max(u) + 1 for u in users.values() if u), default=0)
    dialogues = DialoguePairs(Vocab(range(n_users), name="user"), catalog.item_vocab,
                              {s: (np.asarray(users[s], dtype=np.int64) + 1, np.asarray(targets[s], dtype=np.int64) + 1)
                               for s in SPLITS})
    files = [item_path, tag_map_path, *(root / "UI_Interaction_data" / f"review_dict_{s}.json" for s in SPLITS)]
    return with_attributed_targets("lastfm-crs", catalog, dialogues, files)


def build_movielens(root: str | Path, min_tag_items: int = 2) -> CRSDataset:
    """CRS dataset from ML-latest-small: attributes = the catalogue's genres (group "genre") + user tags used on
    >= ``min_tag_items`` movies (group "tag", lower-cased); dialogues = leave-last-out over each user's ratings."""
    ds = load_dataset("ml-latest-small", path=root)
    if ds.catalog is None or "tags" not in ds.extras:
        raise DataError("ML-latest-small needs movies.csv and tags.csv for CRS attributes", path=str(root))
    catalog = ds.catalog
    tags = ds.extras["tags"]
    dense = catalog.item_vocab.encode(id_series(tags["movieId"]).to_list(), on_unknown="zero")  # ids as the log has them
    movies_of: dict[str, set[int]] = defaultdict(set)
    for item, tag in zip(dense.tolist(), tags["tag"].to_list()):
        if item and tag and tag.strip():
            movies_of[tag.strip().lower()].add(item)
    per_item: list[list[str]] = [[] for _ in range(catalog.n_items)]
    for tag, movies in movies_of.items():
        if len(movies) >= min_tag_items:
            for m in movies:
                per_item[m - 1].append(tag)
    catalog = catalog.with_attributes(per_item, "tag")
    dialogues = DialoguePairs.from_split(leave_last_out(ds.interactions, n=1, valid=True))
    files = [Path(ds.info["path"]) / f for f in ("ratings.csv", "movies.csv", "tags.csv")]
    return with_attributed_targets("ml-latest-small-crs", catalog, dialogues, files)


def build_s3rec(sequences: str | Path, attributes: str | Path | None = None) -> CRSDataset:
    """CRS dataset from the S3-Rec format: ``<Name>.txt`` (``user item item ...`` per line, time order) and
    ``<Name>_item2attributes.json`` (``{"item": [attr, ...]}``); dialogues = leave-last-out per user."""
    seq_path = Path(sequences)
    attr_path = Path(attributes) if attributes else seq_path.with_name(seq_path.stem + "_item2attributes.json")
    data, _ = read_sequences(seq_path)
    catalog = read_item2attributes(attr_path).align(data.item_vocab)
    dialogues = DialoguePairs.from_split(leave_last_out(data, n=1, valid=True))
    return with_attributed_targets(seq_path.stem.lower() + "-crs", catalog, dialogues, [seq_path, attr_path])


def _load_saved(path: Path) -> CRSDataset:
    meta = _read_json(path / "crs.json")
    if meta.get("format") != FORMAT:
        raise DataError(f"not a {FORMAT} dataset (format={meta.get('format')!r}; rebuild it with `recforge crs build`)",
                        path=str(path / "crs.json"))
    return CRSDataset(str(meta.get("name", path.name)), ItemCatalog.load(path / "catalog"),
                      DialoguePairs.load(path / "dialogues"), tuple(sorted(p for p in path.rglob("*") if p.is_file())))


def load_crs_dataset(name: str | Path) -> CRSDataset:
    """A named dataset (``lastfm-crs``), a folder written by ``recforge crs build`` / :meth:`CRSDataset.save`, or a
    folder in the SCPR LastFM* layout."""
    text = str(name)
    if text in NAMED:
        base = data_dir_from_env()
        if base is None:
            raise ConfigError("RECFORGE_DATA_DIR is not set (it must point at the folder holding lastfm-crs-scpr/)")
        root = base / NAMED[text]
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
