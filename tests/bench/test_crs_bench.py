"""bench/crs.py --paired-from: paired SR@15 differences added to an existing result file, per setting."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("crs_bench", ROOT / "bench" / "crs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_from_adds_the_planted_differences(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    n = 400
    base = rng.random(n)
    # a dialogue succeeds (turns > 0) below a per-policy threshold on shared draws: planted SR 0.8 / 0.6 / 0.5
    turns = {name: np.where(base < sr, 5, -1) for name, sr in (("scpr", 0.8), ("ear", 0.6), ("max-entropy", 0.5))}
    rows = [{"mode": "binary", "policy": name, "turns": t.tolist()} for name, t in turns.items()]
    rows.append({"mode": "multiple_choice", "policy": "scpr", "turns": [5] * n})  # no partner: no pair
    path = tmp_path / "crs.json"
    path.write_text(json.dumps({"rows": rows}))
    monkeypatch.setattr(sys, "argv", ["crs.py", "--paired-from", str(path)])
    _bench().main()
    paired = {(p["mode"], p["a"], p["b"]): p for p in json.loads(path.read_text())["paired"]}
    assert set(paired) == {("binary", "scpr", "ear"), ("binary", "ear", "max-entropy"),
                           ("binary", "scpr", "max-entropy")}
    truth = {k: (turns[k[1]] > 0).mean() - (turns[k[2]] > 0).mean() for k in paired}
    for key, p in paired.items():
        assert p["diff"] == pytest.approx(truth[key]) and p["ci_low"] <= p["diff"] <= p["ci_high"]
    assert paired[("binary", "scpr", "ear")]["ci_low"] > 0.1  # 0.2 planted on 400 paired dialogues
