"""Generative retrieval over semantic IDs on real data (leave-last-out, full catalogue, seen items masked).

Two stages, one JSON line per result in --out:

``sids``: semantic-ID tables for each (features, tokenizer, collisions) asked; build time, collisions before/after,
largest group, codes used per level, prefix coherence vs random pairs.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/generative.py sids --data amazon-beauty \
        --features cf cf+attributes --tokenizers rkmeans balanced-rkmeans --collisions uniform dedup \
        --out bench/results/generative-beauty-sids.jsonl

``train``: tiger_decoder trained within a wall-clock budget (early stopping on sampled validation users), then on the
test item: Recall/NDCG@10 with bootstrap CIs by beam search, the beam-decoding time for every test user, the
projection head (when trained with ``head=projection``) on the same model, and beam vs exact agreement on a sample.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/generative.py train --data amazon-beauty \
        --sid bench/out/beauty-sid --budget-min 12 --set head=projection --out bench/results/generative-beauty.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import time
from pathlib import Path

import numpy as np

from recforge.config import apply_overrides, from_dict, to_dict
from recforge.data.datasets import load_dataset
from recforge.data.jagged import gather_jagged
from recforge.data.split import leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.models.generative.inspect import inspect_sids
from recforge.models.generative.semantic_ids import SidConfig, build_semantic_ids
from recforge.models.generative.tiger_decoder import TigerDecoder, TigerDecoderConfig
from recforge.models.rank import mask_seen, top_k

log = logging.getLogger("bench.generative")
METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def write(out: Path | None, row: dict) -> None:
    log.info("%s", json.dumps(row)[:400])
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def stage_sids(args: argparse.Namespace) -> None:
    ds = load_dataset(args.data)
    split = leave_last_out(ds.interactions)
    for features in args.features:
        for tok in args.tokenizers:
            for coll in args.collisions:
                cfg = SidConfig(features=features, tokenizer=tok, collisions=coll, levels=args.levels,
                                codebook_size=args.codebook_size, epochs=args.tokenizer_epochs)
                load0 = os.getloadavg()[0]
                try:
                    sids = build_semantic_ids(split.train, cfg, catalog=ds.catalog)
                except Exception as exc:  # a policy that cannot separate the items is a result, not a crash
                    write(args.out, {"data": args.data, "config": to_dict(cfg), "error": str(exc)})
                    continue
                rep = inspect_sids(sids)
                if args.save and (features, tok, coll) == (args.features[0], args.tokenizers[0], args.collisions[0]):
                    sids.save(args.save)
                write(args.out, {"data": args.data, **rep, "load_avg_1m": [load0, os.getloadavg()[0]]})


def _agreement(model: TigerDecoder, split, users: np.ndarray, k: int = 10) -> dict:
    """Recall@k of beam and of exact decoding on the same test users, and the overlap of their top-k lists."""
    hist = split.train.concat(split.valid)
    items, offsets = hist.sequences()
    jag = gather_jagged(items, offsets, users)
    seen = hist.to_csr()[users]
    out = {}
    for mode in ("beam", "exact"):
        model.config = dataclasses.replace(model.config, decoding=mode)
        t0 = time.perf_counter()
        scores = model.score_histories(jag).clone()
        secs = time.perf_counter() - t0
        mask_seen(scores, seen)
        out[mode] = (top_k(scores, k).items.numpy(), secs)
    test = split.test
    target = np.zeros(split.train.n_users + 1, np.int64)
    target[test.user] = test.item
    res = {}
    for mode, (top, secs) in out.items():
        res[f"{mode}_recall@{k}"] = float((top == target[users][:, None]).any(1).mean())
        res[f"{mode}_seconds"] = round(secs, 2)
    res["topk_overlap"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(out["beam"][0], out["exact"][0])]))
    res["users"] = len(users)
    model.config = dataclasses.replace(model.config, decoding="beam")
    return res


def stage_train(args: argparse.Namespace) -> None:
    ds = load_dataset(args.data)
    split = leave_last_out(ds.interactions)
    base = {"sid": str(args.sid) if args.sid else "", "beam": args.beam,
            "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience,
                      "threads": args.threads, "seed": args.seed, "eval_users": args.eval_users,
                      "budget_s": args.budget_min * 60}}
    cfg = from_dict(TigerDecoderConfig, apply_overrides(base, args.set))
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    model = TigerDecoder(cfg).fit(split.train, split.valid)
    fit_s = time.perf_counter() - t0
    load_fit = os.getloadavg()[0]
    row = {"model": "tiger_decoder", "data": args.data, "config": to_dict(cfg), "sid_hash": model.sid_hash_,
           "fit_s": round(fit_s, 1), "epochs_run": len(model.train_result_.history),
           "best_epoch": model.train_result_.best_epoch, "best_valid": model.train_result_.best_metric,
           "curve": model.train_result_.history}
    t1 = time.perf_counter()
    rep = evaluate(model, split, metrics=METRICS, on="test")
    row["beam"] = {"test": rep.metrics, "eval_s": round(time.perf_counter() - t1, 1), "users": len(rep.users)}
    if cfg.head == "projection":
        model.config = dataclasses.replace(model.config, decoding="projection")
        t1 = time.perf_counter()
        rep_p = evaluate(model, split, metrics=METRICS, on="test")
        row["projection"] = {"test": rep_p.metrics, "eval_s": round(time.perf_counter() - t1, 1)}
        model.config = dataclasses.replace(model.config, decoding="beam")
    if args.exact_users:
        users = np.random.default_rng(0).choice(np.unique(split.test.user), args.exact_users, replace=False)
        row["beam_vs_exact"] = _agreement(model, split, np.sort(users))
    if args.save:
        model.save(args.save)
    row.update({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "threads": args.threads, "load_avg_1m": {"start": load0, "after_fit": load_fit,
                                                          "end": os.getloadavg()[0]}})
    write(args.out, row)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="stage", required=True)
    s = sub.add_parser("sids")
    s.add_argument("--data", default="amazon-beauty")
    s.add_argument("--features", nargs="+", default=["cf+attributes"])
    s.add_argument("--tokenizers", nargs="+", default=["rkmeans"])
    s.add_argument("--collisions", nargs="+", default=["uniform"])
    s.add_argument("--levels", type=int, default=3)
    s.add_argument("--codebook-size", type=int, default=256)
    s.add_argument("--tokenizer-epochs", type=int, default=200, help="training epochs of a learnt tokenizer (rqvae)")
    s.add_argument("--save", type=Path, default=None, help="save the first table here")
    s.add_argument("--out", type=Path, default=None)
    t = sub.add_parser("train")
    t.add_argument("--data", default="amazon-beauty")
    t.add_argument("--sid", type=Path, default=None, help="a SID table folder (default: built from cf features)")
    t.add_argument("--epochs", type=int, default=200)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--patience", type=int, default=3)
    t.add_argument("--beam", type=int, default=20)
    t.add_argument("--budget-min", type=float, default=12)
    t.add_argument("--eval-users", type=int, default=2000)
    t.add_argument("--exact-users", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. head=projection dim=128")
    t.add_argument("--save", type=Path, default=None)
    t.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    (stage_sids if args.stage == "sids" else stage_train)(args)


if __name__ == "__main__":
    main()
