"""Generative retrieval over semantic IDs on real data (leave-last-out, full catalogue, seen items masked).

Stages, one JSON line per result in --out:

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

``baseline``: a registered sequential model (``--model sasrec``) under the same budget, split and evaluator, with its
learning curve; ``--per-user DIR`` (here and in ``train``) keeps every test user's values for ``compare``, a paired
test of such files (``--a``/``--b``, one file a seed on each side: per-seed differences with a t CI over seeds, and the
bootstrap CI and t-test over users of the seed-averaged values). ``--budget-clock cpu`` counts the budget in the
process's CPU seconds, so fits sharing the machine's cores get equal budgets. ``curves`` plots the validation curves
of result files against CPU seconds.

``decode``: a saved model's decodings timed on every test user (the ranking alone, wall and CPU seconds, and the whole
evaluator), ``--profile N`` logs where the ranking time goes, ``--exact-users N`` beam vs exact on a seeded sample.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/generative.py decode bench/out/beauty-tiger \
        --exact-users 500 --out bench/results/generative-beauty-decode.jsonl
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import logging
import os
import pstats
import resource
import time
from pathlib import Path

import numpy as np
import torch

from recforge.config import apply_overrides, from_dict, to_dict
from recforge.data.datasets import load_dataset
from recforge.data.jagged import gather_jagged
from recforge.data.split import leave_last_out
from recforge.evaluate.evaluator import evaluate
from recforge.experiments.seeds import seed_ci
from recforge.metrics.stats import paired_bootstrap, paired_t_test
from recforge.models.base import load_model
from recforge.models.generative.inspect import inspect_sids
from recforge.models.generative.semantic_ids import SidConfig, build_semantic_ids
from recforge.models.generative.tiger_decoder import TigerDecoder, TigerDecoderConfig
from recforge.models.rank import mask_seen, top_k
from recforge.registry import get_model

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


def _cpu_s() -> float:
    """CPU seconds (user + system) this process has used so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return round(r.ru_utime + r.ru_stime, 1)


def _save_per_user(directory: Path | None, name: str, report) -> None:
    """The per-user test values of one ranking, for a later paired test (``compare``): users + one array a metric."""
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / f"{name}.npz", users=report.users, **{k: v for k, v in report.per_user.items()})


def _resources(t0_cpu: float, load: dict, threads: int) -> dict:
    load["end"] = os.getloadavg()[0]
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "cpu_s": round(_cpu_s() - t0_cpu, 1), "nice": os.nice(0), "threads": threads, "load_avg_1m": load}


def stage_train(args: argparse.Namespace) -> None:
    ds = load_dataset(args.data)
    split = leave_last_out(ds.interactions)
    base = {"sid": str(args.sid) if args.sid else "", "beam": args.beam,
            "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience,
                      "threads": args.threads, "seed": args.seed, "eval_users": args.eval_users,
                      "budget_s": args.budget_min * 60, "budget_clock": args.budget_clock}}
    cfg = from_dict(TigerDecoderConfig, apply_overrides(base, args.set))
    load = {"start": os.getloadavg()[0]}
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    model = TigerDecoder(cfg).fit(split.train, split.valid)
    fit_s = time.perf_counter() - t0
    load["after_fit"] = os.getloadavg()[0]
    row = {"model": "tiger_decoder", "data": args.data, "config": to_dict(cfg), "sid_hash": model.sid_hash_,
           "fit_s": round(fit_s, 1), "fit_cpu_s": round(_cpu_s() - cpu0, 1),
           "epochs_run": len(model.train_result_.history), "best_epoch": model.train_result_.best_epoch,
           "best_valid": model.train_result_.best_metric, "valid_decoding": cfg.decoding,
           "curve": model.train_result_.history}
    if args.save:  # before the test figures, so a later failure loses no training
        model.save(args.save)
    for mode in ("beam", "projection") if cfg.head == "projection" else ("beam",):
        model.config = dataclasses.replace(model.config, decoding=mode)
        t1 = time.perf_counter()
        rep = evaluate(model, split, metrics=METRICS, on="test")
        row[mode] = {"test": rep.metrics, "eval_s": round(time.perf_counter() - t1, 1), "users": len(rep.users)}
        _save_per_user(args.per_user, f"tiger_decoder-{mode}", rep)
    model.config = dataclasses.replace(model.config, decoding="beam")
    if args.exact_users:
        users = np.random.default_rng(0).choice(np.unique(split.test.user), args.exact_users, replace=False)
        row["beam_vs_exact"] = _agreement(model, split, np.sort(users))
    row.update(_resources(cpu0, load, args.threads))
    write(args.out, row)


