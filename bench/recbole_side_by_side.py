"""recforge vs RecBole 1.2.1 on the identical ML-100K split: SASRec, BERT4Rec, GRU4Rec (+ our HSTU).

Every run is its own subprocess so that peak RSS (ru_maxrss) belongs to one library and one model. RecBole runs
through bench/.recbole-venv/bin/python (see README.md in the peers folder; never a project dependency) via
bench/recbole_driver.py; ours runs this file's ``ours`` / ``ours-beauty`` sub-tasks. Jobs are queued peer, ours,
peer, ours, ...; with ``--parallel`` > 1 they overlap (compare CPU seconds then).

The split is recbole-ml-100k-split.json in the peers folder — what RecBole's own dataloaders produce (float32-rescaled
timestamp order), so both libraries hold out the same valid/test item for every user. RecBole's sequential models do
not mask already-seen items: ours is reported that way (``test``) and with masking (``test_masked``).

    # what docs/benchmarks.md reports (RecBole capped at 2 batches of 1 epoch, s/epoch extrapolated; ours capped at
    # 150 CPU-s; CPU seconds compared because the machine is shared); then the Beauty evaluation timing
    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/recbole_side_by_side.py \
        --models sasrec hstu gru4rec bert4rec --recbole-models sasrec gru4rec bert4rec \
        --recbole-epochs 1 --recbole-max-batches 2 --batch-size 64 --lr 2e-3 --patience 3 --epochs 30 \
        --max-cpu-seconds 150 --parallel 6 --skip-beauty --out bench/results/recbole-side-by-side.json
    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/recbole_side_by_side.py --only-beauty \
        --recbole-epochs 1 --out bench/results/recbole-side-by-side-beauty.json
    # runs cut short: `touch bench/out/STOP` ends ours after the current epoch; `collect` re-renders from
    # bench/out/ours-<model>.json (rewritten after every epoch)
    .venv/bin/python bench/recbole_side_by_side.py collect --out bench/results/recbole-side-by-side.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench.recbole_side_by_side")

ROOT = Path(__file__).resolve().parents[1]
#: Peer libraries' material (RecBole's exported split, its setup notes): RECFORGE_PEERS_DIR, else ../shared/peers.
PEERS_DIR = Path(os.environ.get("RECFORGE_PEERS_DIR") or ROOT.parent / "shared" / "peers")
SPLIT_JSON = PEERS_DIR / "recbole-ml-100k-split.json"
RECBOLE_PY = ROOT / "bench" / ".recbole-venv" / "bin" / "python"
OUT_DIR = ROOT / "bench" / "out"

#: RecBole 1.2.1 figures of an earlier measurement (2 cores, ML-100K, defaults): test NDCG@10, Recall@10, s/epoch, epochs, budget s,
#: peak RSS MB. Targets for ours: reach the NDCG in <= 1/10 of the time with <= 1/4 of the memory.
RECBOLE_REF = {
    "sasrec": {"ndcg": 0.0408, "recall": 0.0859, "s_epoch": 185.7, "epochs": 4, "budget_s": 14 * 60, "rss_mb": 4400},
    "bert4rec": {"ndcg": 0.0187, "recall": 0.0392, "s_epoch": 253.3, "epochs": 2, "budget_s": 14 * 60, "rss_mb": 4200},
    "gru4rec": {"ndcg": 0.0328, "recall": 0.0774, "s_epoch": 79.3, "epochs": 7, "budget_s": 10 * 60, "rss_mb": 1500},
}
RECBOLE_NAME = {"sasrec": "SASRec", "bert4rec": "BERT4Rec", "gru4rec": "GRU4Rec"}
ITEMKNN_NDCG = 0.0629  # RecBole ItemKNN on this split (BPR: 0.0631)

#: RecBole's defaults: max len 50, hidden 64, 2 layers (GRU: 1 layer, state 128), CE loss, seed 2020.
OUR_CONFIG: dict[str, dict[str, Any]] = {
    "sasrec": {"dim": 64, "n_layers": 2, "n_heads": 2, "max_len": 50, "loss": "ce"},
    "bert4rec": {"dim": 64, "n_layers": 2, "n_heads": 2, "max_len": 50, "loss": "ce"},
    "gru4rec": {"dim": 64, "hidden": 128, "n_layers": 1, "max_len": 50, "loss": "ce"},
    "hstu": {"dim": 64, "n_layers": 2, "n_heads": 2, "max_len": 50, "loss": "ce"},
}


# ---------------------------------------------------------------------------------------------- data
def load_split(path: Path = SPLIT_JSON) -> Any:
    """The RecBole split as a recforge Split (raw ids; train items in order, then valid, then test per user).

    Times keep RecBole's order exactly: with ML-100K's ratings under RECFORGE_DATA_DIR they are the real timestamps
    made non-decreasing along that order (HSTU's time-gap bias sees real gaps); otherwise positions 0, 1, 2, ...
    Interactions sorts stably by (user, time), so ties keep the JSON order.
    """
    from recforge.data.interactions import Interactions
    from recforge.data.split import Split

    raw = json.loads(path.read_text(encoding="utf-8"))["users"]
    stamps = _ml100k_stamps()
    users, items, times, part = [], [], [], []
    for u, rec in raw.items():
        seq = list(rec["train"]) + list(rec["valid"]) + list(rec["test"])
        t = np.arange(len(seq), dtype=np.int64)
        if stamps is not None:
            keys = int(u) * 2**20 + np.array(seq, dtype=np.int64)
            t = np.maximum.accumulate(stamps[1][np.searchsorted(stamps[0], keys)])
        users += [u] * len(seq)
        items += seq
        times.append(t)
        part += [0] * len(rec["train"]) + [1] * len(rec["valid"]) + [2] * len(rec["test"])
    data = Interactions.from_arrays(np.array(users), np.array(items), time=np.concatenate(times))
    # from_arrays keeps row order when rows are already grouped by user in time order; check rather than assume.
    order = np.lexsort((np.arange(len(users)), np.concatenate(times), data.user_vocab.encode(np.array(users))))
    part_arr = np.array(part)[order]
    split = Split(train=data.with_rows(part_arr == 0), valid=data.with_rows(part_arr == 1),
                  test=data.with_rows(part_arr == 2), name="recbole-ml-100k",
                  params={"source": str(path), "real_timestamps": stamps is not None})
    return split


def _ml100k_stamps() -> tuple[np.ndarray, np.ndarray] | None:
    """ML-100K's timestamps as (sorted keys user * 2**20 + item, timestamp per key), or None without the data;
    looked up per user with one ``searchsorted`` instead of building a 100,000-entry dict of tuples."""
    base = os.environ.get("RECFORGE_DATA_DIR")
    f = Path(base) / "ml-100k" / "u.data" if base else None
    if f is None or not f.is_file():
        return None
    arr = np.loadtxt(f, dtype=np.int64)
    keys = arr[:, 0] * 2**20 + arr[:, 1]
    order = np.argsort(keys)
    return keys[order], arr[order, 3]


def write_beauty_atomic(dest: Path) -> Path:
    """Amazon Beauty (S3-Rec format: ``user item item ...`` in time order) as RecBole's atomic ``beauty.inter``."""
    base = os.environ.get("RECFORGE_DATA_DIR")
    if not base:
        raise SystemExit("RECFORGE_DATA_DIR is not set: the Beauty evaluation timing needs amazon-s3rec/Beauty.txt")
    src = Path(base) / "amazon-s3rec" / "Beauty.txt"
    out = dest / "beauty" / "beauty.inter"
    out.parent.mkdir(parents=True, exist_ok=True)
    with src.open(encoding="utf-8") as f, out.open("w", encoding="utf-8") as g:
        g.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in f:
            user, *seq = line.split()
            g.writelines(f"{user}\t{item}\t{pos}\n" for pos, item in enumerate(seq))
    return out


# ---------------------------------------------------------------------------------------------- ours (subprocess)
class _TimeCap(Exception):
    """Raised from the epoch callback to stop a run that passed --max-seconds."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _test_metrics(model: Any, split: Any) -> dict[str, float]:
    from recforge.evaluate.evaluator import evaluate

    out = {}
    for tag, mask in (("", False), ("masked_", True)):
        rep = evaluate(model, split, metrics=("ndcg@10", "recall@10"), on="test", exclude_seen=mask, n_boot=0,
                       progress=False)
        out[f"{tag}ndcg@10"] = rep.mean("ndcg@10")
        out[f"{tag}recall@10"] = rep.mean("recall@10")
    return out


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    """Train one of our models on the RecBole split; test metrics after every epoch (their cost is not timed)."""
    import torch

    from recforge.config import apply_overrides, from_dict
    from recforge.registry import get_model

    torch.set_num_threads(args.threads)
    split = load_split()
    cls = get_model(args.model)
    raw = dict(OUR_CONFIG[args.model])
    raw["train"] = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience,
                    "threads": args.threads, "seed": 2020}
    cfg = from_dict(cls.config_class, apply_overrides(raw, args.set))
    model = cls(cfg)
    curve: list[dict[str, float]] = []
    side = {"s": 0.0, "cpu": 0.0}
    t_start, c_start = time.perf_counter(), time.process_time()

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        # CPU seconds (all threads) are reported next to wall seconds: on a machine shared with other jobs they
        # move much less than wall-clock time does.
        t0, c0 = time.perf_counter(), time.process_time()
        m = _test_metrics(model, split)
        elapsed = t0 - t_start - side["s"]
        curve.append({"epoch": epoch, "elapsed_s": elapsed, "elapsed_cpu_s": c0 - c_start - side["cpu"],
                      "train_s": row["train_s"], "valid_ndcg@10": row.get("valid_ndcg@10"), **m})
        if args.partial:  # a run cut short by the machine's load still leaves its curve behind
            _save(_summary(args, raw, curve, "in progress"), args.partial)
        side["s"] += time.perf_counter() - t0
        side["cpu"] += time.process_time() - c0
        if args.max_seconds and elapsed > args.max_seconds:
            raise _TimeCap("time cap")
        if args.max_cpu_seconds and curve[-1]["elapsed_cpu_s"] > args.max_cpu_seconds:
            raise _TimeCap("CPU time cap")
        if (OUT_DIR / "STOP").exists():
            raise _TimeCap("stop file")

    model.callbacks.append(on_epoch)
    stopped_by = "epochs"
    try:
        model.fit(split.train, split.valid)
        if model.train_result_.stopped_early:
            stopped_by = "early stopping"
    except _TimeCap as cap:
        stopped_by = str(cap)
    return _summary(args, raw, curve, stopped_by)


def _summary(args: argparse.Namespace, raw: dict[str, Any], curve: list[dict[str, Any]], stopped_by: str
             ) -> dict[str, Any]:
    """What one of our runs reached: time to RecBole's NDCG@10, metrics within its budget and at the best epoch."""
    import torch

    # The Trainer keeps the best-validation weights; their test metrics were taken in that epoch's callback.
    best = max(curve, key=lambda c: c["valid_ndcg@10"] or 0.0)
    final = {k: best[k] for k in ("ndcg@10", "recall@10", "masked_ndcg@10", "masked_recall@10")}
    target = RECBOLE_REF.get(args.model, {}).get("ndcg", ITEMKNN_NDCG)
    hit = next((c for c in curve if c["ndcg@10"] >= target), None)
    budget = args.budget_s if args.budget_s else RECBOLE_REF.get(args.model, {}).get("budget_s", float("inf"))
    in_budget = [c for c in curve if c["elapsed_s"] <= budget]
    best_in_budget = max(in_budget, key=lambda c: c["valid_ndcg@10"] or 0.0) if in_budget else None
    train_s = sorted(c["train_s"] for c in curve)
    cpu_epoch = [b["elapsed_cpu_s"] - a["elapsed_cpu_s"] for a, b in zip([{"elapsed_cpu_s": 0.0}] + curve, curve)]
    return {
        "library": "recforge",
        "model": args.model,
        "config": raw,
        "target_ndcg@10": target,
        "time_to_target_s": hit["elapsed_s"] if hit else None,
        "cpu_to_target_s": hit["elapsed_cpu_s"] if hit else None,
        "epoch_at_target": hit["epoch"] if hit else None,
        "budget_s": budget,
        "in_budget": best_in_budget,
        "converged": final,
        "stopped_by": stopped_by,
        "best_epoch": best["epoch"],
        "epochs_run": len(curve),
        "fit_s": curve[-1]["elapsed_s"],
        "train_s_per_epoch_median": train_s[len(train_s) // 2],
        "cpu_s_per_epoch_median": sorted(cpu_epoch)[len(cpu_epoch) // 2],
        "curve": curve,
        "peak_rss_mb": _peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "load_avg_1m": os.getloadavg()[0],
    }


def run_ours_beauty(args: argparse.Namespace) -> dict[str, Any]:
    """Time full-ranking evaluation of every Beauty user by our SASRec (1 training epoch; the timing ignores weights)."""
    import torch

    from recforge.config import from_dict
    from recforge.data.datasets import load_dataset
    from recforge.data.split import leave_last_out
    from recforge.evaluate.evaluator import evaluate
    from recforge.registry import get_model

    torch.set_num_threads(args.threads)
    data = load_dataset("amazon-beauty").interactions
    split = leave_last_out(data)
    cls = get_model("sasrec")
    cfg = from_dict(cls.config_class, {**OUR_CONFIG["sasrec"], "train": {"epochs": 1, "batch_size": 2048,
                                                                        "threads": args.threads, "seed": 2020}})
    # Fitted on a few rows only: the timing below scores every user from their full ad-hoc history (train), so
    # it does not depend on the weights, and RecBole's side is timed with an untrained SASRec too.
    model = cls(cfg).fit(split.train.with_rows(np.arange(2000)))
    out: dict[str, Any] = {"library": "recforge", "task": "eval-beauty", "n_users": data.n_users,
                           "n_items": data.n_items, "n_test_users": len(split.test)}
    # RecBole's convention (no masking, no CIs) first, then our default report (seen items masked, bootstrap CIs).
    for tag, kw in (("eval", {"exclude_seen": False, "n_boot": 0}), ("eval_default", {})):
        t0, c0 = time.perf_counter(), time.process_time()
        evaluate(model, split, metrics=("ndcg@10", "recall@10"), on="test", progress=False, **kw)
        out[f"{tag}_s"], out[f"{tag}_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    out["peak_rss_mb"] = _peak_rss_mb()
    out["threads"] = torch.get_num_threads()
    out["load_avg_1m"] = os.getloadavg()[0]
    return out


# ---------------------------------------------------------------------------------------------- orchestration
def _subprocess(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run one measurement in its own process; its last stdout line is a JSON object."""
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", RECFORGE_NO_PROGRESS="1")
    log.info("$ %s", " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        log.error("failed (exit %d): %s", proc.returncode, proc.stderr[-3000:])
        return {"error": proc.stderr[-3000:], "cmd": cmd}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t0
    return res


def _ours_cmd(task: str, model: str, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, __file__, task, "--model", model, "--threads", str(args.threads),
           "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--epochs", str(args.epochs),
           "--patience", str(args.patience), "--max-seconds", str(args.max_seconds),
           "--max-cpu-seconds", str(args.max_cpu_seconds)]
    if args.set:
        cmd += ["--set", *args.set]
    return cmd


def _recbole_summary(rb: dict[str, Any] | None, ref: dict[str, Any]) -> dict[str, Any]:
    """RecBole's time to its issue-7 quality: its reference epochs at the s/epoch (train + valid) measured now."""
    if not rb or "error" in rb or not rb.get("epochs"):
        return {"s_epoch": ref["s_epoch"], "time_to_quality_s": ref["budget_s"], "rss_mb": ref["rss_mb"],
                "ndcg": None, "recall": None, "epochs": None, "measured": False}
    per_epoch = sorted(e["train_s"] + e.get("valid_s", 0.0) for e in rb["epochs"])
    med = per_epoch[len(per_epoch) // 2]
    cpu = sorted(e["train_cpu_s"] + e.get("valid_cpu_s", 0.0) for e in rb["epochs"])
    return {"s_epoch": rb["train_s_per_epoch_median"], "time_to_quality_s": med * ref["epochs"],
            "cpu_to_quality_s": cpu[len(cpu) // 2] * ref["epochs"],
            "cpu_epoch": sorted(e["train_cpu_s"] for e in rb["epochs"])[len(cpu) // 2],
            "rss_mb": rb["peak_rss_mb"], "ndcg": rb["test_ndcg@10"], "recall": rb["test_recall@10"],
            "epochs": len(rb["epochs"]), "measured": True,
            "batches": f"{rb['epochs'][0]['batches_run']}/{rb['epochs'][0]['batches_per_epoch']}"}


def _cpu(x: float | None) -> str:
    return "" if x is None else f" / {x:.0f} CPU-s"


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def table(results: dict[str, Any]) -> str:
    """The markdown table of docs/benchmarks.md. Times are CPU seconds (all threads of the process): on a machine
    shared with other jobs a process's share of the cores varies several-fold, so wall seconds are in the JSON only.
    RecBole's budget is its CPU time to its issue-7 quality (its epochs there x its CPU-s per epoch measured here)."""
    lines = [
        "| model | RecBole CPU-s/epoch (timed) | RecBole CPU-s to its issue-7 NDCG@10 | ours CPU-s/epoch | "
        "ours CPU-s to that NDCG@10 (ratio) | ours NDCG@10 / Recall@10 within RecBole's CPU budget | ours best-valid "
        "epoch NDCG@10 / Recall@10 (masked) | ours epochs (best/run, stop) | peak RSS RecBole / ours (ratio) | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        ours = r.get("ours", {"error": "not run"})
        if "error" in ours:
            lines.append(f"| {name} | not measured: see the JSON | | | | | | | | |")
            continue
        rb = r.get("recbole_summary")
        conv, ctt = ours["converged"], ours.get("cpu_to_target_s")
        if rb and rb.get("cpu_to_quality_s"):
            budget = rb["cpu_to_quality_s"]
            ratio = f" (1/{budget / ctt:.0f})" if ctt else ""
            rb_cells = (f"{rb['cpu_epoch']:.0f} (1 epoch x {rb['batches']} batches) | {budget:.0f} "
                        f"({RECBOLE_REF[name]['epochs']} epochs -> {RECBOLE_REF[name]['ndcg']})")
            target = f"{_fmt(ctt, '.0f')}{ratio}" if ctt else f"not reached ({RECBOLE_REF[name]['ndcg']})"
            mem = f"{rb['rss_mb']:.0f} / {ours['peak_rss_mb']:.0f} MB (1/{rb['rss_mb'] / ours['peak_rss_mb']:.1f})"
        else:
            budget = None
            ref = f"ItemKNN {ITEMKNN_NDCG}" if name not in RECBOLE_REF else f"{RECBOLE_REF[name]['ndcg']}"
            rb_cells = "— | —"
            target = f"{_fmt(ctt, '.0f')}" if ctt else f"not reached ({ref})"
            mem = f"— / {ours['peak_rss_mb']:.0f} MB"
        within = [c for c in ours["curve"] if budget is None or c["elapsed_cpu_s"] <= budget]
        ib = max(within, key=lambda c: c["valid_ndcg@10"] or 0.0) if within and budget else None
        ib_cell = f"{ib['ndcg@10']:.4f} / {ib['recall@10']:.4f}" if ib else "—"
        lines.append(
            f"| {name} | {rb_cells} | {_fmt(ours.get('cpu_s_per_epoch_median'), '.1f')} | {target} | {ib_cell} | "
            f"{conv['ndcg@10']:.4f} / {conv['recall@10']:.4f} ({conv['masked_ndcg@10']:.4f} / "
            f"{conv['masked_recall@10']:.4f}) | {ours['best_epoch']}/{ours['epochs_run']}, {ours.get('stopped_by')} | "
            f"{mem} | {ours['load_avg_1m']:.0f} |")
    b = results.get("beauty")
    if b:
        rbb, ob = b.get("recbole", {}), b.get("ours", {})
        if "eval_s" in rbb and "eval_s" in ob:
            lines += ["", "| Beauty full-ranking eval, all test users | RecBole 1.2.1 | ours (unmasked, no CIs) | "
                      "speed-up | ours default (masked + bootstrap CIs) | peak RSS RecBole / ours |",
                      "|---|---|---|---|---|---|",
                      f"| SASRec, {ob['n_test_users']:,} users x {ob['n_items']:,} items | {rbb['eval_s']:.1f} s"
                      f"{_cpu(rbb.get('eval_cpu_s'))} | {ob['eval_s']:.2f} s{_cpu(ob.get('eval_cpu_s'))} | "
                      f"{rbb['eval_s'] / ob['eval_s']:.1f}x wall"
                      + (f", {rbb['eval_cpu_s'] / ob['eval_cpu_s']:.1f}x CPU" if 'eval_cpu_s' in rbb else "")
                      + f" | {ob['eval_default_s']:.2f} s | "
                      f"{rbb['peak_rss_mb']:.0f} / {ob['peak_rss_mb']:.0f} MB |"]
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> None:
    from concurrent.futures import ThreadPoolExecutor, as_completed

    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                               "argv": sys.argv[1:], "cpu_count": os.cpu_count(), "models": {}}
    run_recbole = args.recbole_epochs > 0
    if run_recbole and not RECBOLE_PY.is_file():
        raise SystemExit(f"{RECBOLE_PY} missing: set up RecBole as {PEERS_DIR / 'README.md'} says")
    reused = json.loads(args.reuse.read_text(encoding="utf-8"))["models"] if args.reuse else {}
    driver = [str(RECBOLE_PY), str(ROOT / "bench" / "recbole_driver.py")]
    # Jobs in order peer, ours, peer, ours, ... (alternating libraries spreads the machine's load drift).
    jobs: list[tuple[str, str, list[str]]] = []
    for name in [] if args.only_beauty else args.models:
        results["models"][name] = {}
        old = reused.get(name, {}).get("recbole")
        if old and "error" not in old:
            results["models"][name]["recbole"] = old
        elif run_recbole and name in RECBOLE_REF and name in args.recbole_models:
            jobs.append((name, "recbole", driver + ["train", "--model", RECBOLE_NAME[name], "--epochs",
                                                     str(args.recbole_epochs), "--max-batches",
                                                     str(args.recbole_max_batches), "--threads", str(args.threads),
                                                     "--workdir", str(OUT_DIR / f"recbole-saved-{name}")]))
        jobs.append((name, "ours", _ours_cmd("ours", name, args) + ["--partial", str(OUT_DIR / f"ours-{name}.json")]))
    if not args.skip_beauty:
        results["beauty"] = {}
        if run_recbole:
            write_beauty_atomic(OUT_DIR / "recbole-data")
            jobs.append(("beauty", "recbole", driver + ["evalbeauty", "--threads", str(args.threads), "--data-path",
                                                        str(OUT_DIR / "recbole-data"), "--workdir",
                                                        str(OUT_DIR / "recbole-saved-beauty")]))
        jobs.append(("beauty", "ours", _ours_cmd("ours-beauty", "sasrec", args)))
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {pool.submit(_subprocess, cmd, args.timeout): (name, lib) for name, lib, cmd in jobs}
        for fut in as_completed(futures):
            name, lib = futures[fut]
            res = fut.result()
            (results["beauty"] if name == "beauty" else results["models"][name])[lib] = res
            log.info("%s / %s done: %s", name, lib, json.dumps({k: v for k, v in res.items() if k != "curve"}))
            _save(results, args.out)
    for name, row in results["models"].items():
        if name in RECBOLE_REF:
            row["recbole_summary"] = _recbole_summary(row.get("recbole"), RECBOLE_REF[name])
    results["table"] = table(results)
    _save(results, args.out)
    log.info("\n%s", results["table"])


def collect(out: Path) -> None:
    """Fill runs still in progress (or killed) from their per-epoch files under bench/out, then re-render the table."""
    results = json.loads(out.read_text(encoding="utf-8"))
    for name, row in results["models"].items():
        partial = OUT_DIR / f"ours-{name}.json"
        if ("ours" not in row or "error" in row["ours"]) and partial.is_file():
            row["ours"] = json.loads(partial.read_text(encoding="utf-8"))
        if name in RECBOLE_REF:
            row["recbole_summary"] = _recbole_summary(row.get("recbole"), RECBOLE_REF[name])
    results["table"] = table(results)
    _save(results, out)
    sys.stdout.write(results["table"] + "\n")


def _save(results: dict[str, Any], out: Path | None) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1), encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", nargs="?", default="all", choices=["all", "ours", "ours-beauty", "table", "collect"])
    p.add_argument("--model", default="sasrec", help="ours / ours-beauty: the model to train")
    p.add_argument("--models", nargs="+", default=["sasrec", "bert4rec", "gru4rec", "hstu"])
    p.add_argument("--recbole-epochs", type=int, default=1, help="cap on RecBole's epochs; 0 = use the issue figures")
    p.add_argument("--recbole-models", nargs="+", default=["sasrec", "bert4rec", "gru4rec"],
                   help="models RecBole is run for (the others use the issue's RecBole figures)")
    p.add_argument("--skip-beauty", action="store_true")
    p.add_argument("--only-beauty", action="store_true")
    p.add_argument("--epochs", type=int, default=200, help="our epoch cap (early stopping on valid NDCG@10)")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-seconds", type=float, default=0.0, help="ours: stop after the epoch passing this time")
    p.add_argument("--max-cpu-seconds", type=float, default=0.0,
                   help="ours: stop after the epoch passing this many CPU seconds (all threads)")
    p.add_argument("--parallel", type=int, default=1,
                   help="measurements run at once (>1 on a busy shared machine; compare CPU seconds then)")
    p.add_argument("--partial", type=Path, default=None, help="ours: rewrite this JSON after every epoch")
    p.add_argument("--reuse", type=Path, default=None, help="results JSON whose successful RecBole runs are kept")
    p.add_argument("--recbole-max-batches", type=int, default=0,
                   help="cap RecBole's epochs at this many batches (s/epoch extrapolated); 0 = full epochs")
    p.add_argument("--budget-s", type=float, default=0.0, help="RecBole's time budget (default: the issue's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], help="overrides for our models, e.g. dropout=0.3 sliding=true")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", type=Path, default=None, help="results JSON (task all), or the JSON to render (table)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.task == "ours":
        sys.stdout.write("\n" + json.dumps(run_ours(args)) + "\n")
    elif args.task == "ours-beauty":
        sys.stdout.write("\n" + json.dumps(run_ours_beauty(args)) + "\n")
    elif args.task == "table":
        sys.stdout.write(table(json.loads(args.out.read_text(encoding="utf-8"))) + "\n")
    elif args.task == "collect":
        collect(args.out)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
