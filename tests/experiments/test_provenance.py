"""The reproducibility record written into every run folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from recforge.data.split import leave_last_out
from recforge.experiments.provenance import dataset_files, provenance


def test_provenance_with_split_and_config(tiny_log, tmp_path: Path):
    f = tmp_path / "a.csv"
    f.write_text("x\n")
    split = leave_last_out(tiny_log)
    rec = provenance(seed=[1, 2], data_files=[f, tmp_path / "missing.csv"], split=split, config={"seed": 1})
    assert rec["seed"] == [1, 2]
    assert rec["data_sha256"] == {str(f): hashlib.sha256(b"x\n").hexdigest()}
    assert rec["split"]["hash"] == split.hash and rec["split"]["sizes"]["test"] == len(split.test)
    assert rec["config"] == {"seed": 1}
    assert {"numpy", "torch", "python", "recforge"} <= set(rec["versions"])
    assert rec["hardware"]["cpus"] >= 1 and "memory_gb" in rec["hardware"]


def test_dataset_files(tmp_path: Path):
    f = tmp_path / "log.csv"
    f.write_text("x")
    (tmp_path / "u.data").write_text("y")
    assert dataset_files({"path": str(f)}) == [f]
    assert dataset_files({"path": str(tmp_path), "origin": "data_dir", "checksums": {"u.data": "ok", "gone": "ok"}}) == [
        tmp_path / "u.data"]
    assert dataset_files({}) == []


def test_run_json_has_the_full_record(eval_runs, cluster_csv: Path):
    meta = json.loads((eval_runs["popular"] / "run.json").read_text())
    prov = meta["provenance"]
    assert prov["data_sha256"] == {str(cluster_csv): hashlib.sha256(cluster_csv.read_bytes()).hexdigest()}
    assert prov["split"]["hash"] == meta["split_hash"]
    assert prov["config"]["model"]["name"] == "popular" and prov["seed"] == prov["config"]["seed"]
    assert {"versions", "git_commit", "hardware"} <= set(prov)
