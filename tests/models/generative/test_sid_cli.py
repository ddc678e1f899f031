"""`recforge sid build` and `recforge sid inspect` on the bundled dataset, through ``main([...])``."""

from __future__ import annotations

import json

import pytest

from recforge.cli.main import main
from recforge.models.generative.semantic_ids import SemanticIds


@pytest.mark.parametrize("features", ["cf+attributes", "text"])
def test_build_and_inspect(tmp_path, capsys, features):
    out = tmp_path / "sid"
    assert main(["sid", "build", "--data", "ml-latest-small", "--features", features, "--levels", "2",
                 "--codebook-size", "32", "--collisions", "dedup", "--out", str(out)]) == 0
    sids = SemanticIds.load(out)
    assert len({tuple(r) for r in sids.codes[1:].tolist()}) == sids.n_items
    capsys.readouterr()
    assert main(["sid", "inspect", str(out), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["collisions"]["after"]["largest_group"] == 1
    assert (out / "inspect.png").stat().st_size > 0


def test_bad_inputs_exit_cleanly(tmp_path, capsys):
    assert main(["sid", "build", "--data", "ml-latest-small", "--features", "genres", "--out", str(tmp_path)]) == 2
    assert main(["sid", "build", "--data", "ml-latest-small", "--levels", "0", "--out", str(tmp_path)]) == 2
    assert main(["sid", "build", "--data", "ml-latest-small", "--levels", "1", "--codebook-size", "8",
                 "--out", str(tmp_path / "x")]) == 1  # uniform cannot separate 9k items with 8 values
    assert main(["sid", "inspect", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unknown feature source" in err


@pytest.mark.slow
def test_recommend_prefer_steers_a_tiger_decoder_run(tmp_path, capsys):
    sid, run = tmp_path / "sid", tmp_path / "run"
    assert main(["sid", "build", "--data", "ml-latest-small", "--features", "cf", "--levels", "2",
                 "--codebook-size", "32", "--collisions", "dedup", "--out", str(sid)]) == 0
    sets = [f"model.sid={sid}", "model.preference=genre", "model.dim=16", "model.n_layers=1", "model.n_heads=1",
            "model.max_items=5", "model.train.epochs=1", "model.train.threads=1"]
    assert main(["train", "tiger_decoder", "--data", "ml-latest-small", *sum((["--set", s] for s in sets), []),
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["recommend", str(run), "--user", "1", "-k", "5", "--prefer", "genre=Comedy", "--json"]) == 0
    steered = json.loads(capsys.readouterr().out)
    assert len(steered["items"]) == 5
    assert main(["recommend", str(run), "--user", "1", "-k", "5", "--prefer", "genre=Nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown preference value 'genre=Nope'" in err and "Traceback" not in err


def test_recommend_prefer_on_a_model_that_cannot_be_steered(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,rating,timestamp\n" + "".join(f"u{u},i{(u + t) % 9},4,{t}\n" for u in range(6)
                                                                  for t in range(5)))
    assert main(["train", "popular", "--data", str(log), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["recommend", str(tmp_path / "run"), "--user", "u1", "--prefer", "genre=Comedy"]) == 2
    err = capsys.readouterr().err
    assert "--prefer needs a model steered by preference tokens" in err and "Traceback" not in err


def test_build_with_the_rqvae_tokenizer(tmp_path, capsys):
    out = tmp_path / "sid"
    assert main(["sid", "build", "--data", "ml-latest-small", "--tokenizer", "rqvae", "--epochs", "2", "--levels", "2",
                 "--codebook-size", "32", "--collisions", "dedup", "--out", str(out)]) == 0
    sids = SemanticIds.load(out)
    assert sids.config.tokenizer == "rqvae" and sids.config.epochs == 2
    assert len({tuple(r) for r in sids.codes[1:].tolist()}) == sids.n_items
    assert main(["sid", "build", "--data", "ml-latest-small", "--tokenizer", "rqvae", "--epochs", "0",
                 "--out", str(tmp_path / "x")]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err
