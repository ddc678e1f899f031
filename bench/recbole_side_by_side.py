"""recforge vs RecBole 1.2.1, symmetric: SASRec on the identical split, each to its own early-stopped optimum.

Both sides run in one session, one process each (peak RSS = that process's ``ru_maxrss``), one thread each
(``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``), with the same learning-rate grid, the same early-stopping
rule (validation NDCG@10, full ranking, seen items NOT masked — RecBole's sequential convention — stop after 10
evaluations without improvement, at most 300 epochs: RecBole's defaults) and an optional wall-clock cap. Every epoch
records validation NDCG@10 against wall-clock and process CPU seconds since training began (validation included:
both sides need it to stop). The test split is scored once per side, with the early-stopped (best-validation)
weights. No figure from another measurement enters a ratio: every ratio is between the two runs' own curves.

RecBole runs through bench/.recbole-venv/bin/python (see README.md in the peers folder; never a project dependency)
via bench/recbole_driver.py. The splits:

- ``ml-100k``: recbole-ml-100k-split.json in the peers folder — exactly what RecBole's dataloaders produce for its
  shipped ML-100K (float32-rescaled timestamp order), so both libraries hold out the same valid / test item per user.
- ``amazon-beauty``: Amazon Beauty (S3-Rec 5-core, under RECFORGE_DATA_DIR), leave-last-out by position: the last item
  of each user is the test item, the one before it the validation item, on both sides.

    # each side to its own optimum (RecBole capped at 5,400 s of wall-clock), a variant of ours, then the report
    OMP_NUM_THREADS=1 RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/recbole_side_by_side.py recbole \
        --dataset ml-100k --lr 1e-3 --max-seconds 5400
    OMP_NUM_THREADS=1 RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/recbole_side_by_side.py ours \
        --dataset ml-100k --lr 1e-3
    OMP_NUM_THREADS=1 RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/recbole_side_by_side.py ours \
        --dataset ml-100k --lr 1e-3 --variant sliding --set sliding=true
    .venv/bin/python bench/recbole_side_by_side.py report --dataset ml-100k --lr-grid 1e-3 --variants sliding
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
RESULTS_DIR = ROOT / "bench" / "results"
IMG_DIR = ROOT / "docs" / "img"
DATASETS = ("ml-100k", "amazon-beauty")

#: SASRec as RecBole configures it by default: max len 50, hidden 64, 2 layers, 2 heads, CE over all items.
OUR_CONFIG: dict[str, Any] = {"dim": 64, "n_layers": 2, "n_heads": 2, "max_len": 50, "loss": "ce"}
#: RecBole's early-stopping defaults, applied to both sides.
PATIENCE, MAX_EPOCHS = 10, 300


def tag(dataset: str) -> str:
    """File-name tag of a dataset: ``ml-100k`` -> ``ml100k``, ``amazon-beauty`` -> ``beauty``."""
    return {"ml-100k": "ml100k", "amazon-beauty": "beauty"}[dataset]


def lr_tag(lr: float) -> str:
    """``1e-3`` for 0.001, ``2e-3`` for 0.002 (file names)."""
    mant, exp = f"{lr:.0e}".split("e")
    return f"{mant}e{int(exp)}"


def run_key(side: str, variant: str = "") -> str:
    """``ours``, ``recbole``, or ``ours-<variant>`` for a named variant of our side."""
    return f"{side}-{variant}" if variant else side


def run_path(side: str, dataset: str, lr: float, variant: str = "") -> Path:
    """Where one side's run for (dataset, lr[, variant]) is written (per epoch while it runs, final when it ends)."""
    return OUT_DIR / f"{run_key(side, variant)}-{tag(dataset)}-sasrec-lr{lr_tag(lr)}.json"


