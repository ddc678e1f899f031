"""Named datasets: every loader against the statistics of the data folder's READMEs (realdata), the bundled copy
offline, resolution order, option errors and download verification on local file:// URLs."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recforge.data import datasets as ds
from recforge.data.datasets import DATASETS, SIGNATURE_FILES, load_dataset
from recforge.errors import ConfigError, DataError

# name -> (users, items, interactions, partial) as computed in the data folder's READMEs (and the papers)
README_STATS = {
    "ml-100k": (943, 1682, 100_000, False),
    "ml-1m": (2999, 3615, 487_650, True),
    "ml-latest-small": (610, 9724, 100_836, False),
    "amazon-beauty": (22_363, 12_101, 198_502, False),
    "amazon-sports": (35_598, 18_357, 296_337, False),
    "amazon-toys": (19_412, 11_924, 167_597, False),
    "yelp": (30_431, 20_033, 316_354, False),
    "lastfm": (1_090, 3_646, 52_551, False),
    "amazon-video-games": (31_013, 23_715, 287_107, False),
    "lastfm-hetrec": (1_892, 17_632, 92_834, True),
    "coat": (290, 300, 6_960, False),
}


# density (%) as printed in the data folder's READMEs, to their precision
README_DENSITY = {
    "ml-100k": (6.305, 3), "ml-1m": (4.498, 3), "ml-latest-small": (1.700, 3), "amazon-beauty": (0.0734, 4),
    "amazon-sports": (0.0453, 4), "amazon-toys": (0.0724, 4), "yelp": (0.0519, 4), "lastfm": (1.3223, 4),
    "amazon-video-games": (0.0390, 4), "lastfm-hetrec": (0.278, 3), "coat": (8.00, 2),
}
# mean / min history length where the READMEs give them
README_HISTORY = {"amazon-beauty": (8.88, 5), "amazon-sports": (8.32, 5), "amazon-toys": (8.63, 5), "yelp": (10.40, 5),
                  "lastfm": (48.21, 5), "amazon-video-games": (9.26, 1), "ml-100k": (106.04, 20), "coat": (24.0, 24)}


def test_every_named_dataset_has_stats_and_signature():
    assert set(README_STATS) == set(DATASETS) == set(SIGNATURE_FILES)
    for spec in DATASETS.values():
        assert spec.loader in ds.LOADERS and spec.licence and spec.homepage.startswith("https://")
        assert spec.sources and all(s.url.startswith("https://") for s in spec.sources)


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(README_STATS))
def test_named_dataset_matches_readme(name, data_dir):
    d = load_dataset(name, data_dir=data_dir)
    users, items, n, partial = README_STATS[name]
    st = d.info["stats"]
    assert (st["users"], st["items"], st["interactions"]) == (users, items, n)
    assert d.info["partial"] is partial and d.info["origin"] == "data_dir"
    assert all(v == "ok" for v in d.info["checksums"].values()) and d.info["checksums"]
    assert d.info["load"]["removed"] == {}
    # info["density"] counts distinct (user, item) pairs; counted here again from the loaded log, independently
    log = d.interactions
    pairs = len(np.unique(log.user.astype(np.int64) * (log.n_items + 1) + log.item))
    assert st["duplicate_pairs_rows"] == len(log) - pairs == (11_830 if name == "yelp" else 0)  # Yelp: repeat visits
    assert st["density"] == pytest.approx(pairs / (log.n_users * log.n_items))
    dens, digits = README_DENSITY[name]  # the READMEs give the row density of the loaded log
    assert round(len(log) / (log.n_users * log.n_items) * 100, digits) == pytest.approx(dens)
    if name in README_HISTORY:
        mean, low = README_HISTORY[name]
        assert round(st["history_length"]["mean"], 2) == pytest.approx(mean) and st["history_length"]["q0"] == low
    if d.catalog is not None:
        assert d.catalog.item_vocab is d.interactions.item_vocab


@pytest.mark.realdata
def test_s3rec_time_is_position_and_ids_kept(data_dir):
    d = load_dataset("amazon-beauty", data_dir=data_dir)
    x = d.interactions
    first_line = (data_dir / "amazon-s3rec" / "Beauty.txt").read_text().splitlines()[0].split()
    items, offsets = x.sequences()
    u = x.user_vocab.encode(int(first_line[0]))[0]
    assert x.item_vocab.decode(items[offsets[u] : offsets[u + 1]]) == [int(i) for i in first_line[1:]]
    assert x.time[offsets[u] : offsets[u + 1]].tolist() == list(range(len(first_line) - 1))
    assert x.item_vocab.ids == list(range(1, 12_102))  # ids 1..N keep their value as dense id
    assert d.catalog.n_attributes == 637


@pytest.mark.realdata
def test_ml100k_catalog_and_latin1(data_dir):
    d = load_dataset("ml-100k", data_dir=data_dir)
    assert d.catalog.title(1) == "Toy Story (1995)"
    assert sorted(d.catalog.attributes_of(1)) == ["Animation", "Children's", "Comedy"]
    titles = [t for t in d.catalog.titles if t]
    assert any("Misérables" in t for t in titles)  # Latin-1 decoded, not mangled
    assert d.interactions.value.min() == 1 and d.interactions.value.max() == 5


@pytest.mark.realdata
def test_ml1m_partial_is_flagged(data_dir):
    d = load_dataset("ml-1m", data_dir=data_dir)
    assert d.info["partial"] and any("PARTIAL" in n for n in d.info["notes"])
    assert d.extras["users"].height == 6040
    assert d.catalog.title(1) == "Toy Story (1995)"


@pytest.mark.realdata
def test_lastfm_extras(data_dir):
    d = load_dataset("lastfm", data_dir=data_dir)
    neg = d.extras["sampled_negatives"]
    assert neg.shape == (1091, 99) and (neg[1:] > 0).all()
    # negatives are items the user never interacted with
    csr = d.interactions.to_csr()
    assert not np.take_along_axis(csr[[1, 2, 3]].toarray(), neg[1:4], axis=1).any()
    h = load_dataset("lastfm-hetrec", data_dir=data_dir)
    assert h.extras["tags"].height == 11_946 and h.extras["friends"].height == 25_434
    assert h.catalog.title(89) == "Lady Gaga"


@pytest.mark.realdata
def test_coat_test_part_and_propensities(data_dir):
    d = load_dataset("coat", data_dir=data_dir)
    assert len(d.extras["test"]) == 4640 and d.extras["propensities"].shape == (290, 300)
    assert d.extras["test"].item_vocab is d.interactions.item_vocab
    assert len(d.catalog.attributes_of(0)) == 4


def test_bundled_loads_offline(monkeypatch):
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    d = load_dataset("ml-latest-small")
    assert d.info["origin"] == "bundled"
    st = d.info["stats"]
    assert (st["users"], st["items"], st["interactions"]) == (610, 9724, 100_836)
    assert st["time"]["first"] == "1996-03-29" and st["time"]["last"] == "2018-09-24"
    assert d.catalog.title(1) == "Toy Story (1995)" and d.extras["tags"].height == 3683
    assert "redistribution allowed" in d.info["licence"]


def test_bundled_files_are_the_official_bytes_with_licence():
    spec = DATASETS["ml-latest-small"]
    for name in ("ratings.csv", "movies.csv", "tags.csv"):
        raw = gzip.decompress((ds.BUNDLED_DIR / f"ml-latest-small_{name}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == spec.sha256[name]
    licence = (ds.BUNDLED_DIR / "ml-latest-small_README.txt").read_text()
    assert "may redistribute the data set" in licence
    assert not any("ml-100k" in p.name or "ml-1m" in p.name for p in ds.BUNDLED_DIR.iterdir())


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"recforge data get ml-100k"):
        load_dataset("ml-100k")
    monkeypatch.delenv("RECFORGE_DATA_DIR")
    with pytest.raises(DataError, match="RECFORGE_DATA_DIR is not set"):
        load_dataset("amazon-beauty")


def test_explicit_path_beats_data_dir(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "Beauty.txt").write_text("7 1 2 3\n8 2 3\n")
    d = load_dataset("amazon-beauty", data_dir=tmp_path / "nowhere", path=folder)
    assert d.info["origin"] == "path" and len(d.interactions) == 5 and d.catalog is None
    assert d.info["checksums"] == {"Beauty.txt": "MISMATCH"}  # not the reference file, and it says so
    # a folder with a known layout is recognised from its files
    assert load_dataset(folder).name == "amazon-beauty"


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("no-such-dataset",), {}, DataError, "unknown dataset 'no-such-dataset'"),
        (("ml-latest-small",), {"bogus": 1}, ConfigError, "unknown load_dataset option"),
        (("ml-latest-small",), {"sep": ","}, ConfigError, "apply to plain files"),
        (("ml-latest-small",), {"duplicates": "median"}, ConfigError, "duplicates must be one of"),
        (("ml-latest-small",), {"min_user_interactions": -1}, ConfigError, "user_k must be"),
    ],
)
def test_load_dataset_bad_options(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_dataset(*args, **kwargs)


def test_plain_file_and_preprocessing(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("user,item,rating,timestamp\n" + "".join(f"u{u},i{i},{(u + i) % 5 + 1},{u * 10 + i}\n"
                                                          for u in range(6) for i in range(5)))
    d = load_dataset(p, rating_threshold=4)
    assert d.info["stats"]["interactions"] == 12 and d.info["preprocess"][0]["rows_removed"] == 18
    assert set(np.unique(d.interactions.value)) == {1.0}
    with pytest.raises(DataError, match="missing column"):
        load_dataset(p, columns={"user": "user", "item": "nope"})


def test_preprocess_realigns_catalog(monkeypatch):
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    d = load_dataset("ml-latest-small", rating_threshold=4.0, min_user_interactions=10, min_item_interactions=10)
    assert d.catalog.item_vocab is d.interactions.item_vocab
    counts = d.interactions.item_counts()[1:]
    assert counts.min() >= 10 and d.interactions.user_counts()[1:].min() >= 10
    steps = [s["step"] for s in d.info["preprocess"]]
    assert steps == ["binarize", "k_core"] and d.interactions.meta["preprocess"][0]["rows_removed"] > 0


# ------------------------------------------------------------------------------------------------ download
def _spec_for(tmp_path: Path, payload: dict[str, bytes], sha: dict[str, str], archive: bool) -> ds.DatasetSpec:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if archive:
        zpath = tmp_path / "src.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            for name, data in payload.items():
                zf.writestr(f"pkg/{name}", data)
        src = ds.Source(zpath.as_uri(), tuple((f"pkg/{n}", n, sha[n]) for n in payload), archive=True)
    else:
        srcdir = tmp_path / "remote"
        srcdir.mkdir(parents=True)
        for name, data in payload.items():
            (srcdir / name).write_bytes(data)
        src = ds.Source(srcdir.as_uri() + "/", tuple((n, n, sha[n]) for n in payload))
    return ds.DatasetSpec(name="t", folder="t", loader="_load_s3rec", homepage="https://example.org", licence="x",
                          sources=(src,), description="test", options={"stem": "T"})


@pytest.mark.parametrize("archive", [False, True])
def test_download_verifies_sha256(tmp_path, archive):
    payload = {"T.txt": b"1 1 2 3\n2 2 3\n"}
    good = {"T.txt": hashlib.sha256(payload["T.txt"]).hexdigest()}
    folder = ds.download_spec(_spec_for(tmp_path, payload, good, archive), tmp_path / "dest")
    assert (folder / "T.txt").read_bytes() == payload["T.txt"]
    bad = {"T.txt": "0" * 64}
    with pytest.raises(DataError, match="sha256 mismatch for T.txt: expected 0{64}, got " + good["T.txt"]):
        ds.download_spec(_spec_for(tmp_path / "b", payload, bad, archive), tmp_path / "dest2", force=True)
    assert not (tmp_path / "dest2" / "t" / "T.txt").exists()


def test_download_skips_good_files_and_replaces_bad_ones(tmp_path):
    payload = {"T.txt": b"1 1 2 3\n"}
    sha = {"T.txt": hashlib.sha256(payload["T.txt"]).hexdigest()}
    spec = _spec_for(tmp_path / "src", payload, sha, archive=False)
    folder = ds.download_spec(spec, tmp_path / "dest")
    (tmp_path / "src" / "remote" / "T.txt").unlink()  # the source is gone: a second call must not need it
    assert ds.download_spec(spec, tmp_path / "dest") == folder
    (folder / "T.txt").write_bytes(b"corrupted")
    with pytest.raises(DataError, match="cannot download"):  # a corrupted local copy is fetched again
        ds.download_spec(spec, tmp_path / "dest")


def test_download_into_unwritable_destination(tmp_path):
    spec = _spec_for(tmp_path / "src", {"T.txt": b"1 1 2\n"}, {"T.txt": None}, archive=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # fails even for root, unlike a read-only folder
    with pytest.raises(DataError, match="cannot create the destination folder"):
        ds.download_spec(spec, blocker)


def test_download_without_network_is_a_data_error(tmp_path):
    spec = ds.DatasetSpec(name="t", folder="t", loader="_load_s3rec", homepage="https://example.org", licence="x",
                          sources=(ds.Source((tmp_path / "absent").as_uri() + "/", (("T.txt", "T.txt", None),)),),
                          description="test")
    with pytest.raises(DataError, match="cannot download"):
        ds.download_spec(spec, tmp_path / "dest")


def test_download_unknown_name():
    with pytest.raises(ConfigError, match="unknown dataset"):
        ds.download("nope", "/tmp")


def test_preprocessing_that_removes_everything_is_an_error(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("user,item\n1,2\n1,3\n2,2\n")
    with pytest.raises(DataError, match="removed every interaction"):
        load_dataset(p, min_user_interactions=5)
