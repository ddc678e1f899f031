"""Bad input through the CLI: nothing silently wrong, no damage to existing runs, one-line errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from recforge.cli import main

CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus"
REAL_WORLD_FLAGS = ["--sep", ";", "--decimal", ",", "--columns", "user=Customer,item=Product,value=Rating,time=When"]


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    """A tiny folder in the ML-latest-small layout: ratings.csv + movies.csv (titles)."""
    root = tmp_path_factory.mktemp("movies")
    rows = ["userId,movieId,rating,timestamp"]
    for u in range(1, 9):
        for k, m in enumerate((1, 2, 3, 4, 5)[: 3 + u % 3]):
            rows.append(f"{u},{m if u % 2 else 6 - m},4.0,{1_600_000_000 + 10 * k}")
    (root / "ratings.csv").write_text("\n".join(rows) + "\n")
    titles = {1: "Toy Story (1995)", 2: "Jumanji (1995)", 3: '"Heat, the remake (1995)"', 4: "Casino (1995)",
              5: "Sabrina (1995)", 6: "Nixon (1995)"}
    (root / "movies.csv").write_text("movieId,title,genres\n" + "".join(f"{k},{t},Drama\n" for k, t in titles.items()))
    return root


@pytest.fixture(scope="module")
def good_run(movies, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "popular"
    assert main(["train", "popular", "--data", str(movies), "--out", str(out)]) == 0
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_out_on_an_existing_run_refuses_without_overwrite(good_run, movies, capsys):
    before = _snapshot(good_run)
    assert main(["train", "popular", "--data", str(movies), "--out", str(good_run)]) == 2
    assert "already exists; pass --overwrite" in _one_error_line(capsys)
    assert _snapshot(good_run) == before


def test_a_failed_overwrite_leaves_the_run_as_it_was(good_run, capsys):
    before = _snapshot(good_run)
    assert main(["train", "popular", "--data", "no-such-dataset", "--out", str(good_run), "--overwrite"]) == 1
    _one_error_line(capsys)
    assert _snapshot(good_run) == before
    assert main(["evaluate", str(good_run), "--metrics", "ndcg@10"]) == 0
    assert [p.name for p in good_run.parent.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_overwrite_replaces_a_run_on_success(movies, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "popular", "--data", str(movies), "--out", str(out)]) == 0
    assert main(["train", "ease", "--data", str(movies), "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "run.json").read_text())["model"] == "ease"


def test_unknown_metric_is_refused_before_fitting(movies, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "ease", "--data", str(movies), "--out", str(out),
                 "--set", 'eval.metrics=["ndcg@10","foo@10"]'])
    assert code == 2 and "unknown metric 'foo@10'" in _one_error_line(capsys)
    assert not out.exists()


def test_evaluate_refuses_an_unknown_metric_before_loading(good_run, capsys):
    assert main(["evaluate", str(good_run), "--metrics", "foo@10"]) == 2
    assert "unknown metric" in _one_error_line(capsys)


def test_no_user_to_hold_out_is_a_data_error_not_nan_metrics(tmp_path, capsys):
    data = tmp_path / "short.csv"
    data.write_text("user,item\n1,1\n1,2\n2,1\n3,2\n")
    out = tmp_path / "run"
    assert main(["train", "popular", "--data", str(data), "--out", str(out)]) == 1
    assert "no user has >= 3 interactions" in _one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("name", ["metrics.json", "run.json"])
@pytest.mark.parametrize("damage", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_corrupt_json_in_a_run_folder_is_one_line(good_run, tmp_path, capsys, name, damage):
    run = tmp_path / "damaged"
    shutil.copytree(good_run, run)
    (run / name).write_bytes(damage)
    for argv in (["evaluate", str(run)], ["recommend", str(run), "--user", "1"], ["compare", str(run)]):
        assert main(argv) == 1, argv
        assert name in _one_error_line(capsys)


def test_train_reads_the_real_world_file_with_reader_flags(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "popular", "--data", str(CORPUS / "realworld.csv"), *REAL_WORLD_FLAGS,
                 "--out", str(out)]) == 0
    cfg = (out / "config.toml").read_text()
    assert 'sep = ";"' in cfg and 'decimal = ","' in cfg  # re-runnable with --config
    assert main(["evaluate", str(out)]) == 0


def test_train_hint_names_the_cli_flag(tmp_path, capsys):
    assert main(["train", "popular", "--data", str(CORPUS / "realworld.csv"), "--out", str(tmp_path / "r")]) == 1
    assert "pass --sep ';'" in _one_error_line(capsys)


def test_recommend_shows_titles_and_ids_only_for_scripts(good_run, capsys):
    assert main(["recommend", str(good_run), "--user", "1", "-k", "2", "--include-seen"]) == 0
    out = capsys.readouterr().out
    assert "title" in out and "(1995)" in out
    assert main(["recommend", str(good_run), "--user", "1", "-k", "3", "--include-seen", "--ids-only"]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 3 and all(x.isdigit() for x in lines)
    assert main(["recommend", str(good_run), "--user", "1", "-k", "2", "--include-seen", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["titles"]) == 2 and all(t.endswith("(1995)") for t in doc["titles"])


def test_recommend_without_a_catalogue_shows_ids(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "popular", "--data", str(CORPUS / "realworld.csv"), *REAL_WORLD_FLAGS,
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", "0042", "-k", "2", "--include-seen"]) == 0
    assert "title" not in capsys.readouterr().out


def test_seeds_into_an_existing_folder_refuse(good_run, movies, capsys):
    assert main(["train", "popular", "--data", str(movies), "--seeds", "2", "--out", str(good_run)]) == 2
    assert "--overwrite" in _one_error_line(capsys)


@pytest.mark.parametrize(("name", "damage"), [("per_user.parquet", b"PAR1 not really PAR1"),
                                              ("curves.json", b"{broken")])
def test_damaged_report_inputs_are_one_line(good_run, tmp_path, capsys, name, damage):
    run = tmp_path / "damaged"
    shutil.copytree(good_run, run)
    (run / name).write_bytes(damage)
    assert main(["compare", str(good_run), str(run), "--report", str(tmp_path / "report")]) == 1
    assert name in _one_error_line(capsys)


@pytest.mark.parametrize(("name", "content", "argv", "match"), [
    ("metrics.json", '{"test": 5}', ["compare", "{run}", "{good}"], "expected metric records"),
    ("metrics.json", '{"test": {"ndcg@10": {"mean": "high"}}}', ["compare", "{run}", "{good}"], "not a record of numbers"),
    ("config.toml", "", ["evaluate", "{run}"], "no model section"),
    ("run.json", "{}", ["evaluate", "{run}"], "records no split hash"),
])
def test_damaged_run_folder_files_are_one_line(good_run, tmp_path, capsys, name, content, argv, match):
    run = tmp_path / "damaged"
    shutil.copytree(good_run, run)
    (run / name).write_text(content)
    argv = [a.format(run=run, good=good_run) for a in argv]
    assert main(argv) == 1
    assert re.search(match, _one_error_line(capsys))


def test_random_bytes_inside_the_weights_are_refused_by_every_command(good_run, tmp_path, capsys):
    """The header of weights.safetensors stays intact; bytes in its data change: no output from a damaged model."""
    run = tmp_path / "damaged"
    shutil.copytree(good_run, run)
    weights = run / "artifact" / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    assert len(raw) > header
    raw[header:] = bytes(b ^ 0x5A for b in raw[header:])
    weights.write_bytes(bytes(raw))
    for argv in (["evaluate", str(run)], ["recommend", str(run), "--user", "1"]):
        assert main(argv) == 1, argv
        assert "weights changed since they were written" in _one_error_line(capsys)
