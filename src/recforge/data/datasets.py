"""Named public datasets: one literal table name -> loader, official URL, sha256 of the files, licence.

``load_dataset(name_or_path)`` resolves, in this order: an explicit ``path=`` > ``data_dir`` / ``RECFORGE_DATA_DIR``
``/<folder>`` (the layout of the shared data folder, also what ``recforge data get`` writes) > the bundled copy
(ml-latest-small only, shipped in ``recforge/datasets_bundled``) > a DataError that says how to get the data.
A path that is not a dataset name is read as an interaction file (any format of :mod:`recforge.data.io`) or as a
folder holding one of the known layouts.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recforge.artifacts import file_sha256
from recforge.data.catalog import (
    ItemCatalog,
    read_coat_items,
    read_hetrec_artists,
    read_item2attributes,
    read_ml1m_movies,
    read_ml100k_items,
    read_movielens_csv,
)
from recforge.data.info import dataset_info
from recforge.data.interactions import Interactions
from recforge.data.io import (
    LoadReport,
    build_interactions,
    read_interactions,
    read_sequences,
    read_table,
    read_text,
)
from recforge.data.preprocess import preprocess
from recforge.data.vocab import Vocab
from recforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "datasets_bundled"
S3REC = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/2a81540ae18615d88ef88227b0c066e5b74781e5/data/"
SASREC = "https://raw.githubusercontent.com/kang205/SASRec/e3738967fddab206d6eeb4fda433e7a7034dd8b1/data/"
GROUPLENS = "https://files.grouplens.org/datasets/"

ML_TERMS = (
    "GroupLens terms: research use only, no endorsement, cite Harper & Konstan (ACM TiiS 2015), "
    "no commercial use without permission"
)
AMAZON_TERMS = (
    "UCSD Amazon review data (McAuley et al.), research use; cite He & McAuley (WWW 2016), McAuley et al. "
    "(SIGIR 2015) and S3-Rec (Zhou et al., CIKM 2020); no redistribution grant stated"
)


@dataclass(frozen=True)
class Source:
    """Where files come from. ``files``: (name at the source, local name, sha256 or None when no reference checksum
    is known). For an archive (``archive=True``) the names are zip members; otherwise ``url + name`` is the file."""

    url: str
    files: tuple[tuple[str, str, str | None], ...]
    archive: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """One named dataset: where it lives (``folder`` under the data dir), how to load it, where it comes from."""

    name: str
    folder: str
    loader: str
    homepage: str
    licence: str
    sources: tuple[Source, ...]
    description: str
    partial: bool = False
    options: dict[str, str] = field(default_factory=dict)
    extra_sha256: tuple[tuple[str, str], ...] = ()

    @property
    def sha256(self) -> dict[str, str]:
        """Local file name -> reference sha256 (files without a known checksum are left out; ``extra_sha256`` holds
        files that may be on disk but are not downloaded)."""
        out = {local: sha for src in self.sources for _, local, sha in src.files if sha}
        out.update(dict(self.extra_sha256))
        return out


def _s3rec(name: str, folder: str, stem: str, txt_sha: str, attr_sha: str, licence: str, desc: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        folder=folder,
        loader="_load_s3rec",
        homepage="https://github.com/RUCAIBox/CIKM2020-S3Rec",
        licence=licence,
        sources=(Source(S3REC, ((f"{stem}.txt", f"{stem}.txt", txt_sha),
                                (f"{stem}_item2attributes.json", f"{stem}_item2attributes.json", attr_sha))),),
        description=desc,
        options={"stem": stem},
    )


# The literal table. sha256 values are those of the reference copies described in the shared data folder's READMEs.
DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        name="ml-100k",
        folder="ml-100k",
        loader="_load_ml100k",
        homepage="https://grouplens.org/datasets/movielens/100k/",
        licence=ML_TERMS + "; redistribution NOT allowed without permission",
        sources=(Source(GROUPLENS + "movielens/ml-100k.zip", (
            ("ml-100k/u.data", "u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
            ("ml-100k/u.item", "u.item", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"),
            ("ml-100k/u.genre", "u.genre", "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb"),
            ("ml-100k/u.user", "u.user", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"),
            ("ml-100k/README", "README", "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52"),
        ), archive=True),),
        description="MovieLens 100K: 100,000 ratings 1-5 with timestamps, 943 users, 1,682 movies (+ genres)",
    ),
    "ml-1m": DatasetSpec(
        name="ml-1m",
        folder="ml-1m",
        loader="_load_ml1m",
        homepage="https://grouplens.org/datasets/movielens/1m/",
        licence=ML_TERMS + "; redistribution NOT allowed without permission",
        sources=(Source(GROUPLENS + "movielens/ml-1m.zip", (
            ("ml-1m/ratings.dat", "ratings.dat", None),
            ("ml-1m/movies.dat", "movies.dat", "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9"),
            ("ml-1m/users.dat", "users.dat", "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3"),
            ("ml-1m/README", "README.grouplens", "2d5ddce86ccbd247207456165827b4b9ddf27282bca93807d4c763e28414f133"),
        ), archive=True),
        ),
        # the partial ratings file of the shared data folder (users 1..2,999), used when ratings.dat is absent;
        # checked when present, never downloaded (the official zip has the complete ratings.dat)
        extra_sha256=(("ratings_users_0001-2999.dat.gz", "2fedcf5405373a49df4041e3d3fe1e8db9eacf2c77c209ae1f686ea06b7a16d9"),),
        description="MovieLens 1M: ratings 1-5 with timestamps, 6,040 users, 3,883 movies; loads the full ratings.dat "
        "when present, else the partial ratings of users 1-2,999",
        partial=True,
    ),
    "ml-latest-small": DatasetSpec(
        name="ml-latest-small",
        folder="ml-latest-small",
        loader="_load_ml_latest_small",
        homepage="https://grouplens.org/datasets/movielens/latest/",
        licence=ML_TERMS + "; redistribution allowed under the same conditions (README.txt)",
        sources=(Source(GROUPLENS + "movielens/ml-latest-small.zip", (
            ("ml-latest-small/ratings.csv", "ratings.csv", "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646"),
            ("ml-latest-small/movies.csv", "movies.csv", "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07"),
            ("ml-latest-small/tags.csv", "tags.csv", "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d"),
            ("ml-latest-small/links.csv", "links.csv", "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31"),
            ("ml-latest-small/README.txt", "README.txt", "63d22ac138e80fae37021797ed8e1b9424b5239dc576a137422adf783ae3f404"),
        ), archive=True),),
        description="MovieLens latest-small (2018-09): 100,836 ratings 0.5-5, 610 users, 9,742 movies, 3,683 tags",
    ),
    "amazon-beauty": _s3rec(
        "amazon-beauty", "amazon-s3rec", "Beauty",
        "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
        "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4", AMAZON_TERMS,
        "Amazon Beauty (S3-Rec 5-core): 22,363 users, 12,101 items, 198,502 time-ordered interactions + attributes",
    ),
    "amazon-sports": _s3rec(
        "amazon-sports", "amazon-s3rec", "Sports_and_Outdoors",
        "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
        "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b", AMAZON_TERMS,
        "Amazon Sports and Outdoors (S3-Rec 5-core): 35,598 users, 18,357 items, 296,337 interactions + attributes",
    ),
    "amazon-toys": _s3rec(
        "amazon-toys", "amazon-s3rec", "Toys_and_Games",
        "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
        "d371acd25101eedac04afc727626464b7acec770c4eda708705d51eb76eb1ad0", AMAZON_TERMS,
        "Amazon Toys and Games (S3-Rec 5-core): 19,412 users, 11,924 items, 167,597 interactions + attributes",
    ),
    "yelp": _s3rec(
        "yelp", "s3rec-yelp-lastfm", "Yelp",
        "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
        "f25acd5e1e680e0b22fd4e3f4fb6be4b2a7461e9222610616e3e1ee6702dd58d",
        "Yelp Open Dataset terms of use (non-commercial / academic); cite S3-Rec",
        "Yelp (S3-Rec): 30,431 users, 20,033 businesses, 316,354 time-ordered interactions + categories",
    ),
    "lastfm": _s3rec(
        "lastfm", "s3rec-yelp-lastfm", "LastFM",
        "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
        "a4ccd678dc9ff6d43fe5073f491db5c9b02eb98dfa4f8c0382913a784be217ef",
        "HetRec 2011 Last.fm: non-commercial use; cite S3-Rec",
        "LastFM (S3-Rec 5-core of HetRec Last.fm-2k): 1,090 users, 3,646 artists, 52,551 interactions + tags",
    ),
    "amazon-video-games": DatasetSpec(
        name="amazon-video-games",
        folder="amazon-video-games-sasrec",
        loader="_load_sasrec",
        homepage="https://github.com/kang205/SASRec",
        licence="UCSD Amazon review data, research use; cite Kang & McAuley (ICDM 2018) and the Amazon data papers",
        sources=(Source(SASREC, (("Video.txt", "Video.txt", "b7376fe24430743f411dc7f567285657b2adb3f74361cc7ba0aee94f3024b651"),)),),
        description="Amazon Video Games (SASRec): 31,013 users, 23,715 items, 287,107 time-ordered interactions",
        options={"file": "Video.txt"},
    ),
    "lastfm-hetrec": DatasetSpec(
        name="lastfm-hetrec",
        folder="lastfm-hetrec2011",
        loader="_load_hetrec",
        homepage="https://grouplens.org/datasets/hetrec-2011/",
        licence="HetRec 2011 Last.fm-2k: made available for non-commercial use (readme.txt); cite Last.fm and HetRec'11",
        sources=(Source(GROUPLENS + "hetrec2011/hetrec2011-lastfm-2k.zip", (
            ("user_artists.dat", "user_artists.dat", "001400dc3c7d2667fca6e4ea6dc6acc31a9dd28ad5cd0f74cea988c019934d3b"),
            ("artists.dat", "artists.dat", "c173881362c6b28551368fecb3c0be5a6a30a6cd859e1f5775413dfe46d48648"),
            ("tags.dat", "tags.dat", "e95175f259be4c0c47644ae23d66131cd6d5767142a1405000e79f5584691d70"),
            ("user_friends.dat", "user_friends.dat", "9a3a8f7fa5f5ec832335e5b58ed69a4cf27c6f6f6afcde62134810eea46445a7"),
            ("readme.txt", "readme.txt", "6fe5d1e6f67b025fc50cd70883dd1a1ff16c5ff37b5b7abfb33644b83468b209"),
        ), archive=True),),
        description="Last.fm HetRec 2011: 1,892 users, 17,632 artists, 92,834 user-artist listening counts + friends; "
        "no timestamps",
    ),
    "coat": DatasetSpec(
        name="coat",
        folder="coat",
        loader="_load_coat",
        homepage="https://www.cs.cornell.edu/~schnabts/mnar/",
        licence="no licence stated in the files; research data, cite Schnabel et al. (ICML 2016)",
        sources=(Source("https://www.cs.cornell.edu/~schnabts/mnar/coat.zip", (
            ("coat/train.ascii", "train.ascii", "a87bd9e7eaf3b89f976df3f25d4aa5d5d871be8a00b58947df9e6e015559bd37"),
            ("coat/test.ascii", "test.ascii", "de6714ab105a5e0be8166be7fd313901b29f9a09c3bea307901457d1d71847e6"),
            ("coat/propensities.ascii", "propensities.ascii",
             "d1b11b12465dc6e1df35eeed92dfec5e17a997f920d60777cc44571fe9b054e5"),
            ("coat/user_item_features/item_features.ascii", "user_item_features/item_features.ascii",
             "edea8217ec5606779b4d3bf819f7591dc63bcd5194d619e8048c2322d07630b1"),
            ("coat/user_item_features/item_features_map.txt", "user_item_features/item_features_map.txt",
             "70f97e53b6469a08ba76d259e92de9a4931f97693d2669f8e8836330d30fc109"),
        ), archive=True),),
        description="Coat (MNAR): 290 users x 300 coats; 6,960 self-selected train ratings, 4,640 random test ratings "
        "(extras['test']), propensities (extras['propensities'])",
    ),
}


@dataclass
class Dataset:
    """A loaded dataset: the interaction log, the item catalog (if any), a JSON-able ``info`` dict (licence, partial
    flag, source, load and preprocessing reports, statistics) and dataset-specific ``extras`` (e.g. Coat's random test
    ratings, ML-1M user features, ML tags)."""

    name: str
    interactions: Interactions
    catalog: ItemCatalog | None
    info: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {self.interactions!r}, catalog={self.catalog!r})"


# ------------------------------------------------------------------------------------------------- file finding
class _Files:
    """Finds a dataset's files in a folder (plain or ``.gz``) or, for the bundled copy, under a name prefix."""

    def __init__(self, root: Path, prefix: str = "", compressed_only: bool = False):
        self.root, self.prefix, self.compressed_only = root, prefix, compressed_only

    def find(self, name: str) -> Path | None:
        plain = self.root / f"{self.prefix}{name}"
        for cand in ((plain.with_name(plain.name + ".gz"),) if self.compressed_only else (plain, plain.with_name(plain.name + ".gz"))):
            if cand.is_file():
                return cand
        return None

    def get(self, name: str) -> Path:
        found = self.find(name)
        if found is None:
            raise DataError(f"missing file {name!r} in {self.root}", path=str(self.root / name))
        return found


