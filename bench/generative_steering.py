"""Preference steering of a generative retriever on MovieLens-100K (leave-last-out, full catalogue, seen items masked).

A SID table is built from the training split (cf + the catalogue's genres); two ``tiger`` (or ``tiger_decoder``)
models are trained with the same seed and budget: one with the target item's genres as preference tokens (randomly
dropped, ``preference_drop``), one without. On the test users:

- **unconditioned Recall@10 / NDCG@10** of both (bootstrap CIs, paired bootstrap of the difference): steering must not
  cost the ordinary request anything;
- for every genre g with at least ``--min-items`` items: the share of g among each user's top-10 without a preference
  and with ``--prefer genre=g`` (the same request, steered), and the lift (points).

One JSON line per seed in --out.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/generative_steering.py --data ml-100k \
        --model tiger --budget-min 4 --out bench/results/generative-steering-ml100k.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from pathlib import Path

import numpy as np

from recforge.config import apply_overrides, from_dict, to_dict
from recforge.data.datasets import load_dataset
from recforge.data.split import leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.metrics.stats import paired_bootstrap
from recforge.models.generative.semantic_ids import SidConfig, build_semantic_ids
from recforge.models.generative.tiger import Tiger, TigerConfig
from recforge.models.generative.tiger_decoder import TigerDecoder, TigerDecoderConfig

log = logging.getLogger("bench.generative_steering")
METRICS = ("recall@10", "ndcg@10")
MODELS = {"tiger": (Tiger, TigerConfig), "tiger_decoder": (TigerDecoder, TigerDecoderConfig)}


def genre_matrix(sids, group: str = "genre") -> tuple[np.ndarray, list[str]]:
    """(n_items+1, G) bool: item has genre g; and the genre names "genre=..." (from the SID table's attributes)."""
    names = list(sids.attribute_names)
    cols = [j for j, n in enumerate(names) if n.split("=", 1)[0] == group]
    dense = sids.attributes.tocsc()[:, cols].toarray() > 0
    return dense, [names[j] for j in cols]


def run_seed(args: argparse.Namespace, split, sid_dir: Path, sids, seed: int) -> dict:
    cls, cfg_cls = MODELS[args.model]
    base = {"sid": str(sid_dir), "dim": args.dim, "n_layers": args.layers, "n_heads": args.heads,
            "beam": args.beam, "max_items": 20,
            "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience,
                      "threads": 1, "seed": seed, "eval_users": args.eval_users, "budget_s": args.budget_min * 60}}
    row: dict = {"model": args.model, "data": args.data, "seed": seed, "sid_hash": sids.hash}
    reports = {}
    for arm, pref in (("steerable", "genre"), ("plain", "")):
        cfg = from_dict(cfg_cls, apply_overrides({**base, "preference": pref}, args.set))
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        model = cls(cfg).fit(split.train, split.valid)
        fit_s = time.perf_counter() - t0
        rep = evaluate(model, split, metrics=METRICS, on="test", progress=False)
        reports[arm] = rep
        row[arm] = {"config": to_dict(cfg), "fit_s": round(fit_s, 1), "epochs_run": len(model.train_result_.history),
                    "best_epoch": model.train_result_.best_epoch,
                    "curve": model.train_result_.history,
                    "test": rep.metrics, "load_avg_1m": [load0, os.getloadavg()[0]]}
        if arm == "steerable":
            steerable, base_top = model, rep.top_items
    a, b = reports["steerable"], reports["plain"]
    row["unconditioned_diff"] = {m: paired_bootstrap(a.per_user[m], b.per_user[m], seed=seed) for m in METRICS}
    has, names = genre_matrix(sids)
    genres = []
    t0 = time.perf_counter()
    for g, name in enumerate(names):
        if has[1:, g].sum() < args.min_items:
            continue
        with steerable.steer([name]):
            steered = evaluate(steerable, split, metrics=METRICS, on="test", progress=False)
        before = has[base_top, g].mean(1)  # (U,) share of the genre in each user's top-10
        after = has[steered.top_items, g].mean(1)
        genres.append({"genre": name, "items": int(has[1:, g].sum()), "share_before": float(before.mean()),
                       "share_steered": float(after.mean()), "lift_points": float(100 * (after - before).mean()),
                       "steered_recall@10": steered.metrics["recall@10"]["mean"]})
        log.info("%s: %.3f -> %.3f", name, before.mean(), after.mean())
    row["genres"] = genres
    row["mean_lift_points"] = float(np.mean([g["lift_points"] for g in genres]))
    row["min_lift_points"] = float(np.min([g["lift_points"] for g in genres]))
    row["steer_eval_s"] = round(time.perf_counter() - t0, 1)
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ml-100k")
    p.add_argument("--model", choices=tuple(MODELS), default="tiger")
    p.add_argument("--features", default="cf+attributes")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--codebook-size", type=int, default=32)
    p.add_argument("--collisions", default="dedup")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--eval-users", type=int, default=500)
    p.add_argument("--budget-min", type=float, default=4, help="training budget per model (minutes)")
    p.add_argument("--min-items", type=int, default=50, help="steer only towards genres with this many items")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--set", nargs="*", default=[], help="model overrides key=value")
    p.add_argument("--sid-dir", type=Path, default=Path("bench/out/ml100k-sid"))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ds = load_dataset(args.data)
    split = leave_last_out(ds.interactions)
    sids = build_semantic_ids(split.train, SidConfig(features=args.features, levels=args.levels,
                                                     codebook_size=args.codebook_size, collisions=args.collisions),
                              catalog=ds.catalog)
    sids.save(args.sid_dir)
    for seed in args.seeds:
        row = run_seed(args, split, args.sid_dir, sids, seed)
        log.info("%s", json.dumps(row)[:600])
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
