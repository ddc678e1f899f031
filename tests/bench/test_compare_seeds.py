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


def _row(model: str, seed: int, test: float, valid: float, lr: float = 1e-3, **fields) -> str:
    """A result line with a partial config (the script completes it with the model's defaults)."""
    return json.dumps({"model": model, "config": {"dropout": 0.35, "train": {"seed": seed, "lr": lr}, **fields},
                       "test": {"ndcg@10": {"mean": test}, "recall@10": {"mean": test / 2}}, "best_valid_ndcg@10": valid})


def _run(mod, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setattr(sys, "argv", ["compare_seeds.py", *argv])
    mod.main()
    return capsys.readouterr().out


def test_pairs_on_seed_and_filters_on_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    lines = [_row("hstu", 0, 0.50, 0.60), _row("sasrec", 0, 0.40, 0.70), _row("hstu", 1, 0.30, 0.60),
             _row("sasrec", 1, 0.35, 0.45), _row("sasrec", 2, 0.99, 0.99),  # seed 2 has no hstu: left out
             _row("hstu", 0, 0.01, 0.01, lr=2e-3)]  # another setting: filtered out
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = _run(_bench(), [str(path), "--a", "hstu", "--b", "sasrec", "--where", "train.lr=1e-3", "dropout=0.35"],
               monkeypatch, capsys)
    assert "seeds [0, 1] (2)" in out
    assert "| A: hstu | 0.60000 | 0.4000" in out and "| B: sasrec | 0.57500 | 0.3750" in out
    assert "test A - B per seed: +0.1000, -0.0500; mean +0.0250" in out and "A ahead in 1/2" in out
    assert "valid A - B per seed: -0.1000, +0.1500; mean +0.0250" in out
    out = _run(_bench(), [str(path), "--a", "hstu", "--b", "sasrec", "--metric", "recall@10", "--where",
                          "train.lr=1e-3"], monkeypatch, capsys)  # no validation figure for this metric
    assert "| A: hstu | — | 0.2000" in out and "valid A - B" not in out and "test A - B per seed: +0.0500" in out


def test_two_rows_for_one_seed_are_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(_row("hstu", 0, 0.5, 0.5) + "\n" + _row("sasrec", 0, 0.4, 0.4) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="two result rows for seed 0"):
        _run(_bench(), [str(path), str(path), "--a", "hstu", "--b", "sasrec"], monkeypatch, capsys)
    with pytest.raises(SystemExit, match="no seed has rows for both"):
        _run(_bench(), [str(path), "--a", "hstu", "--b", "gru4rec"], monkeypatch, capsys)
    with pytest.raises(SystemExit, match="unknown config key.*train.lrr"):
        _run(_bench(), [str(path), "--a", "hstu", "--b", "sasrec", "--where", "train.lrr=0.1"], monkeypatch, capsys)


def test_one_model_two_settings_and_old_rows_take_new_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.jsonl"
    lines = [_row("hstu", 0, 0.50, 0.60, linear_dim=256), _row("hstu", 0, 0.40, 0.70),  # the old row: no field
             _row("hstu", 1, 0.45, 0.60, linear_dim=256), _row("hstu", 1, 0.30, 0.50, linear_dim=0)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = _run(_bench(), [str(path), "--a", "hstu", "--a-where", "linear_dim=256", "--b", "hstu",
                          "--b-where", "linear_dim=0"], monkeypatch, capsys)
    assert "seeds [0, 1] (2)" in out and "test A - B per seed: +0.1000, +0.1500" in out and "A ahead in 2/2" in out


def test_one_seed_prints_no_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(_row("hstu", 0, 0.5, 0.6) + "\n" + _row("sasrec", 0, 0.4, 0.7) + "\n", encoding="utf-8")
    out = _run(_bench(), [str(path), "--a", "hstu", "--b", "sasrec"], monkeypatch, capsys)
    assert "| A: hstu | 0.60000 | 0.5000 [no CI: one seed] | — |" in out
    assert "test A - B per seed: +0.1000; mean +0.1000 [no CI: one seed]; A ahead in 1/1" in out
    assert "nan" not in out


def test_plot_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join([_row("hstu", 0, 0.5, 0.6), _row("sasrec", 0, 0.4, 0.7), _row("hstu", 1, 0.3, 0.6),
                               _row("sasrec", 1, 0.35, 0.45)]) + "\n", encoding="utf-8")
    png = tmp_path / "img" / "cmp.png"
    out = _run(_bench(), [str(path), "--a", "hstu", "--b", "sasrec", "--plot", str(png)], monkeypatch, capsys)
    assert f"plot written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
