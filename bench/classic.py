"""Classic models on real data: ML-100K and Amazon Beauty, leave-last-out, full ranking, seen items masked.

Protocol per (dataset, model), each in a fresh process so that peak RSS belongs to that model alone:
1. split leave-last-out (last event = test, the one before = validation); all interactions count as implicit;
2. tune on validation: fit on train for every grid point (only EASE's lambda has a grid by default; BPR early-stops
   on validation), keep the best NDCG@10;
3. refit on train + validation with the chosen settings (BPR: for the best epoch count) and time that fit;
4. time ``recforge.evaluate.evaluate`` on test over all users (history = train + validation, masked), 1,000-sample
   bootstrap CIs.

Usage (writes bench/results/classic.json and prints / writes the markdown table bench/results/classic.md):

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/classic.py [--datasets ml-100k amazon-beauty]
        [--models random popular itemknn userknn ease als bpr] [--ease-grid 50 100 200] [--ease-recency 1 0.7]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

METRICS = ("ndcg@10", "recall@10")
ALL_MODELS = ["random", "popular", "itemknn", "userknn", "ease", "als", "bpr"]
#: EASE lambda grids per dataset (a Beauty fit costs minutes on the shared machine, so its grid is short; an earlier
#: exploratory run gave valid NDCG@10 0.0478 at lambda=10 and 0.0519 at 50, which placed the grid; Sports and Toys,
#: the other S3-Rec Amazon sets, take Beauty's grid).
EASE_GRIDS = {"ml-100k": [50.0, 100.0, 200.0, 500.0, 1000.0], "amazon-beauty": [50.0, 100.0, 200.0],
              "amazon-sports": [50.0, 100.0, 200.0], "amazon-toys": [50.0, 100.0, 200.0]}
#: EASE recency grids (weight recency**k on the k-th most recent history item; 1 = plain EASE). Amazon reviews are
#: next-item data where the last items say most; ML-100K's rating order carries little, so it keeps plain EASE.
EASE_RECENCY = {d: [1.0, 0.9, 0.8, 0.7, 0.6, 0.5] for d in ("amazon-beauty", "amazon-sports", "amazon-toys")}


def run_one(dataset: str, name: str, grid: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    """Tune on validation, refit on train+valid, evaluate on test. Runs in its own process."""
    import torch

    torch.set_num_threads(threads)

    from recforge.config import from_dict, to_dict
    from recforge.data.datasets import load_dataset
    from recforge.data.split import Split, leave_last_out
    from recforge.evaluate.evaluator import evaluate
    from recforge.registry import get_model

    data = load_dataset(dataset).interactions
    split = leave_last_out(data, n=1, valid=True)
    cls = get_model(name)
    t0 = time.perf_counter()
    tuning = []
    # Trainer-based models always fit on train first (validation picks the epoch count); others skip a 1-point grid.
    early_stops = any(f.name == "train" for f in dataclasses.fields(cls.config_class))
    fits: dict[float, Any] = {}  # EASE's recency only changes scoring: one fit per lambda serves every recency
    for point in grid if len(grid) > 1 or early_stops else []:
        cfg = from_dict(cls.config_class, point)
        if name == "ease" and cfg.l2 in fits:
            model = copy.copy(fits[cfg.l2])
            model.config = cfg
        else:
            model = cls(cfg).fit(split.train, split.valid)
            if name == "ease":
                fits[cfg.l2] = model
        score = evaluate(model, split, metrics=("ndcg@10",), on="valid", n_boot=0, progress=False).mean("ndcg@10")
        extra = {}
        if getattr(model, "train_result_", None) is not None and model.train_result_.best_epoch:
            extra["best_epoch"] = model.train_result_.best_epoch
        tuning.append({"params": point, "valid_ndcg@10": score, **extra})
    tune_s = time.perf_counter() - t0
    best = max(tuning, key=lambda row: row["valid_ndcg@10"]) if tuning else {"params": grid[0]}
    cfg = from_dict(cls.config_class, best["params"])
    if "best_epoch" in best:  # neural models: retrain for the epoch count that validation picked
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=best["best_epoch"]))
    full = Split(train=split.train.concat(split.valid), test=split.test, name="leave_last_out+refit",
                 params=split.params)
    # Wall time and CPU time: on a shared, oversubscribed machine the CPU seconds of this (single-threaded by
    # default) process are the better estimate of what an idle machine would take.
    t0, c0 = time.perf_counter(), time.process_time()
    model = cls(cfg).fit(full.train)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    report = evaluate(model, full, metrics=METRICS, n_boot=1000, progress=False)
    eval_s, eval_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "dataset": dataset,
        "model": name,
        "config": to_dict(cfg),
        "tuning": tuning,
        "tune_s": tune_s,
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu,
        "eval_s": eval_s,
        "eval_cpu_s": eval_cpu,
        "load_avg": os.getloadavg()[0],
        "metrics": report.metrics,
        "info": report.info,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_interactions": len(data),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }


def grid_for(name: str, dataset: str, ease_grid: list[float] | None, ease_recency: list[float] | None = None
             ) -> list[dict[str, Any]]:
    """Grid points (config overrides) tried on validation."""
    if name == "ease":
        lambdas = ease_grid or EASE_GRIDS.get(dataset, [50.0, 100.0, 200.0, 500.0])
        recency = ease_recency or EASE_RECENCY.get(dataset, [1.0])
        return [{"l2": float(v), "recency": float(r)} if r != 1.0 else {"l2": float(v)}
                for v in lambdas for r in recency]
    return [{}]


def fmt_ci(m: dict[str, float]) -> str:
    return f"{m['mean']:.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}]"


def _cpu(row: dict[str, Any], key: str) -> str:
    return f" / {row[key]:.1f}" if key in row else ""


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| dataset | model | settings (chosen on valid) | NDCG@10 [95% CI] | Recall@10 [95% CI] | fit wall / CPU (s) "
        "| eval wall / CPU (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        best = max(r["tuning"], key=lambda t: t["valid_ndcg@10"]) if r["tuning"] else {"params": {}}
        chosen = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        if "l2" in r["config"] and not chosen:
            chosen = f"l2={r['config']['l2']} (fixed)"
        if "best_epoch" in best:
            chosen = (chosen + ", " if chosen else "") + f"epochs={r['config']['train']['epochs']}"
        out.append(
            f"| {r['dataset']} | {r['model']} | {chosen or 'defaults'} | {fmt_ci(r['metrics']['ndcg@10'])} | "
            f"{fmt_ci(r['metrics']['recall@10'])} | {r['fit_s']:.1f}{_cpu(r, 'fit_cpu_s')} | "
            f"{r['eval_s']:.1f}{_cpu(r, 'eval_cpu_s')} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["ml-100k", "amazon-beauty"])
    ap.add_argument("--models", nargs="+", default=ALL_MODELS)
    ap.add_argument("--ease-grid", nargs="+", type=float, default=None, help="lambda grid for every dataset")
    ap.add_argument("--ease-recency", nargs="+", type=float, default=None,
                    help="EASE recency grid for every dataset (1 = plain EASE; default: EASE_RECENCY)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch/BLAS threads per run (1 avoids thread oversubscription on a shared machine)")
    ap.add_argument("--out", default="bench/results/classic")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of an earlier run in OUT.json, replacing only the (dataset, model) pairs re-run")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # inherited by the spawned workers before they import numpy/torch
    if not os.environ.get("RECFORGE_DATA_DIR"):
        raise SystemExit("set RECFORGE_DATA_DIR to the shared data folder (e.g. ../shared/data)")
    rows = []
    for dataset in args.datasets:
        for name in args.models:
            # One fresh process per model: peak RSS then measures that model, not the ones before it.
            with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                row = pool.submit(run_one, dataset, name, grid_for(name, dataset, args.ease_grid, args.ease_recency),
                                   args.threads).result()
            rows.append(row)
            print(f"{dataset} {name}: ndcg@10 {fmt_ci(row['metrics']['ndcg@10'])} fit {row['fit_s']:.1f}s "
                  f"eval {row['eval_s']:.2f}s rss {row['peak_rss_mb']:.0f}MB", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge and out.with_suffix(".json").is_file():
        done = {(r["dataset"], r["model"]) for r in rows}
        old = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["rows"]
        rows = [r for r in old if (r["dataset"], r["model"]) not in done] + rows
        datasets = list(dict.fromkeys(r["dataset"] for r in old + rows))
        rank = {m: i for i, m in enumerate(ALL_MODELS)}
        rows.sort(key=lambda r: (datasets.index(r["dataset"]), rank.get(r["model"], len(rank)), r["model"]))
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
            "load_avg_at_end": os.getloadavg()}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str), encoding="utf-8")
    md = table(rows)
    out.with_suffix(".md").write_text(md + "\n", encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
