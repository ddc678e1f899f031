"""`recforge data info|get|list` through recforge.cli.main: output, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest

from recforge.cli import main


def test_info_bundled_table(capsys, monkeypatch):
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    assert main(["data", "info", "ml-latest-small"]) == 0
    out = capsys.readouterr().out
    for text in ("610", "9,724", "100,836", "1996-03-29 .. 2018-09-24", "popularity Gini", "bundled", "GroupLens"):
        assert text in out


def test_info_json_with_preprocessing(capsys, monkeypatch):
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    assert main(["data", "info", "ml-latest-small", "--format", "json", "--rating-threshold", "4",
                 "--min-user", "5", "--min-item", "5"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [s["step"] for s in info["preprocess"]] == ["binarize", "k_core"]
    assert info["stats"]["interactions"] < 100_836 and info["stats"]["value"]["distinct"] == 1
    assert info["catalog"]["items"] == info["stats"]["items"]


@pytest.mark.realdata
def test_info_says_partial(capsys, data_dir):
    assert main(["data", "info", "ml-1m", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "PARTIAL" in out and "2,999" in out


def test_info_plain_file(tmp_path, capsys):
    p = tmp_path / "log.tsv"
    p.write_text("1\t10\t100\n1\t11\t200\n2\t10\t300\n")
    assert main(["data", "info", str(p), "--no-header", "--sep", "\\t", "--columns", "user=0,item=1,time=2",
                 "--format", "json"]) == 0
    st = json.loads(capsys.readouterr().out)["stats"]
    assert (st["users"], st["items"], st["interactions"]) == (2, 2, 3)


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["data", "info", "no-such-dataset"], 1, "unknown dataset 'no-such-dataset'"),
        (["data", "info", "{tmp}/bad.csv"], 1, "line 3, column 'timestamp': non-numeric timestamp"),
        (["data", "info", "{tmp}/bad.csv", "--columns", "user"], 2, "--columns expects ROLE=COLUMN"),
        (["data", "info", "ml-latest-small", "--min-user", "-3"], 2, "user_k must be"),
        (["data", "get", "no-such-dataset"], 2, "unknown dataset"),
        (["data"], 2, None),
    ],
)
def test_errors_are_one_line_with_exit_code(tmp_path, capsys, monkeypatch, argv, code, message):
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    (tmp_path / "bad.csv").write_text("user,item,timestamp\n1,2,3\n1,3,x\n")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == code
    err = capsys.readouterr().err
    if message is not None:
        assert message in err and "Traceback" not in err and err.count("error:") == 1


def test_get_from_local_url_verifies(tmp_path, capsys, monkeypatch):
    """`data get` on a table entry pointed at a local file:// copy (no network needed)."""
    import hashlib

    from recforge.data import datasets as ds

    src = tmp_path / "remote"
    src.mkdir()
    payload = b"1 1\n1 2\n2 2\n2 3\n"
    (src / "Video.txt").write_bytes(payload)
    spec = ds.DATASETS["amazon-video-games"]
    fake = ds.DatasetSpec(**{**spec.__dict__, "sources": (ds.Source(src.as_uri() + "/", (
        ("Video.txt", "Video.txt", hashlib.sha256(payload).hexdigest()),)),)})
    monkeypatch.setitem(ds.DATASETS, "amazon-video-games", fake)
    assert main(["data", "get", "amazon-video-games", "--dest", str(tmp_path / "data")]) == 0
    assert (tmp_path / "data" / "amazon-video-games-sasrec" / "Video.txt").read_bytes() == payload
    assert "verified" in capsys.readouterr().out
    # the downloaded folder is then found through the data dir
    d = ds.load_dataset("amazon-video-games", data_dir=tmp_path / "data")
    assert d.info["checksums"] == {"Video.txt": "ok"} and len(d.interactions) == 4


def test_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "amazon-beauty" in out and "coat" in out