# -------------------------------------------------------------------------------------------------- loaders
# Each loader: (files, spec) -> (interactions, catalog | None, notes, extras, partial)
Loaded = tuple[Interactions, ItemCatalog | None, list[str], dict[str, Any], bool]


def _load_ml100k(files: _Files, spec: DatasetSpec) -> Loaded:
    data, _ = read_interactions(
        files.get("u.data"), {"user": 0, "item": 1, "value": 2, "time": 3}, header=False, sep="\t", meta={"dataset": spec.name}
    )
    genre = files.find("u.genre")
    catalog = read_ml100k_items(files.get("u.item"), genre).align(data.item_vocab)
    return data, catalog, ["explicit ratings 1-5; time = unix seconds"], {}, False


def _load_ml1m(files: _Files, spec: DatasetSpec) -> Loaded:
    full = files.find("ratings.dat")
    path = full or files.get("ratings_users_0001-2999.dat.gz")
    data, _ = read_interactions(
        path, {"user": 0, "item": 1, "value": 2, "time": 3}, header=False, sep="::", meta={"dataset": spec.name}
    )
    notes = ["explicit ratings 1-5; time = unix seconds"]
    partial = full is None
    if partial:
        notes.append(
            "PARTIAL: ratings of users 1-2,999 only (487,650 of 1,000,209 official ratings); users.dat/movies.dat complete"
        )
    catalog = read_ml1m_movies(files.get("movies.dat")).align(data.item_vocab)
    extras: dict[str, Any] = {}
    users = files.find("users.dat")
    if users is not None:
        df, _ = read_table(users, sep="::", header=False, min_columns=5, quote=False,
                           names=["user_id", "gender", "age", "occupation", "zip"])
        extras["users"] = df
    return data, catalog, notes, extras, partial


