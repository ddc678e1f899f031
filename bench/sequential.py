"""Quality and speed of the sequential models on real data (leave-last-out, full ranking, seen items masked).

Each model is trained with early stopping on the validation item (NDCG@10), then evaluated on the test item.
Results (one JSON line per model) go to --out; a markdown row per model is logged.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/sequential.py --data amazon-beauty \
        --models sasrec hstu bert4rec gru4rec --epochs 40 --threads 2 --out bench/results/sequential-beauty.jsonl

Under ``torchrun --standalone --nproc_per_node N bench/sequential.py ...`` training is data-parallel and rank 0
evaluates and writes the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from pathlib import Path

from recforge.config import apply_overrides, from_dict, to_dict
from recforge.data.datasets import load_dataset
from recforge.data.split import leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.evaluate.slices import slice_metrics
from recforge.registry import get_model

log = logging.getLogger("bench.sequential")


def run_one(name: str, split, args: argparse.Namespace) -> dict:
    cls = get_model(name)
    base = {"train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience,
                      "threads": args.threads, "seed": args.seed, "eval_users": args.eval_users,
                      "budget_s": args.budget_min * 60}}
    cfg = from_dict(cls.config_class, apply_overrides(base, args.set))
    t0 = time.perf_counter()
    model = cls(cfg).fit(split.train, split.valid)
    fit_s = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 evaluates and reports
        return {}
    t1 = time.perf_counter()
    report = evaluate(model, split, metrics=("ndcg@10", "recall@10", "ndcg@20", "recall@20"), on="test")
    eval_s = time.perf_counter() - t1
    slices = {}
    if args.slices:  # per history-length bucket and head/tail item segment, on valid and on test
        for on, report_on, history in (("valid", None, split.train), ("test", report, split.train.concat(split.valid))):
            r = report_on or evaluate(model, split, metrics=("ndcg@10", "recall@10"), on=on, progress=False)
            per_user = {k: v for k, v in r.per_user.items() if k in ("ndcg@10", "recall@10")}
            slices[on] = slice_metrics(r.users, r.top_items, per_user, split.train, split.part(on), history)
    hist = model.train_result_.history
    train_s = [r["train_s"] for r in hist]
    return {
        "model": name,
        "data": args.data,
        "config": to_dict(cfg),
        "test": {k: v for k, v in report.metrics.items()},
        "best_epoch": model.train_result_.best_epoch,
        "best_valid_ndcg@10": model.train_result_.best_metric,
        "epochs_run": len(hist),
        "out_of_budget": model.train_result_.out_of_budget,
        "train_s_per_epoch_median": sorted(train_s)[len(train_s) // 2] if train_s else None,
        "fit_s": round(fit_s, 1),
        "test_eval_s": round(eval_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": args.threads,
        "processes": int(os.environ.get("WORLD_SIZE", "1")),
        "load_avg_1m": os.getloadavg()[0],
        **({"slices": slices} if slices else {}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="amazon-beauty")
    p.add_argument("--models", nargs="+", default=["sasrec", "hstu", "bert4rec", "gru4rec"])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--budget-min", type=float, default=0, help="training time budget per model in minutes (0 = none)")
    p.add_argument("--eval-users", type=int, default=0, help="early-stop on a sample of validation users (0 = all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], help="config overrides applied to every model, e.g. dropout=0.3")
    p.add_argument("--slices", action="store_true",
                   help="also store metrics per history-length bucket and head/tail item segment, valid and test")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = load_dataset(args.data).interactions
    split = leave_last_out(data)
    log.info("%s: %s; split %s", args.data, data, split.summary())
    for name in args.models:
        row = run_one(name, split, args)
        if not row:
            continue
        t = row["test"]
        log.info("| %s | %s | %.4f | %.4f | %s/%s | %.1f | %.0f | %.0f |", name, args.data, t["ndcg@10"]["mean"],
                 t["recall@10"]["mean"], row["best_epoch"], row["epochs_run"], row["train_s_per_epoch_median"],
                 row["fit_s"], row["peak_rss_mb"])
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
