"""The messy-file corpus (tests/data/corpus, expected outcomes in expected.toml) through the real CLI in a
subprocess: every file either loads with the counts written next to it or fails with one located line on stderr,
never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text(encoding="utf-8"))

# One interpreter runs the CLI over every file (a process per file would cost ~50 interpreter starts): it calls
# recforge's entry point exactly as the console script does and reports what escaped it, if anything.
DRIVER = r"""
import contextlib, io, json, sys, traceback
from recforge.cli.main import main
cases = json.loads(sys.stdin.read())
out = {}
for name, args in cases.items():
    err, std = io.StringIO(), io.StringIO()
    escaped = None
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            rc = main(["data", "info", name, "--format", "json", *args])
    except BaseException:
        rc, escaped = None, traceback.format_exc()
    out[name] = {"rc": rc, "stdout": std.getvalue(), "stderr": err.getvalue(), "escaped": escaped}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    cases = {name: spec.get("args", []) for name, spec in EXPECTED.items()}
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(cases), capture_output=True, text=True,
                          cwd=CORPUS, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def test_every_corpus_file_has_an_expected_outcome():
    files = {p.name for p in CORPUS.iterdir() if p.name != "expected.toml"}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file(results, name):
    spec, got = EXPECTED[name], results[name]
    assert got["escaped"] is None, got["escaped"]
    assert "Traceback" not in got["stderr"] + got["stdout"]
    if spec["outcome"] == "ok":
        assert got["rc"] == 0, got["stderr"]
        info = json.loads(got["stdout"])
        for key in ("users", "items", "interactions", "duplicate_pairs_rows"):
            if key in spec:
                assert info["stats"][key] == spec[key], key
        if "removed" in spec:
            assert info["load"]["removed"] == spec["removed"]
        if "time_kind" in spec:
            assert info["stats"]["time"]["kind"] == spec["time_kind"]
        if "time_first" in spec:
            assert info["stats"]["time"]["first"] == spec["time_first"]
    else:
        assert got["rc"] in (1, 2)
        lines = got["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), got["stderr"]
        assert re.search(spec["match"], lines[0]), lines[0]


def test_console_script_over_the_real_world_file(tmp_path):
    """The documented walk-through: the real-world file through `python -m recforge`, with and without flags."""
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
    run = [sys.executable, "-m", "recforge", "data", "info", "realworld.csv"]
    bare = subprocess.run(run, capture_output=True, text=True, cwd=CORPUS, env=env, timeout=120)
    assert bare.returncode == 1 and "Traceback" not in bare.stderr
    assert "pass --sep ';'" in bare.stderr
    flags = ["--sep", ";", "--decimal", ",", "--columns", "user=Customer,item=Product,value=Rating,time=When",
             "--format", "json"]
    ok = subprocess.run(run + flags, capture_output=True, text=True, cwd=CORPUS, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    stats = json.loads(ok.stdout)["stats"]
    # hand count: users 0042, 42 and 7; items 1001..1005; 10 rows (2 blank lines removed); (42, 1004) twice
    assert (stats["users"], stats["items"], stats["interactions"], stats["duplicate_pairs_rows"]) == (3, 5, 10, 1)
    assert stats["time"]["first"] == "2024-03-01" and stats["time"]["last"] == "2024-03-06"
    assert stats["value"] == {"min": 1.0, "max": 5.0, "distinct": 7}