def _load_ml_latest_small(files: _Files, spec: DatasetSpec) -> Loaded:
    data, _ = read_interactions(
        files.get("ratings.csv"),
        {"user": "userId", "item": "movieId", "value": "rating", "time": "timestamp"},
        meta={"dataset": spec.name},
    )
    tags = files.find("tags.csv")
    catalog = read_movielens_csv(files.get("movies.csv"), tags).align(data.item_vocab)
    extras: dict[str, Any] = {}
    if tags is not None:
        extras["tags"] = read_table(tags, sep=",", min_columns=4)[0]
    notes = ["explicit ratings 0.5-5 (half stars); time = unix seconds", "tags in extras['tags'] and catalog.text"]
    return data, catalog, notes, extras, False


def _load_s3rec(files: _Files, spec: DatasetSpec) -> Loaded:
    stem = spec.options["stem"]
    data, _ = read_sequences(files.get(f"{stem}.txt"), meta={"dataset": spec.name})
    attrs = files.find(f"{stem}_item2attributes.json")
    catalog = read_item2attributes(attrs).align(data.item_vocab) if attrs is not None else None
    notes = ["implicit, time-ordered sequences without timestamps: time = position in the user's sequence"]
    extras: dict[str, Any] = {}
    sample = files.find(f"{stem}_sample.txt")
    if sample is not None:
        extras["sampled_negatives"] = _read_negatives(sample, data)
        notes.append("extras['sampled_negatives']: the authors' fixed negatives per user (sampled protocol only)")
    return data, catalog, notes, extras, False