# ---------------------------------------------------------------------------------------------- data
def load_split(path: Path = SPLIT_JSON) -> Any:
    """The RecBole split as a recforge Split (raw ids; train items in order, then valid, then test per user).

    Times keep RecBole's order exactly: with ML-100K's ratings under RECFORGE_DATA_DIR they are the real timestamps
    made non-decreasing along that order; otherwise positions 0, 1, 2, ... Interactions sorts stably by (user, time),
    so ties keep the JSON order.
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
    return Split(train=data.with_rows(part_arr == 0), valid=data.with_rows(part_arr == 1),
                 test=data.with_rows(part_arr == 2), name="recbole-ml-100k",
                 params={"source": path.name, "real_timestamps": stamps is not None})


def _ml100k_stamps() -> tuple[np.ndarray, np.ndarray] | None:
    """ML-100K's timestamps as (sorted keys user * 2**20 + item, timestamp per key), or None without the data."""
    base = os.environ.get("RECFORGE_DATA_DIR")
    f = Path(base) / "ml-100k" / "u.data" if base else None
    if f is None or not f.is_file():
        return None
    arr = np.loadtxt(f, dtype=np.int64)
    keys = arr[:, 0] * 2**20 + arr[:, 1]
    order = np.argsort(keys)
    return keys[order], arr[order, 3]


def beauty_split() -> Any:
    """Amazon Beauty, leave-last-out (last item test, the one before valid): RecBole's ``LS valid_and_test``."""
    from recforge.data.datasets import load_dataset
    from recforge.data.split import leave_last_out

    return leave_last_out(load_dataset("amazon-beauty").interactions)


def write_beauty_atomic(dest: Path) -> Path:
    """Amazon Beauty (S3-Rec format: ``user item item ...`` in time order) as RecBole's atomic ``beauty.inter``,
    the position in the sequence as timestamp."""
    base = os.environ.get("RECFORGE_DATA_DIR")
    if not base:
        raise SystemExit("RECFORGE_DATA_DIR is not set: Amazon Beauty is read from amazon-s3rec/Beauty.txt there")
    src = Path(base) / "amazon-s3rec" / "Beauty.txt"
    out = dest / "beauty" / "beauty.inter"
    out.parent.mkdir(parents=True, exist_ok=True)
    with src.open(encoding="utf-8") as f, out.open("w", encoding="utf-8") as g:
        g.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in f:
            user, *seq = line.split()
            g.writelines(f"{user}\t{item}\t{pos}\n" for pos, item in enumerate(seq))
    return out


# ---------------------------------------------------------------------------------------------- ours
class _Stop(Exception):
    """Raised from the epoch callback: early stopping, the wall-clock cap, or bench/out/STOP."""


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    """Train our SASRec with RecBole's early-stopping rule; the test split is scored once, with the best weights.

    The Trainer gets no validation data: the callback measures unmasked validation NDCG@10 itself (as RecBole does;
    counted in the timings), keeps the best weights and stops after ``PATIENCE`` epochs without improvement.
    """
    import torch

    from recforge.config import apply_overrides, from_dict
    from recforge.evaluate.evaluator import evaluate
    from recforge.registry import get_model

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    split = load_split() if args.dataset == "ml-100k" else beauty_split()
    cls = get_model("sasrec")
    raw = dict(OUR_CONFIG)
    raw["train"] = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": 0,
                    "threads": args.threads, "seed": 2020}
    raw = apply_overrides(raw, args.set)
    model = cls(from_dict(cls.config_class, raw))
    curve: list[dict[str, Any]] = []
    best: dict[str, Any] = {"valid": -1.0, "state": None, "epoch": 0}
    out_path = run_path("ours", args.dataset, args.lr, args.variant)
    w0, c0 = time.perf_counter(), time.process_time()

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        valid = evaluate(model, split, metrics=("ndcg@10",), on="valid", exclude_seen=False, n_boot=0,
                         progress=False).mean("ndcg@10")
        model.net_.train()  # scoring leaves the network in eval mode; the next epoch trains again
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        curve.append({"epoch": epoch, "elapsed_s": wall, "elapsed_cpu_s": cpu, "train_s": row["train_s"],
                      "valid_ndcg@10": valid, "load_avg_1m": os.getloadavg()[0]})
        if valid > best["valid"]:
            best.update(valid=valid, epoch=epoch,
                        state={k: v.detach().clone() for k, v in model.net_.state_dict().items()})
        _save(_ours_result(args, raw, curve, "in progress", load0, None), out_path)
        if epoch - best["epoch"] >= PATIENCE:
            raise _Stop("early stopping")
        if args.max_seconds and wall + (wall - (curve[-2]["elapsed_s"] if len(curve) > 1 else 0.0)) > args.max_seconds:
            raise _Stop(f"wall-clock cap ({args.max_seconds:.0f} s)")
        if (OUT_DIR / "STOP").exists():
            raise _Stop("stop file")

    model.callbacks.append(on_epoch)
    stopped_by = "epochs"
    try:
        model.fit(split.train)
    except _Stop as stop:
        stopped_by = str(stop)
    fit_s, fit_cpu_s = time.perf_counter() - w0, time.process_time() - c0
    model.net_.load_state_dict(best["state"])
    model.net_.eval()
    test = {}
    for prefix, mask in (("", False), ("masked_", True)):
        rep = evaluate(model, split, metrics=("ndcg@10", "recall@10"), on="test", exclude_seen=mask, n_boot=0,
                       progress=False)
        test |= {f"{prefix}test_ndcg@10": rep.mean("ndcg@10"), f"{prefix}test_recall@10": rep.mean("recall@10")}
    out = _ours_result(args, raw, curve, stopped_by, load0, test) | {"fit_s": fit_s, "fit_cpu_s": fit_cpu_s}
    _save(out, out_path)
    return out


