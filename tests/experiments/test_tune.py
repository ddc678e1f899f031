"""recforge tune: search on validation only, pruning by validation curves, grid and TPE samplers, refit on
train + validation with one test evaluation, the run folder and report, a study shared by two processes."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import optuna
import pytest

from recforge.cli import main
from recforge.errors import ConfigError, DataError
from recforge.experiments import tune as tune_module
from recforge.experiments.runs import load_run, resolve_config
from recforge.experiments.tune import TuneConfig, check_space, grid_values, search_space, tune
from recforge.models.base import TrainerFit
from recforge.registry import MODELS, get_model
from tests.conftest import write_cluster_log

#: small Trainer settings so that a neural trial costs well under a second on the tiny log
FAST_TRAIN = ["model.train.epochs=3", "model.train.batch_size=64", "model.train.threads=1"]


#: per-model settings that keep a trial on the tiny log short (fixed, so not searched)
FAST_MODEL = {"als": ["model.iterations=3", "model.factors=16"],
              "tiger_decoder": ["model.max_items=10", "model.dim=32", "model.n_layers=1"],
              **{name: ["model.max_len=10"] for name in ("sasrec", "gru4rec", "bert4rec", "hstu")}}


def _overrides(name: str) -> list[str]:
    reads_catalog = ["model.embedder.name=hashing", "model.embedder.dim=32"] if _reads_catalog(name) else []
    return (FAST_TRAIN if issubclass(get_model(name), TrainerFit) else []) + FAST_MODEL.get(name, []) + reads_catalog


def _reads_catalog(name: str) -> bool:
    return "embedder" in {f.name for f in dataclasses.fields(get_model(name).config_class)}


@pytest.fixture(scope="module")
def cluster_movielens(tmp_path_factory) -> Path:
    """The planted cluster log as a MovieLens-format folder (ratings.csv + movies.csv) whose titles and genres name
    each item's cluster, for the models that read the item catalogue."""
    root = tmp_path_factory.mktemp("ml-clusters")
    log = write_cluster_log(root / "log.csv")
    rows = [line.split(",") for line in log.read_text().splitlines()[1:]]
    (root / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u[1:]},{int(i[1:]) + 1},4.0,{t}\n" for u, i, t in rows))
    genres = ["Comedy", "Drama", "Horror", "Western"]
    (root / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f"{i + 1},{genres[i // 10]} story {i} (1990),{genres[i // 10]}\n" for i in range(40)))
    log.unlink()
    return root


