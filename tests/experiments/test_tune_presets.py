"""Shipped tuned presets and `recforge train --refit / --preset`: every preset resolves, names the `recforge tune`
command that produced it, and a train run from it records the refit."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from recforge.cli import main
from recforge.errors import ConfigError
from recforge.experiments.presets import available, preset_path, read_preset
from recforge.experiments.runs import load_run, resolve_config

SHIPPED = available("tuned")
ROOT = Path(__file__).resolve().parents[2]


def test_presets_are_shipped_for_the_classic_and_sequential_models():
    assert ("amazon-beauty", "ease") in SHIPPED
    for data in ("ml-latest-small", "ml-100k"):
        assert {m for d, m in SHIPPED if d == data} >= {"ease", "itemknn", "userknn", "als",
                                                         "sasrec", "gru4rec", "bert4rec", "hstu"}, data


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


def test_the_tuning_doc_lists_exactly_the_shipped_presets_with_their_figures():
    """docs/tuning.md's preset table has one row per shipped preset (no more, no fewer), each with the validation and
    test NDCG@10 its file records, printed to 4 decimals, and the file's command is printed in the doc."""
    doc = (ROOT / "docs" / "tuning.md").read_text(encoding="utf-8")
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 6 and cells[0] in {d for d, _ in SHIPPED} | {"amazon-beauty", "ml-100k"} and "[" in cells[4]:
            rows[(cells[0], cells[1])] = cells
    assert set(rows) == set(SHIPPED)
    for (data, model), cells in rows.items():
        about = tomllib.loads(preset_path("tuned", model, data).read_text())["preset"]
        assert cells[3] == f"{about['valid']:.4f}", (data, model)
        assert cells[4].startswith(f"{about['test']:.4f} ["), (data, model)
        assert about["command"] in doc, about["command"]


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