def _ours_result(args: argparse.Namespace, raw: dict[str, Any], curve: list[dict[str, Any]], stopped_by: str,
                 load0: float, test: dict[str, float] | None) -> dict[str, Any]:
    import torch

    best = max(curve, key=lambda c: c["valid_ndcg@10"]) if curve else None
    return {
        "library": "recforge",
        "variant": args.variant,
        "model": "sasrec",
        "dataset": args.dataset,
        "lr": args.lr,
        "config": raw,
        "max_seconds": args.max_seconds,
        "stopped_by": stopped_by,
        "epochs_run": len(curve),
        "best_epoch": best["epoch"] if best else None,
        "best_valid_ndcg@10": best["valid_ndcg@10"] if best else None,
        **(test or {}),
        "curve": curve,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg_1m_start": load0,
        "load_avg_1m": os.getloadavg()[0],
    }


# ---------------------------------------------------------------------------------------------- RecBole
def recbole_cmd(args: argparse.Namespace) -> list[str]:
    """The driver command of one RecBole run (its own venv, one thread)."""
    cmd = [str(RECBOLE_PY), str(ROOT / "bench" / "recbole_driver.py"), "train", "--model", "SASRec",
           "--dataset", "ml-100k" if args.dataset == "ml-100k" else "beauty", "--lr", f"{args.lr:g}",
           "--epochs", str(args.epochs), "--max-seconds", f"{args.max_seconds:g}", "--threads", str(args.threads),
           "--workdir", str(OUT_DIR / f"recbole-saved-{tag(args.dataset)}-lr{lr_tag(args.lr)}"),
           "--partial", str(run_path("recbole", args.dataset, args.lr))]
    if args.dataset == "amazon-beauty":
        write_beauty_atomic(OUT_DIR / "recbole-data")
        cmd += ["--data-path", str(OUT_DIR / "recbole-data")]
    return cmd


