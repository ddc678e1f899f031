"""bench/compare_seeds.py: rows pair on the seed, filters select the setting, duplicates are refused."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("compare_seeds", ROOT / "bench" / "compare_seeds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(model: str, seed: int, test: float, valid: float, lr: float = 1e-3) -> str:
    return json.dumps({"model": model, "config": {"dropout": 0.35, "train": {"seed": seed, "lr": lr}},
                       "test": {"ndcg@10": {"mean": test}}, "best_valid_ndcg@10": valid})


def _run(mod, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setattr(sys, "argv", ["compare_seeds.py", *argv])
    mod.main()
    return capsys.readouterr().out


def test_pairs_on_seed_and_filters_on_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    lines = [_row("a", 0, 0.50, 0.60), _row("b", 0, 0.40, 0.70), _row("a", 1, 0.30, 0.60),
             _row("b", 1, 0.35, 0.45), _row("b", 2, 0.99, 0.99),  # seed 2 has no "a": left out
             _row("a", 0, 0.01, 0.01, lr=2e-3)]  # another setting: filtered out
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = _run(_bench(), [str(path), "--a", "a", "--b", "b", "--where", "train.lr=1e-3", "dropout=0.35"],
               monkeypatch, capsys)
    assert "seeds [0, 1] (2)" in out
    assert "| a | 0.60000 | 0.4000" in out and "| b | 0.57500 | 0.3750" in out
    assert "test a - b per seed: +0.1000, -0.0500; mean +0.0250" in out and "a ahead in 1/2" in out
    assert "valid a - b per seed: -0.1000, +0.1500; mean +0.0250" in out


def test_two_rows_for_one_seed_are_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(_row("a", 0, 0.5, 0.5) + "\n" + _row("b", 0, 0.4, 0.4) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="two result rows for seed 0"):
        _run(_bench(), [str(path), str(path), "--a", "a", "--b", "b"], monkeypatch, capsys)
    with pytest.raises(SystemExit, match="no seed has rows for both"):
        _run(_bench(), [str(path), "--a", "a", "--b", "c"], monkeypatch, capsys)