def _read_negatives(path: Path, data: Interactions) -> np.ndarray:
    """S3-Rec ``*_sample.txt`` (``user neg_1 ... neg_k``) -> int64 (n_users+1, k) of dense item ids; row = dense user."""
    rows = [ln.split() for ln in read_text(path).splitlines() if ln.strip()]
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise DataError(f"lines have different numbers of fields {sorted(widths)[:5]}", path=str(path))
    ext = np.asarray(rows, dtype=np.int64)
    out = np.zeros((data.n_users + 1, ext.shape[1] - 1), np.int64)
    out[data.user_vocab.encode(ext[:, 0].tolist())] = data.item_vocab.encode(ext[:, 1:].ravel().tolist()).reshape(
        len(ext), -1)
    return out


def _load_sasrec(files: _Files, spec: DatasetSpec) -> Loaded:
    data, _ = read_sequences(files.get(spec.options["file"]), one_per_line=True, meta={"dataset": spec.name})
    notes = ["implicit, time-ordered 'user item' lines without timestamps: time = position in the user's sequence"]
    return data, None, notes, {}, False


def _load_hetrec(files: _Files, spec: DatasetSpec) -> Loaded:
    data, _ = read_interactions(
        files.get("user_artists.dat"), {"user": "userID", "item": "artistID", "value": "weight"}, sep="\t",
        meta={"dataset": spec.name},
    )
    artists = files.find("artists.dat")
    catalog = read_hetrec_artists(artists).align(data.item_vocab) if artists is not None else None
    extras: dict[str, Any] = {}
    friends = files.find("user_friends.dat")
    if friends is not None:
        extras["friends"] = read_table(friends, sep="\t", min_columns=2)[0]
    tags = files.find("tags.dat")
    if tags is not None:  # the tag vocabulary (Latin-1); the tag assignments are not part of this copy
        extras["tags"] = read_table(tags, sep="\t", min_columns=2, encoding="latin-1", quote=False)[0]
    notes = ["value = listening count (top-50 artists per user); no timestamps (time = 0)"]
    partial = files.find("user_taggedartists.dat") is None
    if partial:
        notes.append("PARTIAL: user_taggedartists*.dat (186,479 tag assignments) absent")
    return data, catalog, notes, extras, partial


