"""Evaluation-suite speed: what beyond-accuracy metrics and statistics add to a full-ranking evaluation.

Targets: beyond-accuracy metrics + statistics over ~22k users add < 20% to evaluation time; bootstrap with
1,000 resamples over 22k users < 2 s. Runs on Amazon Beauty (22,363 users, 12,101 items, leave-last-out) from
RECFORGE_DATA_DIR. Usage:

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/eval_suite.py [--data amazon-beauty] [--repeat 3]

Prints a markdown table (median of ``--repeat`` timings per step) and writes bench/results/eval_suite.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from recforge.data.datasets import load_dataset
from recforge.data.split import leave_last_out
from recforge.evaluate.beyond import beyond_accuracy
from recforge.evaluate.evaluator import _history, evaluate
from recforge.metrics import stats
from recforge.metrics.stats import bootstrap_ci, bootstrap_cis, compare_paired
from recforge.registry import get_model

CPU: dict[str, float] = {}  # step -> median process CPU seconds (the machine is shared: wall time is inflated)


def timed(fn, repeat: int, step: str = ""):
    """(median wall seconds, last result) of ``repeat`` calls; the median CPU seconds go to CPU[step]."""
    times, cpu, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    if step:
        CPU[step] = float(np.median(cpu))
    return float(np.median(times)), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="amazon-beauty")
    ap.add_argument("--models", nargs="+", default=["popular", "itemknn"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    ds = load_dataset(args.data)
    split = leave_last_out(ds.interactions, n=1, valid=True)
    feats = ds.catalog.attributes if ds.catalog is not None else None
    hist = _history(split, "test")
    metrics = ("ndcg@10", "recall@10")
    rows, reports = [], {}
    for name in args.models:
        model = get_model(name)().fit(split.train, split.valid)
        t_eval, rep = timed(lambda m=model: evaluate(m, split, metrics=metrics, progress=False), args.repeat, f"eval {name}")
        reports[name] = rep

        def beyond(rep=rep):
            glob, per_user = beyond_accuracy(rep.top_items, rep.users, split.train, split.test, k=10, seen=hist,
                                             item_features=feats)
            cis = bootstrap_cis(np.stack(list(per_user.values()), axis=1), n_boot=1000)
            return glob, per_user, cis

        t_beyond, (glob, per_user, _) = timed(beyond, args.repeat, f"beyond {name}")
        rows.append({"model": name, "users": int(len(rep.users)), "eval_s": t_eval, "beyond_ci_s": t_beyond,
                     "ratio": t_beyond / t_eval, "ndcg@10": rep.mean("ndcg@10"),
                     **{k: float(v) for k, v in glob.items()}, **{k: float(v.mean()) for k, v in per_user.items()}})
    names = list(reports)
    t_tests, _ = timed(lambda: compare_paired({n: reports[n].per_user["ndcg@10"] for n in names}, test="wilcoxon",
                                              n_boot=1000), args.repeat, "paired tests")
    t_perm, _ = timed(lambda: compare_paired({n: reports[n].per_user["ndcg@10"] for n in names}, test="permutation",
                                             n_perm=10000, n_boot=1000), args.repeat, "permutation")
    vals = reports[names[0]].per_user["ndcg@10"]
    t_boot, _ = timed(lambda: bootstrap_ci(vals, n_boot=1000), args.repeat, "bootstrap warm")

    def cold():
        stats._cache.clear()  # no reuse of earlier resamples: the random draws are paid again
        return bootstrap_ci(vals, n_boot=1000, seed=123)

    t_cold, _ = timed(cold, args.repeat, "bootstrap cold")
    n_users = len(vals)
    print(f"\n{args.data}: {n_users} test users, {split.train.n_items} items, torch threads {torch.get_num_threads()}")
    print("| model | eval (full ranking + CIs) s | beyond-accuracy (11 metrics, ILD on attributes) + CIs s | overhead |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['eval_s']:.2f} | {r['beyond_ci_s']:.2f} | {100 * r['ratio']:.1f}% |")
    overhead = (t_tests) / np.mean([r["eval_s"] for r in rows])
    print(f"\npaired tests ({len(names)} models, Wilcoxon + paired bootstrap CI of the difference + Holm): {t_tests:.2f} s"
          f" ({100 * overhead:.1f}% of one evaluation)")
    print(f"paired permutation test (10,000 sign flips) + bootstrap diff CI: {t_perm:.2f} s")
    print(f"bootstrap_ci, 1,000 resamples over {n_users} users: {t_cold:.3f} s cold (fresh draws), "
          f"{t_boot:.3f} s reusing the evaluation's resamples")
    print("\nprocess CPU seconds per step (median):")
    for step, c in CPU.items():
        print(f"  {step}: {c:.3f}")
    out = Path(__file__).parent / "results" / "eval_suite.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"data": args.data, "users": n_users, "rows": rows, "paired_tests_s": t_tests,
                               "permutation_s": t_perm, "bootstrap_1000_s": t_boot,
                               "bootstrap_1000_cold_s": t_cold, "cpu_s": CPU}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
