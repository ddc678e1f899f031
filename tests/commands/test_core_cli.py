"""The core commands through recforge.cli.main: train, evaluate, recommend, compare, quickstart; exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recforge.cli import main
from recforge.runs import load_run


@pytest.fixture(scope="module")
def csv_log(tmp_path_factory):
    """A planted-signal log as CSV: users in 4 groups, each group prefers its own 15 items."""
    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,rating,timestamp"]
    for u in range(60):
        group = u % 4
        items = rng.choice(15, size=12, replace=False) + 15 * group
        for t, i in enumerate(items):
            rows.append(f"u{u},i{i},4,{1_000_000 + 100 * t + u}")
    path = tmp_path_factory.mktemp("data") / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def ease_run(csv_log, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ease"
    assert main(["train", "ease", "--data", str(csv_log), "--set", "model.l2=10", "--out", str(out)]) == 0
    return out


def test_train_writes_run_folder(ease_run):
    for name in ("config.toml", "metrics.json", "run.json", "per_user.parquet", "train.log", "model/model.json"):
        assert (ease_run / name).is_file(), name
    metrics = json.loads((ease_run / "metrics.json").read_text())
    m = metrics["test"]["ndcg@10"]
    assert m["ci_low"] <= m["mean"] <= m["ci_high"]
    assert m["mean"] > 0.3  # planted groups make the held-out item easy for EASE
    meta = json.loads((ease_run / "run.json").read_text())
    assert meta["split_hash"] and meta["provenance"]["versions"]["torch"]
    assert load_run(ease_run).config.model == {"name": "ease", "l2": 10.0}


def test_evaluate_reproduces_recorded_metrics(ease_run, capsys):
    assert main(["evaluate", str(ease_run), "--metrics", "ndcg@10"]) == 0
    recorded = json.loads((ease_run / "metrics.json").read_text())["test"]["ndcg@10"]["mean"]
    assert f"{recorded:.4f}" in capsys.readouterr().out


def test_recommend_masks_seen(ease_run, capsys):
    assert main(["recommend", str(ease_run), "--user", "u1", "-k", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 5
    model = load_run(ease_run).model
    seen = set(model.item_vocab.decode(model.seen_[[model.user_vocab.encode(["u1"])[0]]].indices))
    assert not seen & set(out["items"])


def test_compare_and_split_guard(ease_run, csv_log, tmp_path, capsys):
    other = tmp_path / "pop"
    assert main(["train", "popular", "--data", str(csv_log), "--out", str(other)]) == 0
    assert main(["compare", str(ease_run), str(other)]) == 0
    assert "ease" in capsys.readouterr().out
    shifted = tmp_path / "pop2"
    assert main(["train", "popular", "--data", str(csv_log), "--set", "split.params.n=2", "--out", str(shifted)]) == 0
    assert main(["compare", str(ease_run), str(shifted)]) == 2
    assert "different splits" in capsys.readouterr().err
    assert main(["compare", str(ease_run), str(shifted), "--force"]) == 0


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["train", "nosuchmodel"], 2, "unknown model"),
        (["train", "ease", "--set", "model.lambda=3"], 2, "unknown config key"),
        (["train", "ease", "--set", "model.l2=-1"], 2, "l2 must be > 0"),
        (["train", "ease", "--set", "split.kind=weird"], 2, "unknown splitter"),
        (["train", "popular", "--data", "/nonexistent/file.csv"], 1, "unknown dataset"),
        (["recommend", "/nonexistent/run", "--user", "1"], 1, "not a run folder"),
        (["train"], 2, ""),
    ],
)
def test_errors_are_one_line_with_exit_codes(argv, code, message, capsys):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_unknown_user_exit_code(ease_run, capsys):
    assert main(["recommend", str(ease_run), "--user", "nobody"]) == 1
    assert "unknown user 'nobody'" in capsys.readouterr().err


def test_quickstart_on_a_small_file(csv_log, tmp_path, capsys):
    assert main(["quickstart", "--data", str(csv_log), "--out", str(tmp_path / "qs")]) == 0
    out = capsys.readouterr().out
    for name in ("popular", "itemknn", "ease", "als"):
        assert name in out
        assert (tmp_path / "qs" / name / "metrics.json").is_file()
