"""The common run folder: config, metrics, provenance, artifact; nothing half-made left after a failure."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from recforge.errors import ConfigError
from recforge.experiments.folder import RunFolder


@dataclass(frozen=True)
class _Cfg:
    alpha: float = 0.5


def test_a_finished_run_has_config_metrics_and_provenance(tmp_path):
    data = tmp_path / "log.csv"
    data.write_text("u,i\n1,2\n")
    with RunFolder.create(tmp_path / "run", kind="bandit-simulate", name="linucb", config=_Cfg(), seed=3) as run:
        run.write_metrics({"test": {"reward": {"mean": np.float64(0.25), "ci_low": 0.2, "ci_high": 0.3}}})
        run.finish(data_files=[data], extra={"timings": {"fit_s": 1.0}})
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["kind"] == "bandit-simulate" and meta["name"] == "linucb"
    assert meta["provenance"]["seed"] == 3 and meta["provenance"]["config"] == {"alpha": 0.5}
    assert str(data) in meta["provenance"]["data_sha256"]
    assert {"versions", "git_commit", "hardware"} <= set(meta["provenance"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["reward"]["mean"] == 0.25
    assert "alpha = 0.5" in (tmp_path / "run" / "config.toml").read_text()


def test_a_failed_run_leaves_no_half_made_folder(tmp_path):
    with pytest.raises(RuntimeError), RunFolder.create(tmp_path / "run", kind="crs", name="ear", config={}):
        raise RuntimeError("boom")
    assert not (tmp_path / "run").exists()


def test_a_failed_run_keeps_a_saved_artifact_and_an_existing_folder(tmp_path):
    with pytest.raises(RuntimeError), RunFolder.create(tmp_path / "a", kind="crs", name="ear", config={}) as run:
        run.artifact_dir.mkdir()
        raise RuntimeError("boom")
    assert (tmp_path / "a" / "artifact").is_dir()
    (tmp_path / "b").mkdir()
    with pytest.raises(RuntimeError), RunFolder.create(tmp_path / "b", kind="crs", name="ear", config={}):
        raise RuntimeError("boom")
    assert (tmp_path / "b").is_dir()


def test_a_run_is_written_aside_and_replaces_an_existing_run_only_when_it_succeeds(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text("old = 1\n")
    with pytest.raises(RuntimeError), RunFolder.create(out, kind="crs", name="ear", config={"new": 2}) as run:
        assert run.path != out and run.out == out
        raise RuntimeError("boom")
    assert (out / "config.toml").read_text() == "old = 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left behind
    with RunFolder.create(out, kind="crs", name="ear", config={"new": 2}) as run:
        run.finish()
    assert "new = 2" in (out / "config.toml").read_text() and (out / "run.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_in_place_writes_into_the_existing_run(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    with RunFolder.create(out, kind="recommender", name="sasrec", config={}, in_place=True) as run:
        assert run.path == out and run.checkpoint_dir == out / "checkpoints"
        run.finish()
    assert (out / "run.json").is_file()


def test_a_file_is_not_a_run_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError):
        RunFolder.create(tmp_path / "f", kind="crs", name="ear", config={})