def run_recbole(args: argparse.Namespace) -> dict[str, Any]:
    """Run the driver; its last stdout line is the result (also written where ``run_path`` says)."""
    if not RECBOLE_PY.is_file():
        raise SystemExit(f"{RECBOLE_PY} missing: set up RecBole as {PEERS_DIR / 'README.md'} says")
    load0 = os.getloadavg()[0]
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    proc = subprocess.run(recbole_cmd(args), capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"RecBole run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1]) | {"load_avg_1m_start": load0}
    _save(out, run_path("recbole", args.dataset, args.lr))
    return out


# ---------------------------------------------------------------------------------------------- report
def time_to(curve: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first epoch of ``curve`` whose validation NDCG@10 reaches ``target`` (None: never)."""
    return next((c for c in curve if c["valid_ndcg@10"] >= target), None)


def compare(ours: dict[str, Any], rb: dict[str, Any]) -> dict[str, Any]:
    """Time-to-quality both ways, from the two runs' own curves only.

    ``ours_to_recbole_best``: our first epoch reaching RecBole's best validation NDCG@10, against RecBole's time to
    that best; ``recbole_to_ours_best``: RecBole's first epoch reaching our best (None = never within its run),
    against our time to our best. Ratios are the other side's time over this side's (> 1: this side is faster).
    """
    out: dict[str, Any] = {}
    for name, me, other in (("ours_to_recbole_best", ours, rb), ("recbole_to_ours_best", rb, ours)):
        target = max(c["valid_ndcg@10"] for c in other["curve"])
        other_hit = time_to(other["curve"], target)
        hit = time_to(me["curve"], target)
        row = {"target_valid_ndcg@10": target, "epoch": hit["epoch"] if hit else None,
               "wall_s": hit["elapsed_s"] if hit else None, "cpu_s": hit["elapsed_cpu_s"] if hit else None,
               "other_epoch": other_hit["epoch"], "other_wall_s": other_hit["elapsed_s"],
               "other_cpu_s": other_hit["elapsed_cpu_s"]}
        if hit:
            row["speedup_wall"] = other_hit["elapsed_s"] / hit["elapsed_s"]
            row["speedup_cpu"] = other_hit["elapsed_cpu_s"] / hit["elapsed_cpu_s"]
        out[name] = row
    return out


def _median_step(curve: list[dict[str, Any]], key: str) -> float:
    """Median per-epoch increment of ``key`` (training + validation of one epoch)."""
    steps = np.diff([0.0] + [c[key] for c in curve])
    return float(np.median(steps))


def _fmt_s(x: float | None) -> str:
    return "never" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def ours_label(variant: str) -> str:
    """``recforge`` for our defaults, ``recforge (sliding)`` for a named variant."""
    return f"recforge ({variant})" if variant else "recforge"


def table(rb: dict[str, Any], ours: dict[str, dict[str, Any]], cmps: dict[str, dict[str, Any]]) -> str:
    """The markdown tables of the study page: one row per run (RecBole, then each of our variants by label), then
    time-to-quality both ways between RecBole and each of ours (``cmps[label]``: :func:`compare` of that run)."""
    rows = ["| library | lr | epochs (best / run) | stopped by | epoch wall / CPU s (median) | best valid NDCG@10 | "
            "time to best, wall / CPU s | test NDCG@10 / Recall@10 (best-valid weights) | peak RSS | "
            "load 1m start / end |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in (("RecBole 1.2.1", rb), *ours.items()):
        b = time_to(r["curve"], r["best_valid_ndcg@10"])
        rows.append(f"| {name} | {r['lr']:g} | {r['best_epoch']} / {r['epochs_run']} | {r['stopped_by']} | "
                    f"{_fmt_s(_median_step(r['curve'], 'elapsed_s'))} / "
                    f"{_fmt_s(_median_step(r['curve'], 'elapsed_cpu_s'))} | "
                    f"{r['best_valid_ndcg@10']:.4f} | {_fmt_s(b['elapsed_s'])} / {_fmt_s(b['elapsed_cpu_s'])} | "
                    f"{r['test_ndcg@10']:.4f} / {r['test_recall@10']:.4f} | {r['peak_rss_mb']:,.0f} MB | "
                    f"{r.get('load_avg_1m_start', float('nan')):.1f} / {r['load_avg_1m']:.1f} |")
    rows += ["", "| time to quality | target (valid NDCG@10) | reached at epoch | wall / CPU s | "
             "the other side's time to it, wall / CPU s | RecBole's time / recforge's, wall / CPU |",
             "|---|---|---|---|---|---|"]
    for name, cmp in cmps.items():
        for label, key in ((f"{name} to RecBole's best", "ours_to_recbole_best"),
                           (f"RecBole to {name}'s best", "recbole_to_ours_best")):
            c = cmp[key]
            # speedups are the other side's time over this side's: invert them where this side is RecBole
            sign = 1 if key == "ours_to_recbole_best" else -1
            ratio = (f"{c['speedup_wall'] ** sign:.1f}x / {c['speedup_cpu'] ** sign:.1f}x" if c["epoch"] else
                     "never (within its run)")
            rows.append(f"| {label} | {c['target_valid_ndcg@10']:.4f} | {c['epoch'] or 'never'} | "
                        f"{_fmt_s(c['wall_s'])} / {_fmt_s(c['cpu_s'])} | {_fmt_s(c['other_wall_s'])} / "
                        f"{_fmt_s(c['other_cpu_s'])} | {ratio} |")
    return "\n".join(rows)


def plot(dataset: str, rb: dict[str, Any], ours: dict[str, dict[str, Any]], paths: list[Path]) -> None:
    """Validation NDCG@10 per epoch against wall-clock (left) and process CPU seconds (right), every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = ("tab:blue", "tab:green", "tab:purple", "tab:orange")
    runs = [(rb, "RecBole 1.2.1", "tab:red")] + [(r, name, colors[i % len(colors)])
                                                  for i, (name, r) in enumerate(ours.items())]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, label in ((axes[0], "elapsed_s", "wall-clock seconds since training began"),
                           (axes[1], "elapsed_cpu_s", "process CPU seconds since training began")):
        for r, name, color in runs:
            x = [c[key] for c in r["curve"]]
            y = [c["valid_ndcg@10"] for c in r["curve"]]
            ax.plot(x, y, marker=".", color=color, label=f"{name} (lr {r['lr']:g}; {r['stopped_by']})")
            b = max(r["curve"], key=lambda c: c["valid_ndcg@10"])
            ax.plot([b[key]], [b["valid_ndcg@10"]], marker="*", markersize=13, color=color, linestyle="none")
            ax.axhline(b["valid_ndcg@10"], color=color, linewidth=0.6, linestyle=":")
        ax.set_xscale("log")
        ax.set_xlabel(label + " (log)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation NDCG@10 (full ranking, unmasked)")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"SASRec on {dataset}, 1 thread each: learning curves (star = best, kept for test)")
    fig.tight_layout()
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=110)
    plt.close(fig)


