"""bench/recbole_side_by_side.py: the RecBole split becomes the identical recforge Split; the table renders."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

def _bench():
    spec = importlib.util.spec_from_file_location("recbole_side_by_side", ROOT / "bench" / "recbole_side_by_side.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _toy_split_json(tmp_path: Path) -> Path:
    users = {
        "u1": {"train": ["a", "b", "c"], "valid": ["d"], "test": ["a"]},  # a repeat: test item seen in train
        "u2": {"train": ["c"], "valid": ["b"], "test": ["e"]},
    }
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"users": users}), encoding="utf-8")
    return path


def test_load_split_keeps_recbole_order_and_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    split = _bench().load_split(_toy_split_json(tmp_path))
    decode_u, decode_i = split.train.user_vocab.decode, split.train.item_vocab.decode
    assert list(zip(decode_u(split.test.user), decode_i(split.test.item))) == [("u1", "a"), ("u2", "e")]
    assert list(zip(decode_u(split.valid.user), decode_i(split.valid.item))) == [("u1", "d"), ("u2", "b")]
    items, offsets = split.train.sequences()
    # offsets are indexed by dense user id; 0 is the padding user
    assert decode_i(items[offsets[1]:offsets[2]]) == ["a", "b", "c"]
    assert decode_i(items[offsets[2]:offsets[3]]) == ["c"]
    assert split.train.item_vocab is split.test.item_vocab


@pytest.mark.realdata
def test_recbole_ml100k_split_is_identical() -> None:
    """Every user's held-out items and train order come out exactly as RecBole exported them."""
    SPLIT_JSON = _bench().SPLIT_JSON  # under RECFORGE_PEERS_DIR (default ../shared/peers)
    if not SPLIT_JSON.is_file():
        pytest.skip(f"{SPLIT_JSON} absent (the peers folder is not mounted)")
    if not os.environ.get("RECFORGE_DATA_DIR"):
        pytest.skip("RECFORGE_DATA_DIR not set: the real ML-100K timestamps are needed")
    raw = json.loads(SPLIT_JSON.read_text(encoding="utf-8"))["users"]
    split = _bench().load_split()
    assert split.params["real_timestamps"] is True
    assert (len(split.train), len(split.valid), len(split.test)) == (100_000 - 2 * 943, 943, 943)
    dec_u, dec_i = split.test.user_vocab.decode, split.test.item_vocab.decode
    assert dict(zip(dec_u(split.test.user), dec_i(split.test.item))) == {u: r["test"][0] for u, r in raw.items()}
    assert dict(zip(dec_u(split.valid.user), dec_i(split.valid.item))) == {u: r["valid"][0] for u, r in raw.items()}
    items, offsets = split.train.sequences()
    for dense in (1, 101, 943):
        user = dec_u(np.array([dense]))[0]
        assert dec_i(items[offsets[dense]:offsets[dense + 1]]) == raw[user]["train"]


def test_table_reports_cpu_ratios_budget_and_missing_target() -> None:
    bench = _bench()
    curve = [{"epoch": e, "elapsed_cpu_s": 20.0 * e, "valid_ndcg@10": v, "ndcg@10": t, "recall@10": 2 * t}
             for e, v, t in ((1, 0.02, 0.01), (2, 0.05, 0.045), (3, 0.06, 0.05))]
    ours = {"cpu_to_target_s": 40.0, "curve": curve, "cpu_s_per_epoch_median": 20.0,
            "converged": {"ndcg@10": 0.05, "recall@10": 0.1, "masked_ndcg@10": 0.07, "masked_recall@10": 0.12},
            "best_epoch": 3, "epochs_run": 3, "stopped_by": "CPU time cap", "peak_rss_mb": 500.0, "load_avg_1m": 9.5}
    rb = {"cpu_epoch": 400.0, "cpu_to_quality_s": 50.0, "rss_mb": 4400.0, "batches": "2/48"}
    results = {"models": {"sasrec": {"ours": ours, "recbole_summary": rb},
                          "hstu": {"ours": {**ours, "cpu_to_target_s": None}}}}
    text = bench.table(results)
    sasrec = next(line for line in text.splitlines() if line.startswith("| sasrec"))
    assert "40 (1/1)" in sasrec  # 50 CPU-s / 40 CPU-s, rounded
    assert "0.0450 / 0.0900" in sasrec  # epochs 1-2 fit the 50 CPU-s budget; epoch 2 has the better valid metric
    assert "(1/8.8)" in sasrec  # 4400 MB / 500 MB
    hstu = next(line for line in text.splitlines() if line.startswith("| hstu"))
    assert "not reached (ItemKNN 0.0629)" in hstu
