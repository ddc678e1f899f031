"""`recforge crs ...` through recforge.cli.main: simulate, train, build, chat driven through stdin, bad inputs."""

from __future__ import annotations

import io
import json

import pytest

from recforge.cli import main

FAST = ["--max-turns", "8", "--list-size", "5", "--set", "scorer.epochs=3", "--set", "scorer.dim=8"]


@pytest.fixture(scope="module")
def run_dir(world_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("crsrun") / "fact"
    code = main(["crs", "train", "--data", str(world_dir), "--policy", "fact-crs", "--eval-episodes", "30",
                 "--out", str(out), *FAST])
    assert code == 0
    return out


def test_simulate_prints_table_and_json(world_dir, capsys, tmp_path):
    code = main(["crs", "simulate", "--data", str(world_dir), "--policy", "random,max-entropy", "--episodes", "30",
                 "--curve", str(tmp_path / "c.png"), *FAST])
    assert code == 0
    text = capsys.readouterr().out
    assert "SR@8" in text and "max-entropy" in text and "random" in text
    assert (tmp_path / "c.png").exists()
    argv = ["crs", "simulate", "--data", str(world_dir), "--policy", "random,max-entropy", "--episodes", "40",
            "--json", "--max-turns", "8"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    timeless = [[{k: v for k, v in r.items() if k != "seconds"} for r in rs] for rs in (rows, again)]
    assert timeless[0] == timeless[1]  # seeded dialogues: the same figures every time
    by = {r["policy"]: r for r in rows}
    for r in rows:
        sr = r["sr@8"]
        assert r["episodes"] == 40 and sr["ci_low"] <= sr["mean"] <= sr["ci_high"]
        assert sr["mean"] * 40 == pytest.approx(round(sr["mean"] * 40))  # a share of 40 dialogues
    assert by["max-entropy"]["sr@8"]["mean"] > by["random"]["sr@8"]["mean"]  # the planted world rewards asking


def test_train_writes_run_folder_and_simulate_reloads_it(run_dir, world_dir, capsys):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["_info"]["episodes"] == 30 and "sr@8" in metrics["test"]
    assert (run_dir / "artifact" / "weights.safetensors").exists() and (run_dir / "config.toml").exists()
    provenance = json.loads((run_dir / "run.json").read_text())["provenance"]
    assert provenance["data_sha256"] and "git_commit" in provenance
    code = main(["crs", "simulate", "--data", str(world_dir), "--run", str(run_dir), "--episodes", "30",
                 "--max-turns", "8", "--list-size", "5", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert rows[0]["sr@8"]["mean"] == pytest.approx(metrics["test"]["sr@8"]["mean"])  # same dialogues, same policy


def test_train_with_config_file(run_dir, world_dir, tmp_path):
    out = tmp_path / "again"
    assert main(["crs", "train", "--config", str(run_dir / "config.toml"), "--out", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())["test"]["sr@8"]["mean"]
    assert again == json.loads((run_dir / "metrics.json").read_text())["test"]["sr@8"]["mean"]


def test_evaluate_writes_an_evaluation_run(run_dir, world_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["crs", "evaluate", str(run_dir), "--data", str(world_dir), "--episodes", "30", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    trained = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert metrics["sr@8"] == trained["sr@8"]  # same policy, same seeded dialogues
    assert json.loads((out / "run.json").read_text())["kind"] == "crs-evaluate"
    assert (out / "config.toml").exists() and (out / "success_curve.png").exists() and not (out / "artifact").exists()


def test_tampered_artifact_is_one_line_error(run_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    weights = bad / "artifact" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    assert main(["crs", "evaluate", str(bad), "--episodes", "5"]) == 1
    err = capsys.readouterr().err
    assert "changed since they were written" in err and "Traceback" not in err


def test_failed_command_keeps_the_existing_run(run_dir, world_dir, tmp_path):
    import shutil

    kept = tmp_path / "kept"
    shutil.copytree(run_dir, kept)
    before = {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()}
    code = main(["crs", "train", "--data", str(world_dir), "--policy", "fact-crs", "--out", str(kept), *FAST,
                 "--set", "policy.n_trees=0"])
    assert code == 2
    code = main(["crs", "train", "--data", str(tmp_path / "missing"), "--policy", "random", "--out", str(kept)])
    assert code != 0
    after = {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # no staging folder left behind


def _chat(monkeypatch, capsys, run_dir, lines, *extra):
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    code = main(["crs", "chat", str(run_dir), *extra])
    return code, capsys.readouterr().out


class Person(io.StringIO):
    """Plays a user with a hidden target: reads the last prompt from stdout and answers truthfully."""

    def __init__(self, world, target, capsys):
        super().__init__()
        self.world, self.target, self.capsys = world, target, capsys
        self.attrs = {world.attr_names[a] for a in world.attrs_of(target)}
        self.transcript: list[str] = []

    def readline(self, *args):
        out = self.capsys.readouterr().out
        self.transcript.append(out)
        if "Name one thing" in out:
            return self.world.attr_names[self.world.attrs_of(self.target)[0]] + "\n"
        if "Should it have" in out:
            asked = out.rsplit("Should it have", 1)[1].split("?")[0].strip()
            return ("y" if asked in self.attrs else "n") + "\n"
        if "Is it one of these" in out:
            title = self.world.item_titles[self.target]
            for line in out.splitlines():
                cells = [c.strip() for c in line.split("│")]
                if len(cells) > 3 and cells[2] == title:
                    return cells[1] + "\n"
            return "n\n"
        return ""


def test_chat_end_to_end_accepts_a_recommendation(monkeypatch, capsys, run_dir, world):
    users, targets = world.pairs("test")
    found = []
    for u, target in zip(users[:12], targets[:12]):  # the policy finds some targets within 8 turns, not all
        person = Person(world, int(target), capsys)
        monkeypatch.setattr("sys.stdin", person)
        assert main(["crs", "chat", str(run_dir), "--user", world.user_ids[u]]) == 0
        text = "".join(person.transcript) + capsys.readouterr().out
        assert "Should it have" in text and "Item number" in text  # questions asked, titles shown
        if "Great" in text:
            assert world.item_titles[int(target)] in text.split("Great", 1)[1]
            found.append(int(target))
    assert found, "the chat never reached an accepted recommendation"


def test_chat_rejections_and_end_of_input(monkeypatch, capsys, run_dir):
    code, out = _chat(monkeypatch, capsys, run_dir, ["zzz-no-such", "genre 1", "maybe", *["n"] * 30])
    assert code == 0
    assert "No attribute matches" in out and "Please answer y or n" in out
    assert "did not find it within 8 turns" in out or "Is it one of these" in out


def test_chat_unknown_user(monkeypatch, capsys, run_dir):
    code, _ = _chat(monkeypatch, capsys, run_dir, ["genre 1"], "--user", "nobody")
    assert code == 1


def test_build_from_s3rec(tmp_path, capsys):
    (tmp_path / "X.txt").write_text("1 1 2 3 4\n2 2 3 4\n")
    (tmp_path / "X_item2attributes.json").write_text(json.dumps({"1": [7], "2": [7, 8], "3": [8], "4": [9]}))
    code = main(["crs", "build", "--from", "s3rec", "--input", str(tmp_path / "X.txt"), "--out", str(tmp_path / "o")])
    assert code == 0 and (tmp_path / "o" / "crs.json").exists() and "test_pairs" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["crs", "simulate", "--policy", "nope", "--data", "{world}"], 2),
        (["crs", "simulate", "--data", "{world}"], 2),  # neither --policy nor --run
        (["crs", "simulate", "--policy", "random", "--data", "{tmp}/missing"], 2),
        (["crs", "simulate", "--policy", "random", "--data", "{world}", "--max-turns", "0"], 2),
        (["crs", "simulate", "--policy", "random", "--data", "{world}", "--set", "bogus=1"], 2),
        (["crs", "chat", "{tmp}"], 1),  # not a run folder
        (["crs", "build", "--from", "s3rec", "--input", "{tmp}/none.txt", "--out", "{tmp}/o"], 1),
        (["crs", "build", "--from", "nope", "--input", "x", "--out", "y"], 2),
        (["crs"], 2),
    ],
)
def test_bad_inputs_exit_codes(argv, code, world_dir, tmp_path):
    args = [a.replace("{world}", str(world_dir)).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(args) == code
