"""bench/generative.py: the seed-paired compare and the curves plot, on planted per-user values and result rows."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def _bench():
    spec = importlib.util.spec_from_file_location("generative_bench", ROOT / "bench" / "generative.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(mod, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["generative.py", *argv])
    mod.main()


def _per_user(path: Path, users: np.ndarray, recall: np.ndarray) -> Path:
    np.savez(path, users=users, **{"recall@10": recall, "ndcg@10": recall / 2})
    return path


def test_compare_pairs_seeds_by_position_and_pools_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = np.arange(400)
    rng = np.random.default_rng(0)
    a, b = [], []
    for seed, lift in enumerate((0.10, 0.20, 0.30)):  # A ahead by a planted lift in every seed
        base = rng.random(400)
        b.append(_per_user(tmp_path / f"b{seed}.npz", users, base))
        noise = rng.normal(0, 0.01, 400)
        a.append(_per_user(tmp_path / f"a{seed}.npz", users, base + lift + noise - noise.mean()))
    out = tmp_path / "paired.jsonl"
    _run(_bench(), ["compare", "--a", *map(str, a), "--b", *map(str, b), "--out", str(out)], monkeypatch)
    row = json.loads(out.read_text())
    rec = row["recall@10"]
    assert row["seeds"] == 3 and row["users"] == 400 and rec["a_ahead_seeds"] == 3
    assert [round(s["a"] - s["b"], 6) for s in rec["per_seed"]] == [0.1, 0.2, 0.3]
    assert rec["seed_diff"]["mean"] == pytest.approx(0.2) and rec["seed_diff"]["ci_low"] < 0.2 < rec["seed_diff"]["ci_high"]
    assert rec["diff"] == pytest.approx(0.2) and rec["ci_low"] < 0.2 < rec["ci_high"] and rec["t_test_p"] < 1e-6
    assert row["ndcg@10"]["diff"] == pytest.approx(0.1)


def test_compare_refuses_unpaired_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _per_user(tmp_path / "a.npz", np.arange(5), np.ones(5))
    b = _per_user(tmp_path / "b.npz", np.arange(1, 6), np.ones(5))
    with pytest.raises(SystemExit, match="other test users"):
        _run(_bench(), ["compare", "--a", str(a), "--b", str(b)], monkeypatch)
    with pytest.raises(SystemExit, match="2 files for A but 1 for B"):
        _run(_bench(), ["compare", "--a", str(a), str(a), "--b", str(a)], monkeypatch)


def test_curves_draws_every_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    curve = [{"epoch": e, "train_s": 10.0, "valid_ndcg@10": 0.01 * e} for e in (1, 2, 3)]
    rows = [{"model": "tiger_decoder", "valid_decoding": "projection", "fit_s": 30.0, "fit_cpu_s": 15.0, "curve": curve},
            {"model": "sasrec", "fit_s": 30.0, "fit_cpu_s": 30.0, "curve": curve}]
    results = tmp_path / "r.jsonl"
    results.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    plot = tmp_path / "curves.png"
    _run(_bench(), ["curves", str(results), "--plot", str(plot)], monkeypatch)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