def _read_dense(path: Path) -> np.ndarray:
    """A whitespace-separated dense numeric matrix (Coat's .ascii files)."""
    lines = [ln.split() for ln in read_text(path).splitlines() if ln.strip()]
    widths = {len(ln) for ln in lines}
    if len(widths) != 1:
        raise DataError(f"rows have different lengths {sorted(widths)[:5]}", path=str(path))
    try:
        return np.asarray(lines, dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"non-numeric entry ({exc})", path=str(path)) from None


def _load_coat(files: _Files, spec: DatasetSpec) -> Loaded:
    train = _read_dense(files.get("train.ascii"))
    test = _read_dense(files.get("test.ascii"))
    if train.shape != test.shape:
        raise DataError(f"train is {train.shape} but test is {test.shape}", path=str(files.get("test.ascii")))
    uv = Vocab(range(train.shape[0]), name="user")
    iv = Vocab(range(train.shape[1]), name="item")

    def log_of(mat: np.ndarray, part: str, name: str) -> Interactions:
        u, i = np.nonzero(mat)
        report = LoadReport(path=str(files.get(name)), rows_read=len(u), rows_kept=len(u),
                            notes=["dense user x item matrix: 0 = unobserved, nonzero cells are ratings"])
        return build_interactions(u, i, value=mat[u, i], user_vocab=uv, item_vocab=iv,
                                  meta={"dataset": spec.name, "part": part, "load": report.to_dict()})

    extras: dict[str, Any] = {"test": log_of(test, "test (random, missing-at-random)", "test.ascii")}
    prop = files.find("propensities.ascii")
    if prop is not None:
        extras["propensities"] = _read_dense(prop)  # (n_users, n_items), row/col = external id
    catalog = None
    feats = files.find("user_item_features/item_features.ascii")
    if feats is not None:
        catalog = read_coat_items(feats, files.find("user_item_features/item_features_map.txt")).align(iv)
    notes = ["explicit ratings 1-5; no timestamps (time = 0)",
             "interactions = self-selected (MNAR) train ratings; extras['test'] = uniformly random (MAR) test ratings"]
    return log_of(train, "train (self-selected, MNAR)", "train.ascii"), catalog, notes, extras, False


