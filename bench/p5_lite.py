"""p5_lite on ML-100K (leave-last-out, full ranking, seen items masked) beside popularity, in one run.

    python bench/p5_lite.py --budget 600 --seed 0

Writes bench/results/p5_lite_ml100k_seed<S>.json: HR@10 / NDCG@10 with bootstrap CIs for both models, the ratio,
fit seconds, the epoch chosen on validation, the rating family's test RMSE (against the training mean), and the
load average before and after (2 shared CPU cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from recforge.data.datasets import load_dataset
from recforge.data.split import leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.models.p5_lite import P5Lite
from recforge.models.popular import MostPopular
from recforge.train.trainer import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds (stops after the epoch past it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--last-positions", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    load_before = os.getloadavg()
    split = leave_last_out(load_dataset("ml-100k").interactions)
    metrics = ("hit@10", "ndcg@10")
    pop = MostPopular().fit(split.train)
    model = P5Lite(dim=args.dim, max_len=args.max_len, last_positions=args.last_positions, seed=args.seed,
                   train=TrainConfig(
        epochs=args.epochs, batch_size=256, lr=2e-3, patience=3, budget_s=args.budget, seed=args.seed, threads=1,
        eval_metric="hit@10", device=args.device))
    t0 = time.perf_counter()
    model.fit(split.train, split.valid)
    fit_s = time.perf_counter() - t0
    ours, theirs = evaluate(model, split, metrics, n_boot=1000), evaluate(pop, split, metrics, n_boot=1000)
    # the rating family on the test targets (each test item's rating given the training history)
    test = split.test
    hists = [model.history(int(u)) for u in test.user]
    pred = model.predict_rating(hists, test.item)
    rmse = float(np.sqrt(np.mean((pred - test.value) ** 2)))
    mean_rmse = float(np.sqrt(np.mean((split.train.value.mean() - test.value) ** 2)))
    res = model.train_result_
    out = {"dataset": "ml-100k", "split": "leave_last_out", "seed": args.seed, "budget_s": args.budget,
           "config": {"dim": args.dim, "max_len": args.max_len, "last_positions": args.last_positions,
                      "epochs": args.epochs, "device": args.device},
           "p5_lite": ours.metrics, "popular": theirs.metrics,
           "hr10_ratio": ours.metrics["hit@10"]["mean"] / theirs.metrics["hit@10"]["mean"],
           "fit_s": round(fit_s, 1), "epochs_run": len(res.history), "best_epoch": res.best_epoch,
           "valid_best_hit@10": res.best_metric, "rating_rmse": rmse, "train_mean_rmse": mean_rmse,
           "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    path = Path(__file__).parent / "results" / f"p5_lite_ml100k_seed{args.seed}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
