"""PersonalLoRA on real data: text_sasrec with ``personal_lora_experts = 0`` (off) against K experts of rank r.

Leave-last-out split (validation = each user's second-to-last event, test = the last), full ranking over all items,
seen items masked; NDCG@10 and Recall@10 with bootstrap 95 % CIs from the evaluator, and per seed the paired
bootstrap CI of the NDCG@10 and Recall@10 differences (experts - off) with a paired Wilcoxon test. Sequence and
training settings are ``bench/text_cold.py``'s (``SEQ``, ``TRAIN``: early stopping on validation NDCG@10, the same
rule for both arms). Choices on validation only, seed 0: the item tower among ``--towers`` (with experts off), then
K among ``--experts``; the seed-0 fits of the chosen configurations are the test fits of seed 0 (a fit is fixed by
its configuration and seed). Torch runs on one thread; the 1-minute load average is recorded next to each fit.

    RECFORGE_DATA_DIR=... python bench/text_personal_lora.py --data ml-100k --embedder minilm

Writes ``bench/results/text_personal_lora_<data>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from text_cold import SEQ, TRAIN

from recforge.data.datasets import load_dataset
from recforge.data.split import leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.metrics.stats import paired_bootstrap, wilcoxon_test
from recforge.models.text_sasrec import TextSASRec
from recforge.text import bind_items

METRICS = ("ndcg@10", "recall@10")
RESULTS = Path(__file__).parent / "results"


def fit(ds, split, tower: str, embedder: str, experts: int, rank: int, seed: int, budget_s: float):
    """text_sasrec early-stopped on validation; returns the model and a record of the fit."""
    model = TextSASRec(**SEQ, tower=tower, embedder={"name": embedder}, personal_lora_experts=experts,
                       personal_lora_rank=rank, train={**TRAIN, "seed": seed, "budget_s": budget_s})
    bind_items(model, ds.catalog, split.train)
    start, load = time.perf_counter(), os.getloadavg()[0]
    model.fit(split.train, split.valid)
    r = model.train_result_
    info = {"tower": tower, "experts": experts, "rank": rank, "seed": seed, "best_epoch": r.best_epoch,
            "epochs": len(r.history), "out_of_budget": r.out_of_budget, "valid_ndcg@10": round(r.best_metric, 5),
            "fit_s": round(time.perf_counter() - start, 1), "load_avg_1m": [round(load, 1),
                                                                            round(os.getloadavg()[0], 1)]}
    print("fit", json.dumps(info), flush=True)
    return model, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--embedder", default="minilm", help="minilm (needs the [text] extra) or hashing")
    ap.add_argument("--towers", default="text,text+id", help="item towers compared on validation (seed 0)")
    ap.add_argument("--experts", default="4", help="PersonalLoRA experts compared on validation (seed 0)")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget-s", type=float, default=600.0, help="seconds per fit (stops after the epoch past it)")
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    ds = load_dataset(args.data)
    split = leave_last_out(ds.interactions)
    command = "python bench/text_personal_lora.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    # validation choices with seed 0; the chosen fits are kept as seed 0's test fits
    search, kept = [], {}
    for tower in args.towers.split(","):
        kept[(tower, 0)] = fit(ds, split, tower, args.embedder, 0, args.rank, 0, args.budget_s)
        search.append(kept[(tower, 0)][1])
    tower = max(args.towers.split(","), key=lambda t: kept[(t, 0)][1]["valid_ndcg@10"])
    for k in [int(k) for k in args.experts.split(",")]:
        kept[(tower, k)] = fit(ds, split, tower, args.embedder, k, args.rank, 0, args.budget_s)
        search.append(kept[(tower, k)][1])
    experts = max((k for t, k in kept if t == tower and k), key=lambda k: kept[(tower, k)][1]["valid_ndcg@10"])
    print(f"chosen on validation: tower {tower}, experts {experts}", flush=True)

    rows = []
    for seed in seeds:
        reports = {}
        for k in (0, experts):
            model, info = kept[(tower, k)] if seed == 0 else fit(ds, split, tower, args.embedder, k, args.rank, seed,
                                                                  args.budget_s)
            reports[k] = evaluate(model, split, metrics=METRICS, n_boot=args.n_boot, progress=False)
            row = {**info, "test": reports[k].metrics}
            if k:
                row["vs_off"] = {m: {**paired_bootstrap(reports[k].per_user[m], reports[0].per_user[m],
                                                        n_boot=args.n_boot),
                                     "wilcoxon_p": wilcoxon_test(reports[k].per_user[m], reports[0].per_user[m])[
                                         "p_value"]} for m in METRICS}
            print("test", json.dumps(row), flush=True)
            rows.append(row)

    means = {k: {m: float(np.mean([r["test"][m]["mean"] for r in rows if r["experts"] == k])) for m in METRICS}
             for k in (0, experts)}
    out = RESULTS / f"text_personal_lora_{args.data}.json"
    out.write_text(json.dumps({"command": command, "data": args.data, "embedder": args.embedder, "seq": SEQ,
                               "train": TRAIN, "tower": tower, "experts": experts, "rank": args.rank,
                               "search": search, "rows": rows, "mean_over_seeds": means, "torch_threads": 1,
                               "cpus": os.cpu_count()}, indent=1))
    print("\n| PersonalLoRA | seed | test NDCG@10 | test Recall@10 | NDCG@10 diff (p) | Recall@10 diff (p) | "
          "best epoch | fit s (load) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        m, d = r["test"], r.get("vs_off")
        diffs = [f"{d[x]['diff']:+.4f} [{d[x]['ci_low']:+.4f}, {d[x]['ci_high']:+.4f}] ({d[x]['wilcoxon_p']:.2f})"
                 if d else "" for x in METRICS]
        label = f"{r['experts']} x rank {r['rank']}" if r["experts"] else "off"
        print(f"| {label} | {r['seed']} | {m['ndcg@10']['mean']:.4f} [{m['ndcg@10']['ci_low']:.4f}, "
              f"{m['ndcg@10']['ci_high']:.4f}] | {m['recall@10']['mean']:.4f} [{m['recall@10']['ci_low']:.4f}, "
              f"{m['recall@10']['ci_high']:.4f}] | {diffs[0]} | {diffs[1]} | {r['best_epoch']} | {r['fit_s']} "
              f"({r['load_avg_1m'][0]}-{r['load_avg_1m'][1]}) |")
    for k, m in means.items():
        print(f"mean over seeds, experts {k}: NDCG@10 {m['ndcg@10']:.4f}, Recall@10 {m['recall@10']:.4f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