LOADERS: dict[str, Callable[[_Files, DatasetSpec], Loaded]] = {
    "_load_ml100k": _load_ml100k,
    "_load_ml1m": _load_ml1m,
    "_load_ml_latest_small": _load_ml_latest_small,
    "_load_s3rec": _load_s3rec,
    "_load_sasrec": _load_sasrec,
    "_load_hetrec": _load_hetrec,
    "_load_coat": _load_coat,
}

# the first file a loader needs: used to recognise a dataset folder given as a path
SIGNATURE_FILES: dict[str, str] = {
    "ml-100k": "u.data",
    "ml-1m": "movies.dat",
    "ml-latest-small": "ratings.csv",
    "amazon-beauty": "Beauty.txt",
    "amazon-sports": "Sports_and_Outdoors.txt",
    "amazon-toys": "Toys_and_Games.txt",
    "yelp": "Yelp.txt",
    "lastfm": "LastFM.txt",
    "amazon-video-games": "Video.txt",
    "lastfm-hetrec": "user_artists.dat",
    "coat": "train.ascii",
}

PREPROCESS_OPTIONS = ("rating_threshold", "duplicates", "min_user_interactions", "min_item_interactions")
READ_OPTIONS = ("columns", "sep", "header", "names", "encoding", "format", "time_format", "time_unit", "decimal",
                "on_invalid")


# ---------------------------------------------------------------------------------------------------- public API
def data_dir_from_env(data_dir: str | Path | None = None) -> Path | None:
    """``data_dir`` if given, else ``$RECFORGE_DATA_DIR`` (None when neither is set)."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("RECFORGE_DATA_DIR")
    return Path(env) if env else None


def _verify_folder(files: _Files, spec: DatasetSpec) -> dict[str, str]:
    """sha256 status of the dataset's known files present in the folder: 'ok', 'MISMATCH' (logged)."""
    out: dict[str, str] = {}
    for name, sha in spec.sha256.items():
        path = files.root / f"{files.prefix}{name}"
        if not path.is_file():
            continue
        got = file_sha256(path)
        out[name] = "ok" if got == sha else "MISMATCH"
        if got != sha:
            log.warning("%s: sha256 %s differs from the reference %s (another version of the data?)", path, got, sha)
    return out


def resolve(name: str, data_dir: str | Path | None = None, path: str | Path | None = None) -> tuple[_Files, str]:
    """Find a named dataset's files: explicit path > data dir > bundled. Returns (files, origin)."""
    spec = DATASETS[name]
    sig = SIGNATURE_FILES[name]
    if path is not None:
        files = _Files(Path(path))
        if files.find(sig) is None:
            raise DataError(f"{name}: the folder has no {sig!r} (expected the layout of {spec.homepage})", path=str(path))
        return files, "path"
    root = data_dir_from_env(data_dir)
    if root is not None:
        files = _Files(root / spec.folder)
        if files.find(sig) is not None:
            return files, "data_dir"
    if name == "ml-latest-small":
        return _Files(BUNDLED_DIR, prefix="ml-latest-small_", compressed_only=True), "bundled"
    where = f"{root / spec.folder} (from {'data_dir' if data_dir else 'RECFORGE_DATA_DIR'})" if root else "nowhere: RECFORGE_DATA_DIR is not set"
    raise DataError(
        f"dataset {name!r} not found (looked {where}). Get it with `recforge data get {name} --dest DIR` and set "
        f"RECFORGE_DATA_DIR=DIR, or pass path=<folder with {sig}>"
    )