def _rows(folder):
    with (folder / "trials.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_declares_a_valid_search_space(name):
    cls = get_model(name)
    check_space(cls.config_class.search_space, cls.config_class)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tune_works_for_every_registered_model(name, cluster_csv, cluster_movielens, tmp_path):
    data = cluster_movielens if _reads_catalog(name) else cluster_csv
    cfg = resolve_config(name, str(data), overrides=_overrides(name))
    result = tune(cfg, TuneConfig(trials=2, pruner="none"), tmp_path / "t")
    rows = _rows(result.path)
    expected = 2 if search_space(cfg) else 1  # nothing to search: one trial
    assert len(rows) == expected and all(r["state"] == "complete" for r in rows)
    assert result.best_value == max(float(r["value"]) for r in rows)
    for name_ in ("config.toml", "run.json", "chosen.toml", "preset.toml", "history.png", "report.html"):
        assert (result.path / name_).is_file(), name_
    chosen = resolve_config(config_file=result.path / "chosen.toml")  # the chosen setting is a runnable config
    assert chosen.refit and chosen == result.chosen
    for key, value in result.best_params.items():
        head, _, rest = key.partition(".")
        assert (chosen.model[head][rest] if rest else chosen.model[head]) == value
    if issubclass(get_model(name), TrainerFit):  # the refit trains for the epoch count validation picked
        best = min(rows, key=lambda r: -float(r["value"]))
        assert chosen.model["train"]["epochs"] == int(best["best_epoch"])


def test_the_search_never_looks_at_the_test_part(cluster_csv, tmp_path, monkeypatch):
    parts = []
    real = tune_module.evaluate

    def spy(model, split, **kw):
        parts.append(kw["on"])
        return real(model, split, **kw)

    monkeypatch.setattr(tune_module, "evaluate", spy)
    tune(resolve_config("itemknn", str(cluster_csv)), TuneConfig(trials=4), tmp_path / "t")
    assert parts == ["valid"] * 4


def test_grid_sampler_runs_the_declared_grid_and_fixed_fields_are_not_searched(cluster_csv, tmp_path):
    cfg = resolve_config("itemknn", str(cluster_csv), overrides=["model.shrink=5"])
    assert list(search_space(cfg)) == ["k"]
    result = tune(cfg, TuneConfig(sampler="grid", grid_points=3, trials=50), tmp_path / "t")
    rows = _rows(result.path)
    assert sorted(int(r["k"]) for r in rows) == grid_values(("logint", 10, 1000), 3) == [10, 100, 1000]
    assert result.chosen.model["shrink"] == 5.0


def test_grid_values_follow_the_spec():
    assert grid_values(("log", 1.0, 100.0), 3) == [1.0, 10.0, 100.0]
    assert grid_values(("float", 0.0, 1.0), 3) == [0.0, 0.5, 1.0]
    assert grid_values(("choice", (32, 64)), 9) == [32, 64]


@pytest.mark.parametrize("space, message", [
    ({"nope": ("float", 0, 1)}, "no field"),
    ({"l2": ("gauss", 0, 1)}, "kind"),
    ({"l2": ("log", 0.0, 1.0)}, "low < high"),
    ({"l2": ("float", 2.0, 1.0)}, "low < high"),
    ({"l2": ("choice", ())}, "choice"),
])
def test_a_bad_search_space_is_a_config_error(space, message):
    with pytest.raises(ConfigError, match=message):
        check_space(space, get_model("ease").config_class)


def test_refit_fits_train_plus_valid_and_evaluates_test_once(cluster_csv, tmp_path):
    cfg = resolve_config("ease", str(cluster_csv))
    result = tune(cfg, TuneConfig(trials=4, refit=True), tmp_path / "t")
    run = result.refit_run
    assert run.meta["fit_on"] == "train+valid" and run.config.refit
    assert "valid" not in run.metrics  # the validation part is training data now
    assert json.loads((result.path / "metrics.json").read_text())["test"] == run.metrics["test"]
    preset = tomllib.loads((result.path / "preset.toml").read_text())
    assert preset["refit"] and preset["model"] == result.chosen.model
    assert preset["preset"]["test"] == round(run.metrics["test"]["ndcg@10"]["mean"], 6)
    assert "refit on train + validation" in (result.path / "report.html").read_text()
    # `recforge train --config chosen.toml` is the same run: same split, same figure
    assert main(["train", "ease", "--config", str(result.path / "chosen.toml"), "--out", str(tmp_path / "again")]) == 0
    again = load_run(tmp_path / "again")
    assert again.meta["split_hash"] == run.meta["split_hash"]
    assert again.metrics["test"]["ndcg@10"]["mean"] == run.metrics["test"]["ndcg@10"]["mean"]


def test_neural_trials_report_validation_curves_and_are_pruned(cluster_csv, tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = resolve_config("sasrec", str(cluster_csv), overrides=_overrides("sasrec"))
    tune(cfg, TuneConfig(trials=2, pruner="none", storage=storage), tmp_path / "t")
    study = optuna.load_study(study_name=f"sasrec-{cluster_csv.stem}", storage=storage)
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in study.trials)  # one report per epoch
    # a pruner that prunes every trial after its first epoch: every trial stops there, none completes
    monkeypatch.setattr(optuna.pruners, "MedianPruner", lambda **kw: optuna.pruners.ThresholdPruner(lower=2.0))
    with pytest.raises(DataError, match="no complete trial"):
        tune(cfg, TuneConfig(trials=2, study_name="pruned", storage=storage), tmp_path / "p")
    study = optuna.load_study(study_name="pruned", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(sorted(t.intermediate_values) == [1] for t in study.trials)


def test_two_processes_share_one_study(cluster_csv, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")  # created once, up front
    args = ["tune", "sasrec", "--data", str(cluster_csv), "--trials", "6", "--storage", storage,
            "--study-name", "shared", "--pruner", "none", *[a for o in _overrides("sasrec") for a in ("--set", o)]]
    env = {**os.environ, "RECFORGE_NO_PROGRESS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "recforge", *args, "--out", str(tmp_path / f"p{i}")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=storage)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 6 <= len(finished) <= 7  # a process checks the total after each of its trials
    assert len({t.user_attrs["pid"] for t in finished}) == 2  # both processes ran trials of the one study
    assert len({t.number for t in study.trials}) == len(study.trials)


def test_tune_cli_prints_trials_and_the_folder(cluster_csv, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["tune", "ease", "--data", str(cluster_csv), "--trials", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("complete") == 3 and "best validation ndcg@10" in printed and str(out) in printed
    about = tomllib.loads((out / "preset.toml").read_text())["preset"]
    assert about["command"] == f"recforge tune ease --data {cluster_csv} --trials 3"


def test_tune_refuses_a_refit_base_and_a_split_without_validation(cluster_csv, tmp_path):
    with pytest.raises(ConfigError, match="refit"):
        tune(resolve_config("ease", str(cluster_csv), overrides=["refit=true"]), TuneConfig(), tmp_path / "a")
    cfg = resolve_config("ease", str(cluster_csv), overrides=["split.valid=false"])
    with pytest.raises(ConfigError, match="validation"):
        tune(cfg, TuneConfig(), tmp_path / "b")


def test_tune_reads_data_with_the_reader_flags(cluster_csv, tmp_path, capsys):
    """The same --sep/--columns/... flags as train and data info: a semicolon file is tuned as written."""
    semi = tmp_path / "log.csv"
    semi.write_text(cluster_csv.read_text().replace(",", ";"))
    out = tmp_path / "study"
    assert main(["tune", "popular", "--data", str(semi), "--sep", ";", "--trials", "1", "--out", str(out)]) == 0
    assert tomllib.loads((out / "chosen.toml").read_text())["data"]["sep"] == ";"
    assert main(["tune", "popular", "--data", str(semi), "--trials", "1", "--out", str(tmp_path / "no-sep")]) != 0


def test_enqueued_settings_are_tried_first_and_recorded(cluster_csv, tmp_path, capsys):
    """--enqueue: a new study's first trials are the given settings (then the sampler's own); the command records
    them; a key that is not searched is refused before any fit."""
    out = tmp_path / "t"
    argv = ["tune", "itemknn", "--data", str(cluster_csv), "--trials", "3", "--enqueue", "k=17,shrink=3.5",
            "--enqueue", "k=40,shrink=0", "--out", str(out)]
    assert main(argv) == 0
    rows = sorted(_rows(out), key=lambda r: int(r["number"]))
    assert [(int(r["k"]), float(r["shrink"])) for r in rows[:2]] == [(17, 3.5), (40, 0.0)]
    assert (int(rows[2]["k"]), float(rows[2]["shrink"])) not in ((17, 3.5), (40, 0.0))
    about = tomllib.loads((out / "preset.toml").read_text())["preset"]
    assert about["command"].endswith("--enqueue k=17,shrink=3.5 --enqueue k=40,shrink=0")
    capsys.readouterr()
    assert main(["tune", "itemknn", "--data", str(cluster_csv), "--enqueue", "l2=5", "--out", str(tmp_path / "x")]) == 2
    assert "keys must be searched ones" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["tune", "itemknn", "--data", str(cluster_csv), "--enqueue", "k", "--out", str(tmp_path / "y")]) == 2