def report(args: argparse.Namespace) -> dict[str, Any]:
    """Combine the runs of each lr of the grid; each side (RecBole, our defaults, each of our ``--variants``) keeps
    its best-validation lr. Writes the results JSON, the plot (bench/results/ and docs/img/), prints the tables."""
    sides = [("recbole", "")] + [("ours", v) for v in ["", *args.variants]]
    runs = {run_key(side, v): [json.loads(run_path(side, args.dataset, lr, v).read_text(encoding="utf-8"))
                               for lr in args.lr_grid] for side, v in sides}
    for key, rs in runs.items():
        for r in rs:
            if "test_ndcg@10" not in r:
                raise SystemExit(f"{key} lr {r['lr']:g} on {args.dataset} has not finished (no test figures yet)")
    best = {key: max(rs, key=lambda r: r["best_valid_ndcg@10"]) for key, rs in runs.items()}
    rb = best.pop("recbole")
    ours = {ours_label(v): best[run_key("ours", v)] for _, v in sides[1:]}
    name = f"recbole-side-by-side-{tag(args.dataset)}"
    cmps = {label: compare(r, rb) for label, r in ours.items()}
    text = table(rb, ours, cmps)
    plot(args.dataset, rb, ours, [RESULTS_DIR / f"{name}.png", IMG_DIR / f"{name}.png"])
    results = {"dataset": args.dataset, "lr_grid": args.lr_grid,
               "chosen": {"recbole": rb["lr"]} | {key: r["lr"] for key, r in best.items()},
               "compare": cmps, "table": text, "runs": runs}
    _save(results, RESULTS_DIR / f"{name}.json")
    sys.stdout.write(text + "\n")
    return results


def _save(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    tmp.replace(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=["ours", "recbole", "report"])
    p.add_argument("--dataset", choices=DATASETS, default="ml-100k")
    p.add_argument("--lr", type=float, default=1e-3, help="ours / recbole: the learning rate of this run")
    p.add_argument("--lr-grid", type=float, nargs="+", default=[1e-3],
                   help="report: the grid both sides ran (each side keeps its best-validation lr)")
    p.add_argument("--epochs", type=int, default=MAX_EPOCHS, help="epoch cap (RecBole's default)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="ours: windows of 51 items per step (~3,200 targets; RecBole's 2,048 prefixes give 2,048)")
    p.add_argument("--max-seconds", type=float, default=0.0,
                   help="wall-clock cap: stop once the next epoch would end past it (0 = none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", nargs="*", default=[], help="ours: config overrides, e.g. dropout=0.5")
    p.add_argument("--variant", default="", help="ours: a name for a run with --set overrides (kept apart in files)")
    p.add_argument("--variants", nargs="*", default=[], help="report: our variants to add beside our defaults")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.task == "ours":
        out = run_ours(args)
    elif args.task == "recbole":
        out = run_recbole(args)
    else:
        report(args)
        return
    log.info("%s", json.dumps({k: v for k, v in out.items() if k != "curve"}))


if __name__ == "__main__":
    main()