def stage_baseline(args: argparse.Namespace) -> None:
    """A registered sequential model (SASRec by default) under the same budget, split and evaluator as ``train``."""
    ds = load_dataset(args.data)
    split = leave_last_out(ds.interactions)
    cls = get_model(args.model)
    base = {"train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience,
                      "threads": args.threads, "seed": args.seed, "eval_users": args.eval_users,
                      "budget_s": args.budget_min * 60, "budget_clock": args.budget_clock}}
    cfg = from_dict(cls.config_class, apply_overrides(base, args.set))
    load = {"start": os.getloadavg()[0]}
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    model = cls(cfg).fit(split.train, split.valid)
    fit_s = time.perf_counter() - t0
    fit_cpu_s = round(_cpu_s() - cpu0, 1)
    load["after_fit"] = os.getloadavg()[0]
    t1 = time.perf_counter()
    rep = evaluate(model, split, metrics=METRICS, on="test")
    _save_per_user(args.per_user, args.model, rep)
    row = {"model": args.model, "data": args.data, "config": to_dict(cfg), "fit_s": round(fit_s, 1),
           "fit_cpu_s": fit_cpu_s, "epochs_run": len(model.train_result_.history),
           "best_epoch": model.train_result_.best_epoch, "best_valid": model.train_result_.best_metric,
           "out_of_budget": model.train_result_.out_of_budget, "curve": model.train_result_.history,
           "test": rep.metrics, "eval_s": round(time.perf_counter() - t1, 1), "users": len(rep.users)}
    row.update(_resources(cpu0, load, args.threads))
    write(args.out, row)


def _rank_all(model, split, users: np.ndarray, k: int = 10, batch: int = 1024) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to rank the full catalogue for ``users`` (test histories, seen
    items masked, top-k): the model's scoring plus the shared masking and top-k, without the evaluator's metrics and
    bootstrap. On a shared machine the CPU seconds are the steadier figure."""
    hist = split.train.concat(split.valid)
    items, offsets = hist.sequences()
    seen = hist.to_csr()
    t0, c0 = time.perf_counter(), time.process_time()
    for s in range(0, len(users), batch):
        b = users[s : s + batch]
        scores = model.score_histories(gather_jagged(items, offsets, b)).clone()
        mask_seen(scores, seen[b])
        top_k(scores, k)
    return time.perf_counter() - t0, time.process_time() - c0


def stage_decode(args: argparse.Namespace) -> None:
    """Decoding speed and quality of a saved tiger/tiger_decoder: every test user ranked by each decoding (the
    ranking alone and the whole evaluator), and beam vs exact on a seeded sample of test users."""
    split = leave_last_out(load_dataset(args.data).interactions)
    model = load_model(args.model_dir)
    users = np.unique(split.test.user)
    load = {"start": os.getloadavg()[0]}
    cpu0 = _cpu_s()
    row = {"model": model.name, "model_dir": str(args.model_dir), "data": args.data, "users": len(users)}
    for mode in args.decodings:
        model.config = dataclasses.replace(model.config, decoding=mode)
        if args.profile:
            prof = cProfile.Profile()
            prof.runcall(_rank_all, model, split, users[: args.profile])
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
            log.info("%s, %d users:\n%s", mode, args.profile, buf.getvalue())
        load_before = os.getloadavg()[0]
        rank_s, rank_cpu_s = _rank_all(model, split, users)
        t1 = time.perf_counter()
        rep = evaluate(model, split, metrics=METRICS, on="test", progress=False)
        row[mode] = {"rank_s": round(rank_s, 2), "rank_cpu_s": round(rank_cpu_s, 2), "eval_s": round(time.perf_counter() - t1, 1), "test": rep.metrics,
                     "load_avg_1m": [load_before, os.getloadavg()[0]]}
        _save_per_user(args.per_user, f"{model.name}-{mode}", rep)
    if args.exact_users:
        sample = np.random.default_rng(0).choice(users, min(args.exact_users, len(users)), replace=False)
        row["beam_vs_exact"] = _agreement(model, split, np.sort(sample))
    row.update(_resources(cpu0, load, torch.get_num_threads()))
    write(args.out, row)


def _load_per_user(path: Path) -> dict[str, np.ndarray]:
    """A ``--per-user`` file read once into memory (an open .npz re-reads an array from the archive on every access)."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def stage_compare(args: argparse.Namespace) -> None:
    """Paired test of per-user test values saved by ``train``/``baseline`` (``--per-user``): A minus B.

    Several files a side are seeds, paired by position. One row: each seed's means and difference, the mean of the
    per-seed differences with its Student-t 95% CI over seeds and how many seeds A is ahead, and over users (each
    user's value averaged over the seeds) the paired bootstrap CI and t-test of the difference."""
    if len(args.a) != len(args.b):
        raise SystemExit(f"compare: {len(args.a)} files for A but {len(args.b)} for B (one a seed on each side)")
    loaded = [(_load_per_user(a), _load_per_user(b)) for a, b in zip(args.a, args.b)]
    users = loaded[0][0]["users"]
    for (a, b), path_a, path_b in zip(loaded, args.a, args.b):
        if not (np.array_equal(a["users"], users) and np.array_equal(b["users"], users)):
            raise SystemExit(f"{path_a} and {path_b} hold other test users than {args.a[0]}")
    row = {"a": [str(x) for x in args.a], "b": [str(x) for x in args.b], "seeds": len(loaded), "users": len(users)}
    for m in args.metrics:
        per_seed = [{"a": float(a[m].mean()), "b": float(b[m].mean())} for a, b in loaded]
        diff = seed_ci([s["a"] - s["b"] for s in per_seed])
        a_users = np.mean([a[m] for a, _ in loaded], axis=0)  # (users,) each user's value averaged over seeds
        b_users = np.mean([b[m] for _, b in loaded], axis=0)
        row[m] = {"a": float(a_users.mean()), "b": float(b_users.mean()),
                  "ratio": float(a_users.mean() / b_users.mean()), "per_seed": per_seed,
                  "seed_diff": diff, "a_ahead_seeds": sum(s["a"] > s["b"] for s in per_seed),
                  **paired_bootstrap(a_users, b_users), "t_test_p": paired_t_test(a_users, b_users)["p_value"]}
    write(args.out, row)