def load_dataset(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    *,
    path: str | Path | None = None,
    verify: bool = True,
    **options: Any,
) -> Dataset:
    """Load a named dataset (see ``DATASETS``) or an interaction file / dataset folder given as a path.

    ``options``: preprocessing (``rating_threshold``, ``duplicates``, ``min_user_interactions``,
    ``min_item_interactions``; see :func:`recforge.data.preprocess.preprocess`) and, for plain files, reader options
    (``columns``, ``sep``, ``header``, ``names``, ``encoding``, ``format``, ``time_format``, ``time_unit``,
    ``decimal``, ``on_invalid``; see :func:`recforge.data.io.read_interactions`).
    ``verify`` checks the sha256 of the known files found on disk and records the outcome in ``info["checksums"]``.
    """
    unknown = sorted(set(options) - set(PREPROCESS_OPTIONS) - set(READ_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown load_dataset option(s) {unknown} (known: {sorted(PREPROCESS_OPTIONS + READ_OPTIONS)})")
    pre = {k: v for k, v in options.items() if k in PREPROCESS_OPTIONS}
    read = {k: v for k, v in options.items() if k in READ_OPTIONS}
    key = str(name_or_path)
    spec: DatasetSpec | None = DATASETS.get(key)
    if spec is None:
        p = Path(key).expanduser()
        if p.is_file():
            return _load_file(p, pre, read)
        if p.is_dir():
            spec = next((DATASETS[n] for n, sig in SIGNATURE_FILES.items() if _Files(p).find(sig) is not None), None)
            if spec is None:
                raise DataError(f"not a known dataset layout (none of {sorted(set(SIGNATURE_FILES.values()))})", path=str(p))
            path = p
        else:
            raise DataError(f"unknown dataset {key!r} and no such file (known datasets: {', '.join(DATASETS)})")
    if read:
        raise ConfigError(f"reader options {sorted(read)} apply to plain files, not to the named dataset {spec.name!r}")
    files, origin = resolve(spec.name, data_dir, path)
    data, catalog, notes, extras, partial = LOADERS[spec.loader](files, spec)
    checksums = _verify_folder(files, spec) if verify and origin != "bundled" else {}
    if origin == "bundled":
        notes.append("bundled copy (gzip of the official files) with its README.txt licence")
    return _finish(spec.name, data, catalog, extras, pre, {
        "dataset": spec.name,
        "description": spec.description,
        "licence": spec.licence,
        "homepage": spec.homepage,
        "urls": [s.url for s in spec.sources],
        "origin": origin,
        "path": str(files.root),
        "partial": partial,
        "notes": notes,
        "checksums": checksums,
    })


def _load_file(p: Path, pre: dict[str, Any], read: dict[str, Any]) -> Dataset:
    data, report = read_interactions(p, read.pop("columns", None), **read)
    info = {"dataset": p.name, "description": f"interaction file {p}", "licence": "unknown (user file)",
            "origin": "path", "path": str(p), "partial": False, "notes": [], "checksums": {p.name: file_sha256(p)}}
    return _finish(p.name, data, None, {}, pre, info)


def _finish(name: str, data: Interactions, catalog: ItemCatalog | None, extras: dict[str, Any],
            pre: dict[str, Any], info: dict[str, Any]) -> Dataset:
    """Apply preprocessing (re-aligning the catalog and remapping logs in extras) and fill in the info dict."""
    load = data.meta.get("load")
    steps: list[dict[str, Any]] = []
    if pre:
        before = data
        data, steps = preprocess(data, **pre)
        if len(data) == 0:
            raise DataError(f"preprocessing {pre} removed every interaction of {name} (steps: {steps})")
        if catalog is not None and data.item_vocab is not before.item_vocab:
            catalog = catalog.align(data.item_vocab)
        for key, val in list(extras.items()):
            if isinstance(val, Interactions):
                extras[key] = _remap(val, data.user_vocab, data.item_vocab)
    info = {**info, "load": load, "preprocess": steps}
    info["stats"] = dataset_info(data, partial=info.get("partial", False))
    return Dataset(name=name, interactions=data, catalog=catalog, info=info, extras=extras)


def _remap(log_: Interactions, uv: Vocab, iv: Vocab) -> Interactions:
    """``log_`` re-encoded to other vocabularies; rows whose user or item is not in them are dropped (and counted)."""
    u = uv.encode(log_.user_vocab.decode(log_.user), on_unknown="zero")
    i = iv.encode(log_.item_vocab.decode(log_.item), on_unknown="zero")
    keep = (u > 0) & (i > 0)
    return Interactions(user=u[keep], item=i[keep], time=log_.time[keep], value=log_.value[keep], user_vocab=uv,
                        item_vocab=iv, event=None if log_.event is None else log_.event[keep],
                        meta={**log_.meta, "rows_removed_by_preprocess": int((~keep).sum())})


def list_datasets() -> list[dict[str, Any]]:
    """One row per named dataset: name, folder, description, licence, homepage, partial."""
    return [{"name": s.name, "folder": s.folder, "description": s.description, "licence": s.licence,
             "homepage": s.homepage, "partial": s.partial} for s in DATASETS.values()]


# -------------------------------------------------------------------------------------------------- download
def download(name: str, dest: str | Path, *, force: bool = False) -> Path:
    """Download a named dataset into ``dest/<folder>`` (the RECFORGE_DATA_DIR layout) and verify every sha256."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    return download_spec(DATASETS[name], dest, force=force)


def download_spec(spec: DatasetSpec, dest: str | Path, *, force: bool = False) -> Path:
    """Fetch every source of ``spec`` (http(s) or file:// URLs), extract archives, verify sha256 before keeping a file.

    A checksum mismatch raises DataError naming the file, the expected and the actual digest, and leaves nothing behind.
    Files with no reference checksum are kept and logged as unverified.
    """
    folder = Path(dest) / spec.folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the destination folder ({exc.strerror})", path=str(folder)) from None

    def needed(local: str, sha: str | None) -> bool:
        """Missing, forced, or present with a checksum that does not match."""
        target = folder / local
        return force or not target.is_file() or (sha is not None and file_sha256(target) != sha)

    with tempfile.TemporaryDirectory(prefix="recforge-dl-") as tmp:
        for src in spec.sources:
            todo = [f for f in src.files if needed(f[1], f[2])]
            if not todo:
                continue
            if src.archive:
                archive = Path(tmp) / "archive.zip"
                _fetch(src.url, archive)
                try:
                    with zipfile.ZipFile(archive) as zf:
                        names = set(zf.namelist())
                        for remote, local, sha in todo:
                            if remote not in names:
                                if sha is None:
                                    continue  # optional member
                                raise DataError(f"archive has no member {remote!r}", path=src.url)
                            staged = Path(tmp) / local.replace("/", "_")
                            with zf.open(remote) as fin, open(staged, "wb") as fout:
                                shutil.copyfileobj(fin, fout)
                            _accept(staged, folder / local, sha, src.url)
                except zipfile.BadZipFile as exc:
                    raise DataError(f"not a zip archive ({exc})", path=src.url) from None
            else:
                for remote, local, sha in todo:
                    staged = Path(tmp) / local.replace("/", "_")
                    _fetch(src.url + remote, staged)
                    _accept(staged, folder / local, sha, src.url + remote)
    return folder


def _fetch(url: str, target: Path) -> None:
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(target, "wb") as out:  # noqa: S310 (fixed URLs)
            shutil.copyfileobj(resp, out)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot download ({reason}); no network? Download it by hand and pass path=", path=url) from None


def _accept(staged: Path, target: Path, sha: str | None, origin: str) -> None:
    """Move a staged file into place if its sha256 matches (or no reference is known)."""
    got = file_sha256(staged)
    if sha is not None and got != sha:
        staged.unlink()
        raise DataError(f"sha256 mismatch for {target.name}: expected {sha}, got {got}", path=origin)
    if sha is None:
        log.warning("%s: no reference sha256; kept unverified (sha256 %s)", target.name, got)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), target)
    except OSError as exc:
        raise DataError(f"cannot write the downloaded file ({exc.strerror})", path=str(target)) from None

