"""Aligning CF embeddings with item text: rlmrec (BPR-MF or LightGCN) with aux = none | contrastive | generative | ilm.

Leave-last-out split (validation = each user's second-to-last event, test = the last), full ranking over all items,
seen items masked; NDCG@10 and Recall@10 with bootstrap 95 % CIs, and the paired bootstrap difference of NDCG@10
against ``aux = none`` for the same seed. Item text vectors: the ``kv`` sentences through ``--embedder`` (cached).

Hyper-parameters are chosen on validation only: for each objective, ``aux_weight`` on the grid ``--weights`` with
seed 0 (best validation NDCG@10 of the early-stopped fit); then every chosen configuration is fitted with each of
``--seeds`` and evaluated once on test. The two stages can run as two processes (each under the machine's per-run
time limit): ``--search-only`` writes the validation search to ``..._search.json``; ``--chosen aux=weight,...`` skips
the search and takes the weights from it. The BPR part is fixed (``BASE``) and identical for every row. Torch runs on
one thread; the 1-minute load average is recorded next to every fit's time (the machine is shared).

``--backbone lightgcn`` runs the same protocol on rlmrec's LightGCN backbone (``aux = none`` is plain LightGCN). Its
propagation depth, learning rate and L2 weight are chosen first, on validation with seed 0 and ``aux = none``, from
the product of ``--layers``, ``--lrs`` and ``--regs`` (single values skip that search); the aux weights are then
searched with the chosen settings. With ``--aux ''`` and ``--search-only`` only the LightGCN settings are searched
(``..._lightgcn_layers_search.json``). Results go to ``..._lightgcn.json``.

    RECFORGE_DATA_DIR=... python bench/text_align.py --data ml-100k --embedder minilm
    RECFORGE_DATA_DIR=... python bench/text_align.py --data ml-100k --embedder minilm --search-only
    RECFORGE_DATA_DIR=... python bench/text_align.py --data ml-100k --embedder minilm --post \
        --chosen contrastive=0.01,generative=0.1,ilm=0.1
    python bench/text_align.py --data ml-latest-small --embedder hashing --seeds 0
    RECFORGE_DATA_DIR=... python bench/text_align.py --data ml-100k --embedder minilm --backbone lightgcn \
        --aux '' --layers 1,2,3 --lrs 1e-3,5e-3 --regs 1e-4,1e-3 --search-only

Writes ``bench/results/text_align_<data>_<embedder>[_lightgcn].json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from recforge.data.datasets import load_dataset
from recforge.data.split import leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.metrics.stats import paired_bootstrap
from recforge.models.rlmrec import RLMRec
from recforge.text import bind_items

METRICS = ("ndcg@10", "recall@10")
RESULTS = Path(__file__).parent / "results"
#: the BPR-MF part shared by every row
BASE = {"factors": 64, "reg": 1e-4, "temperature": 0.2, "align_users": True}
TRAIN = {"epochs": 100, "batch_size": 4096, "lr": 5e-3, "clip": 0.0, "patience": 5, "threads": 1}


def fit(split, catalog, embedder: dict, aux: str, weight: float, seed: int, extra: dict,
        cf: dict | None = None) -> tuple[RLMRec, dict]:
    """One early-stopped fit; ``cf`` holds the backbone's settings over ``BASE`` (empty: BPR-MF; ``lr`` goes to the
    trainer), ``extra`` other model fields."""
    extra = {**(cf or {}), **extra}
    fields = {**BASE, **extra}
    lr = fields.pop("lr", TRAIN["lr"])
    model = RLMRec(**fields, aux=aux, aux_weight=weight, embedder=embedder, train={**TRAIN, "lr": lr, "seed": seed})
    if model.config.reads_text:
        bind_items(model, catalog, split.train)
    start, load = time.perf_counter(), os.getloadavg()[0]
    model.fit(split.train, split.valid)
    result = model.train_result_
    info = {"aux": aux, "aux_weight": weight, "seed": seed, **extra, "fit_s": round(time.perf_counter() - start, 1),
            "load_avg_1m": [round(load, 1), round(os.getloadavg()[0], 1)], "best_epoch": result.best_epoch,
            "valid_ndcg@10": result.best_metric, "mix": model.mix_}
    return model, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--embedder", default="minilm", help="minilm (needs the [text] extra) or hashing")
    ap.add_argument("--aux", default="contrastive,generative,ilm", help="objectives searched; '' for none")
    ap.add_argument("--weights", default="0.01,0.1,1.0", help="aux_weight grid searched on validation (seed 0)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--post", action="store_true", help="also a row with Molar user post-alignment (aux=none)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--search-only", action="store_true", help="only the validation search (writes ..._search.json)")
    ap.add_argument("--chosen", default="", help="aux=weight,... chosen by an earlier search: skip the search")
    ap.add_argument("--backbone", default="mf", choices=("mf", "lightgcn"))
    ap.add_argument("--layers", default="1,2,3",
                    help="LightGCN depths searched on validation with aux none (seed 0); one value: no search")
    ap.add_argument("--lrs", default="5e-3", help="LightGCN learning rates searched with --layers")
    ap.add_argument("--regs", default="1e-4", help="LightGCN L2 weights searched with --layers")
    ap.add_argument("--suffix", default="", help="appended to the result file's name (e.g. an extension of a grid)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    weights = [float(w) for w in args.weights.split(",")]
    embedder = {"name": args.embedder}
    ds = load_dataset(args.data)
    split = leave_last_out(ds.interactions)
    print(f"{args.data}: {split.train.n_users} users, {split.train.n_items} items, {len(split.train)} training events",
          flush=True)

    search = []
    cf: dict = {}
    tag = ("" if args.backbone == "mf" else f"_{args.backbone}") + (f"_{args.suffix}" if args.suffix else "")
    if args.backbone == "lightgcn":
        grid = [{"backbone": "lightgcn", "layers": int(k), "lr": float(lr), "reg": float(reg)}
                for k in args.layers.split(",") for lr in args.lrs.split(",") for reg in args.regs.split(",")]
        cf = grid[0]
        if len(grid) > 1:
            trials = []
            for point in grid:
                _, info = fit(split, ds.catalog, embedder, "none", 0.0, 0, {}, point)
                print("valid", json.dumps(info), flush=True)
                trials.append(info)
            search += trials
            best = max(trials, key=lambda r: r["valid_ndcg@10"])
            cf = {k: best[k] for k in grid[0]}
            print(f"LightGCN settings chosen on validation: {cf}", flush=True)
    chosen: list[tuple[str, float, dict]] = [("none", 0.0, {})]
    given = dict(pair.split("=") for pair in args.chosen.split(",")) if args.chosen else {}
    chosen += [(aux, float(w), {}) for aux, w in given.items()]
    command = "python bench/text_align.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    search_aux = [] if given else [a for a in args.aux.split(",") if a]
    for aux in search_aux:
        trials = []
        for w in weights:
            _, info = fit(split, ds.catalog, embedder, aux, w, 0, {}, cf)
            print("valid", json.dumps(info), flush=True)
            trials.append(info)
        search += trials
        best = max(trials, key=lambda r: r["valid_ndcg@10"])
        chosen.append((aux, best["aux_weight"], {}))
    if args.search_only:
        stage = "" if search_aux else "_layers"  # a search of the LightGCN settings alone
        out = RESULTS / f"text_align_{args.data}_{args.embedder}{tag}{stage}_search.json"
        out.write_text(json.dumps({"command": command, "data": args.data, "embedder": args.embedder,
                                   "base": {**BASE, **cf},
                                   "train": TRAIN, "weights": weights, "search": search,
                                   "chosen": {**cf, **{aux: w for aux, w, _ in chosen[1:]}}}, indent=1))
        print(f"chosen on validation: {cf} {chosen[1:]}; wrote {out}")
        return 0
    if args.post:
        chosen.append(("none", 0.0, {"user_align": "post"}))

    rows = []
    for seed in seeds:
        reports = {}
        for aux, weight, extra in chosen:
            model, info = fit(split, ds.catalog, embedder, aux, weight, seed, extra, cf)
            report = evaluate(model, split, metrics=METRICS, n_boot=args.n_boot, progress=False)
            label = aux + (" + post" if extra else "")
            reports[label] = report
            row = {"label": label, **info, "test": report.metrics}
            if label != "none":
                row["ndcg@10_vs_none"] = paired_bootstrap(report.per_user["ndcg@10"],
                                                          reports["none"].per_user["ndcg@10"], n_boot=args.n_boot)
            print("test", json.dumps(row), flush=True)
            rows.append(row)

    out = RESULTS / f"text_align_{args.data}_{args.embedder}{tag}.json"
    out.write_text(json.dumps({
        "command": command, "data": args.data, "embedder": args.embedder, "base": {**BASE, **cf}, "train": TRAIN,
        "weights": weights,
        "search": search, "rows": rows, "torch_threads": 1, "cpus": os.cpu_count()}, indent=1))
    print("\n| objective (aux_weight) | seed | test NDCG@10 | test Recall@10 | NDCG@10 - none | fit s (load) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        m = r["test"]
        diff = r.get("ndcg@10_vs_none")
        d = f"{diff['diff']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]" if diff else ""
        print(f"| {r['label']} ({r['aux_weight']:g}) | {r['seed']} | {m['ndcg@10']['mean']:.4f} "
              f"[{m['ndcg@10']['ci_low']:.4f}, {m['ndcg@10']['ci_high']:.4f}] | {m['recall@10']['mean']:.4f} "
              f"[{m['recall@10']['ci_low']:.4f}, {m['recall@10']['ci_high']:.4f}] | {d} | {r['fit_s']} "
              f"({r['load_avg_1m'][0]}-{r['load_avg_1m'][1]}) |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