def stage_curves(args: argparse.Namespace) -> None:
    """One plot of the validation curves in ``train``/``baseline`` result files: the early-stopping metric after
    each epoch against the CPU seconds of fitting so far (epochs' wall seconds scaled to the fit's CPU seconds, as
    the budget counted), one line per model and seed."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colours: dict[str, str] = {}
    for path in args.files:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            key = next(k for k in row["curve"][0] if k.startswith("valid_"))
            wall = np.cumsum([r["train_s"] for r in row["curve"]])
            cpu = wall * row["fit_cpu_s"] / max(row["fit_s"], 1e-9)
            name = row["model"] + (f" ({row['valid_decoding']})" if "valid_decoding" in row else "")
            label = None if name in colours else name  # one legend entry a model, one colour for all its seeds
            colour = colours.setdefault(name, f"C{len(colours)}")
            ax.plot(cpu, [r[key] for r in row["curve"]], marker="o", ms=3, color=colour, alpha=0.8, label=label)
    ax.set_xlabel("CPU seconds of fitting")
    ax.set_ylabel(key.removeprefix("valid_") + " (validation)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    plt.close(fig)
    log.info("plot written to %s", args.plot)


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
    for stage in ("train", "baseline"):
        t = sub.add_parser(stage)
        t.add_argument("--data", default="amazon-beauty")
        if stage == "train":
            t.add_argument("--sid", type=Path, default=None, help="a SID table folder (default: built from cf features)")
            t.add_argument("--beam", type=int, default=20)
            t.add_argument("--exact-users", type=int, default=0)
            t.add_argument("--save", type=Path, default=None)
        else:
            t.add_argument("--model", default="sasrec")
        t.add_argument("--epochs", type=int, default=200)
        t.add_argument("--batch-size", type=int, default=256)
        t.add_argument("--lr", type=float, default=1e-3)
        t.add_argument("--patience", type=int, default=3)
        t.add_argument("--budget-min", type=float, default=12)
        t.add_argument("--budget-clock", choices=["wall", "cpu"], default="wall",
                       help="what --budget-min counts: wall minutes or this process's CPU minutes")
        t.add_argument("--eval-users", type=int, default=2000)
        t.add_argument("--threads", type=int, default=1)
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. head=projection dim=128")
        t.add_argument("--per-user", type=Path, default=None, help="save per-user test values here (for compare)")
        t.add_argument("--out", type=Path, default=None)
    d = sub.add_parser("decode")
    d.add_argument("model_dir", type=Path, help="a saved tiger / tiger_decoder (the train stage's --save)")
    d.add_argument("--data", default="amazon-beauty")
    d.add_argument("--decodings", nargs="*", default=["beam", "projection"], help="decodings to time ([] = none)")
    d.add_argument("--exact-users", type=int, default=0, help="beam vs exact on this many seeded test users")
    d.add_argument("--profile", type=int, default=0, help="log a cProfile of ranking this many users per decoding")
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--per-user", type=Path, default=None)
    d.add_argument("--out", type=Path, default=None)
    c = sub.add_parser("compare")
    c.add_argument("--a", type=Path, nargs="+", required=True, help="A's per-user files, one a seed")
    c.add_argument("--b", type=Path, nargs="+", required=True, help="B's per-user files, the same seeds in order")
    c.add_argument("--metrics", nargs="+", default=["recall@10", "ndcg@10"])
    c.add_argument("--out", type=Path, default=None)
    v = sub.add_parser("curves")
    v.add_argument("files", type=Path, nargs="+", help="result files of train / baseline")
    v.add_argument("--plot", type=Path, required=True, metavar="PNG")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.stage == "decode":
        torch.set_num_threads(args.threads)
    stages = {"sids": stage_sids, "train": stage_train, "baseline": stage_baseline, "decode": stage_decode,
              "compare": stage_compare, "curves": stage_curves}
    stages[args.stage](args)


if __name__ == "__main__":
    main()
