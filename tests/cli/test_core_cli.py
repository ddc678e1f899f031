"""The core commands through recforge.cli.main: train, evaluate, recommend, compare, quickstart; exit codes."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from recforge.cli import main
from recforge.experiments.runs import load_run
from recforge.models.base import load_model


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


def test_train_writes_run_folder(ease_run, csv_log):
    for name in ("config.toml", "metrics.json", "run.json", "per_user.parquet", "train.log"):
        assert (ease_run / name).is_file(), name
    assert not (ease_run / "model").exists() and not (ease_run / "checkpoints").exists()  # EASE has none
    assert type(load_model(ease_run / "artifact")).__name__ == "EASE"  # the fitted model, in the artifact format
    metrics = json.loads((ease_run / "metrics.json").read_text())
    m = metrics["test"]["ndcg@10"]
    assert m["ci_low"] <= m["mean"] <= m["ci_high"]
    assert m["mean"] > 0.3  # planted groups make the held-out item easy for EASE
    meta = json.loads((ease_run / "run.json").read_text())
    assert meta["split_hash"] and meta["provenance"]["versions"]["torch"]
    assert (meta["kind"], meta["name"], meta["model"]) == ("recommender", "ease", "ease")
    assert meta["provenance"]["split"]["hash"] == meta["split_hash"]
    cfg = load_run(ease_run).config
    assert cfg.model == {"name": "ease", "l2": 10.0}
    assert cfg.split == {"name": "leave_last_out"} and cfg.data == {"name": str(csv_log)}


def test_evaluate_reproduces_recorded_metrics(ease_run, csv_log, capsys):
    """evaluate ranks again: the recorded NDCG@10, and Hit@1 (never recorded) equal to an oracle computed here
    from the planted log through another path (recommend_history on each user's first 11 events)."""
    assert main(["evaluate", str(ease_run), "--metrics", "ndcg@10", "hit@1"]) == 0
    means = re.findall(r"(?<![\d.])(\d\.\d{4})(?!\d)", capsys.readouterr().out)  # the CIs print 3 decimals
    recorded = json.loads((ease_run / "metrics.json").read_text())["test"]
    assert "hit@1" not in recorded
    model = load_run(ease_run).model
    events: dict[str, list[tuple[int, str]]] = {}
    for line in csv_log.read_text().splitlines()[1:]:
        user, item, _, t = line.split(",")
        events.setdefault(user, []).append((int(t), item))
    hits = []
    for rows in events.values():
        items = [item for _, item in sorted(rows)]  # the last is the test item, the one before it validation
        recs, _ = model.recommend_history(items[:-1], k=1)
        hits.append(items[-1] in recs.items[0])
    assert means == [f"{recorded['ndcg@10']['mean']:.4f}", f"{np.mean(hits):.4f}"]
    # planted groups: the target is one of the group's 4 unseen items, far above random (1 of 49), not always first
    assert 0.2 < np.mean(hits) < 1.0


def test_recommend_masks_seen(ease_run, capsys):
    assert main(["recommend", str(ease_run), "--user", "u1", "-k", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 5
    model = load_run(ease_run).model
    seen = set(model.item_vocab.decode(model.seen_[[model.user_vocab.encode(["u1"])[0]]].indices))
    assert not seen & set(out["items"])


def test_recommend_for_an_anonymous_history(ease_run, capsys):
    """--history scores a session of item ids (strings on the command line); unknown ids are ignored, on stderr."""
    assert main(["recommend", str(ease_run), "--history", "i0", "i3", "i7", "nosuchitem", "-k", "5", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)  # stdout stays pure JSON: the warning goes to stderr
    assert out["ignored"] == ["nosuchitem"] and "nosuchitem" in captured.err
    assert len(out["items"]) == 5 and not {"i0", "i3", "i7"} & set(out["items"])
    # the planted groups: a history of group-0 items (i0..i14) gets group-0 items
    assert all(int(item[1:]) < 15 for item in out["items"])
    assert main(["recommend", str(ease_run), "--history", "i0", "--include-seen", "-k", "3"]) == 0
    assert "after a history of 1 item" in " ".join(capsys.readouterr().out.split())  # rich wraps the title


def test_recommend_history_of_a_sequential_run(csv_log, tmp_path, capsys):
    out_dir = tmp_path / "sasrec"
    overrides = ["model.dim=16", "model.n_layers=1", "model.n_heads=1", "model.max_len=12",
                 "model.train.epochs=2", "model.train.threads=1"]
    assert main(["train", "sasrec", "--data", str(csv_log), *sum((["--set", o] for o in overrides), []),
                 "--out", str(out_dir)]) == 0
    capsys.readouterr()
    assert main(["recommend", str(out_dir), "--history", "i20", "i21", "-k", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 4 and out["ignored"] == [] and not {"i20", "i21"} & set(out["items"])
    assert out["scores"] == sorted(out["scores"], reverse=True)
    assert main(["recommend", str(out_dir), "--history", "i20", "i21", "--times", "100", "160", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 10  # SASRec takes the times and ignores them


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--history", "x", "y"], 0, "no history item is known to the model"),
        (["--history", "i1", "--user", "u1"], 2, "not allowed with argument"),
        ([], 2, "one of the arguments --user --history is required"),
        (["--user", "u1", "--times", "5"], 2, "--times needs --history"),
        (["--history", "i1", "i2", "--times", "5"], 2, "times must have one value per history item"),
    ],
)
def test_recommend_history_errors(ease_run, extra, code, message, capsys):
    assert main(["recommend", str(ease_run), *extra]) == code
    assert message in capsys.readouterr().err


def test_recommend_history_needs_a_model_that_scores_histories(csv_log, tmp_path, capsys):
    out_dir = tmp_path / "userknn"
    assert main(["train", "userknn", "--data", str(csv_log), "--out", str(out_dir)]) == 0
    capsys.readouterr()
    assert main(["recommend", str(out_dir), "--history", "i1"]) == 2
    assert "cannot score ad-hoc histories" in capsys.readouterr().err


def test_compare_and_split_guard(ease_run, csv_log, tmp_path, capsys):
    other = tmp_path / "pop"
    assert main(["train", "popular", "--data", str(csv_log), "--out", str(other)]) == 0
    assert main(["compare", str(ease_run), str(other)]) == 0
    assert "ease" in capsys.readouterr().out
    shifted = tmp_path / "pop2"
    assert main(["train", "popular", "--data", str(csv_log), "--set", "split.n=2", "--out", str(shifted)]) == 0
    assert main(["compare", str(ease_run), str(shifted)]) == 2
    assert "different splits" in capsys.readouterr().err
    assert main(["compare", str(ease_run), str(shifted), "--force"]) == 0


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["train", "nosuchmodel"], 2, "unknown model"),
        (["train", "ease", "--set", "model.lambda=3"], 2, "unknown config key"),
        (["train", "ease", "--set", "model.l2=-1"], 2, "l2 must be > 0"),
        (["train", "ease", "--set", "split.name=weird"], 2, "unknown splitter"),
        (["train", "popular", "--data", "/nonexistent/file.csv"], 1, "unknown dataset"),
        (["recommend", "/nonexistent/run", "--user", "1"], 1, "not a run folder"),
        (["train"], 2, ""),
    ],
)
def test_errors_are_one_line_with_exit_codes(argv, code, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run folder is runs/ under the working directory
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv", [["train", "ease", "--set", "model.l2=-1"], ["train", "popular", "--data", "/nonexistent/file.csv"]]
)
def test_a_failed_train_leaves_no_half_made_run_folder(argv, tmp_path, capsys):
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    assert main([*argv, "--out", str(fresh)]) != 0
    assert not fresh.exists()
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    assert main([*argv, "--out", str(existing)]) != 0
    assert (existing / "notes.txt").read_text() == "mine"  # a folder the user made is never removed


def test_a_train_that_fails_after_saving_keeps_the_model(csv_log, tmp_path, monkeypatch):
    import recforge.experiments.runs

    def failing_evaluate(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(recforge.experiments.runs, "evaluate", failing_evaluate)
    out = tmp_path / "ease"
    with pytest.raises(RuntimeError, match="evaluation failed"):
        main(["train", "ease", "--data", str(csv_log), "--out", str(out)])
    assert (out / "train.log").is_file() and not (out / "metrics.json").exists()
    assert type(load_model(out / "artifact")).__name__ == "EASE"  # the fitted model is not lost


def test_unknown_user_exit_code(ease_run, capsys):
    assert main(["recommend", str(ease_run), "--user", "nobody"]) == 1
    assert "unknown user 'nobody'" in capsys.readouterr().err


def test_quickstart_on_a_small_file(csv_log, tmp_path, capsys):
    assert main(["quickstart", "--data", str(csv_log), "--out", str(tmp_path / "qs")]) == 0
    out = capsys.readouterr().out
    for name in ("popular", "itemknn", "ease", "als"):
        assert name in out
        assert (tmp_path / "qs" / name / "metrics.json").is_file()


def test_resume_needs_a_model_that_checkpoints(ease_run, capsys):
    before = sorted(p.name for p in ease_run.iterdir())
    assert main(["train", "ease", "--resume", str(ease_run)]) == 2
    assert "resume" in capsys.readouterr().err
    assert sorted(p.name for p in ease_run.iterdir()) == before  # nothing added or removed


def test_an_interrupted_sequential_run_resumes_from_its_checkpoints(csv_log, tmp_path, capsys):
    out = tmp_path / "sasrec"
    overrides = ["model.dim=16", "model.n_layers=1", "model.n_heads=1", "model.max_len=12", "model.train.epochs=2",
                 "model.train.threads=1"]
    assert main(["train", "sasrec", "--data", str(csv_log), *sum((["--set", o] for o in overrides), []),
                 "--out", str(out)]) == 0
    assert (out / "checkpoints").is_dir() and (out / "curves.json").is_file()
    recorded = json.loads((out / "metrics.json").read_text())["test"]["ndcg@10"]["mean"]
    for name in ("metrics.json", "run.json", "per_user.parquet"):  # what a run interrupted while training lacks
        (out / name).unlink()
    shutil.rmtree(out / "artifact")
    assert main(["train", "sasrec", "--resume", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["test"]["ndcg@10"]["mean"] == recorded
    assert load_run(out).meta["kind"] == "recommender"


def test_an_error_message_with_brackets_is_printed_as_written(monkeypatch, capsys):
    """Error texts name extras and keys in brackets ("pip install 'recforge[serve]'"); the console must not read
    them as markup (rich drops "[serve]" as an unknown style tag)."""
    import recforge.cli.core as core
    from recforge.errors import DataError

    def fail(args):
        raise DataError("install the extra: pip install 'recforge[serve]'")

    monkeypatch.setattr(core, "cmd_models", fail)
    code = main(["models"])
    assert code == 1
    assert "pip install 'recforge[serve]'" in " ".join(capsys.readouterr().err.split())
