"""Shipped tuned presets and `recforge train --refit / --preset`: every preset resolves, names the `recforge tune`
command that produced it, and a train run from it records the refit."""

from __future__ import annotations

import json
import tomllib

import pytest

from recforge.cli import main
from recforge.errors import ConfigError
from recforge.experiments.presets import available, preset_path, read_preset
from recforge.experiments.runs import load_run, resolve_config

SHIPPED = available("tuned")


def test_presets_are_shipped_for_the_classic_models():
    assert ("amazon-beauty", "ease") in SHIPPED
    assert {m for d, m in SHIPPED if d == "ml-100k"} >= {"ease", "itemknn", "userknn"}


@pytest.mark.parametrize(("data", "model"), SHIPPED)
def test_every_preset_resolves_and_records_its_command(data, model):
    path = preset_path("tuned", model, data)
    about = tomllib.loads(path.read_text())["preset"]
    assert about["command"].startswith(f"recforge tune {model} --data {data} ") and "--refit" in about["command"]
    assert about["metric"] == "ndcg@10" and 0 < about["test"] <= 1 and 0 < about["valid"] <= 1
    cfg = resolve_config(model, data, preset="tuned")
    assert cfg.refit and cfg.model == read_preset("tuned", model, data)["model"]
    assert resolve_config(model, data, overrides=["model.seed=3"] if "seed" in cfg.model else [],
                          preset="tuned").refit  # --set still applies on top


def test_a_missing_preset_names_the_shipped_ones(capsys):
    with pytest.raises(ConfigError, match="shipped: .*ease on amazon-beauty"):
        resolve_config("bpr", "no-such-data", preset="tuned")
    assert main(["train", "random", "--preset", "nope"]) == 2
    assert "no 'nope' preset" in capsys.readouterr().err


def test_train_refit_fits_train_plus_valid_and_records_it(cluster_csv, tmp_path):
    assert main(["train", "itemknn", "--data", str(cluster_csv), "--refit", "--out", str(tmp_path / "r")]) == 0
    assert main(["train", "itemknn", "--data", str(cluster_csv), "--out", str(tmp_path / "t")]) == 0
    refit, plain = load_run(tmp_path / "r"), load_run(tmp_path / "t")
    assert refit.config.refit and refit.meta["fit_on"] == "train+valid" and "valid" not in refit.metrics
    assert plain.meta["fit_on"] == "train" and "valid" in plain.metrics
    assert refit.meta["split"]["train"] == plain.meta["split"]["train"] + plain.meta["split"]["valid"]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["split"]["splitter"] == "leave_last_out+refit"
    assert main(["evaluate", str(tmp_path / "r")]) == 0  # the refit split is rebuilt from the config
