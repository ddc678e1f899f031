"""Preference-learning figures for docs/alignment.md: synthetic reward-model targets, reward models on real data
(against ItemKNN scores as a reference), and DPO / S-DPO rounds on SASRec with a beta sweep.

    # synthetic worlds (GPM vs BT on cyclic pairs, MORE vs uniform on several sources), seeds 0..2
    .venv/bin/python bench/align.py synthetic --seeds 0 1 2 --out bench/results/align_synthetic.json

    # rm_bt on a dataset: held-out pairwise accuracy / AUC / ECE (raw and temperature-scaled) + ItemKNN's accuracy
    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/align.py rm --data amazon-beauty --epochs 6 \
        --out bench/results/align_rm_beauty.json

    # SASRec, one reward model, then one DPO round per beta (+ S-DPO K=3): reward@10, NDCG@10, Recall@10, cost
    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/align.py dpo --data ml-100k --betas 0.05 0.1 0.5 1 \
        --out bench/results/align_dpo_ml-100k.json

    # IPA (2 rounds) unconstrained and under coverage@10>=sft, on the same SASRec and reward model as `dpo`
    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/align.py ipa --data ml-100k --lr 1e-4 \
        --out bench/results/align_ipa_ml-100k.json

    # cost: one SASRec training epoch vs one DPO epoch (model-hard pairs at each user's last training event, the
    # round measured above), time and peak RSS, each in a fresh process on the same fitted run
    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/align.py cost --data ml-100k \
        --out bench/results/align_cost_ml-100k.json

    # paired bootstrap (same test users) of NDCG@10 / Recall@10 between aligned runs and their reference
    .venv/bin/python bench/align.py paired --data ml-100k --out bench/results/align_paired_ml-100k.json

Every record carries the load average (1 min) at its start and end: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: reward-model history window (Amazon histories are short; 20 costs a tenth of 50's time per step)
RM_LEN = 20


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def synthetic(seeds: list[int]) -> dict[str, Any]:
    from recforge.align.checks import cyclic_check, sources_check
    from recforge.threads import single_thread

    rows = []
    with single_thread():
        for seed in seeds:
            t0, l0 = time.perf_counter(), _load()
            cyc = cyclic_check(seed)
            src = sources_check(seed)
            rows.append({"seed": seed, "cyclic_bt_accuracy": cyc["rm_bt"]["accuracy"],
                         "cyclic_gpm_accuracy": cyc["rm_gpm"]["accuracy"],
                         "shared_ece_uniform": src["uniform"]["raw"]["ece"], "shared_ece_more": src["more"]["raw"]["ece"],
                         "shared_ece_uniform_scaled": src["uniform"]["scaled"]["ece"],
                         "shared_ece_more_scaled": src["more"]["scaled"]["ece"],
                         "shared_acc_uniform": src["uniform"]["raw"]["accuracy"],
                         "shared_acc_more": src["more"]["raw"]["accuracy"],
                         "ece_reduction": src["ece_reduction"], "seconds": round(time.perf_counter() - t0, 1),
                         "load": [l0, _load()]})
            print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows}


def itemknn_accuracy(split: Any, pairs: Any) -> float:
    """Pairwise accuracy of ItemKNN scores (chosen vs rejected) on held-out pairs, ties 1/2."""
    from recforge.metrics.pointwise import pairwise_accuracy
    from recforge.models.itemknn import ItemKNN

    knn = ItemKNN().fit(split.train)
    margins = []
    for s in range(0, len(pairs), 2048):
        sub = pairs.select(np.arange(s, min(s + 2048, len(pairs))))
        hist, offsets = sub.histories()
        scores = knn.score_histories((np.array(hist), np.array(offsets))).double()
        rows = torch.arange(len(sub))
        c = scores[rows, torch.from_numpy(np.array(sub.chosen))]
        r = scores[rows, torch.from_numpy(np.array(sub.rejected[:, 0]))]
        margins.append(torch.nan_to_num(c - r, nan=0.0, posinf=0.0, neginf=0.0).numpy())
    return pairwise_accuracy(np.concatenate(margins))


def reward_models(data: str, epochs: int, out_dir: Path, seed: int) -> dict[str, Any]:
    from recforge.align.pairs import heldout_pairs
    from recforge.cli.rm import load_split, train_reward_run

    t0, l0 = time.perf_counter(), _load()
    run = out_dir / f"rm_bt-{data}-s{seed}"
    if not (run / "run.json").is_file():  # a finished run of the same command is reused
        train_reward_run("rm_bt", data, "leave_last_out", "random", "all", {"epochs": epochs, "max_len": RM_LEN},
                         seed, str(run))
    metrics = json.loads((run / "metrics.json").read_text())
    meta = json.loads((run / "run.json").read_text())
    _, split = load_split(data, "leave_last_out", seed)
    test_pairs = heldout_pairs(split, "test", "random", max_history=RM_LEN, seed=seed + 2000)
    rec = {"data": data, "seed": seed, "run": str(run), "test": metrics["test"], "test_scaled": metrics["test_scaled"],
           "temperature": meta["temperature"], "itemknn_accuracy": itemknn_accuracy(split, test_pairs),
           "epochs_run": len(meta["history"]), "fit_s": meta["timings"]["fit_s"],
           "seconds": round(time.perf_counter() - t0, 1), "load": [l0, _load()]}
    print(json.dumps({k: v for k, v in rec.items() if k not in ("test", "test_scaled")}), flush=True)
    return rec


def dpo(data: str, betas: list[float], rm_epochs: int, lr: float, positions: str, epochs: int, out_dir: Path,
        seed: int, model: str = "sasrec", budget_s: int = 600) -> dict[str, Any]:
    from recforge.cli.align import align_run
    from recforge.cli.rm import train_reward_run
    from recforge.experiments.runs import load_run, resolve_config, train_run

    l0 = _load()
    t0 = time.perf_counter()
    cfg = resolve_config(model, data, seed=seed, overrides=[
        "model.train.epochs=40", "model.train.patience=3", "model.train.threads=1", f"model.train.budget_s={budget_s}",
        f"model.train.seed={seed}"])  # the run seed does not reach the Trainer's own seed
    sas_dir = out_dir / f"{model}-{data}-s{seed}"
    sas = load_run(sas_dir) if (sas_dir / "run.json").is_file() else train_run(cfg, out=sas_dir, progress=False)
    sas_s = time.perf_counter() - t0
    curves = json.loads((sas.path / "curves.json").read_text()) if (sas.path / "curves.json").is_file() else {}
    rm = out_dir / f"rm_bt-{data}-s{seed}"
    if not (rm / "run.json").is_file():
        train_reward_run("rm_bt", data, "leave_last_out", "random", "all", {"epochs": rm_epochs, "max_len": RM_LEN},
                         seed, str(rm))
    base = {"ndcg@10": sas.metrics["test"]["ndcg@10"]["mean"], "recall@10": sas.metrics["test"]["recall@10"]["mean"],
            "fit_s": sas.meta["timings"]["fit_s"], "curves": curves}
    rows = []
    settings = [("dpo", b, 1) for b in betas] + [("sdpo", 0.1, 3)]
    for method, beta, k in settings:
        t1, l1 = time.perf_counter(), _load()
        out = align_run(str(sas.path), method, "model-hard", k, positions, beta, epochs, lr, 256, str(rm), seed,
                        str(out_dir / f"{model}-{data}-{method}-b{beta}-k{k}-s{seed}"), keep="last")
        run = load_run(out)
        al = run.meta["alignment"]
        row = {"method": method, "beta": beta, "k": k, "pairs": al["pairs"]["n"],
               "reward@10_before": al["reward@10"]["before"], "reward@10_after": al["reward@10"]["after"],
               "ndcg@10": run.metrics["test"]["ndcg@10"]["mean"], "recall@10": run.metrics["test"]["recall@10"]["mean"],
               "best_epoch": al["best_epoch"], "history": al["history"], "align_fit_s": run.meta["timings"]["fit_s"],
               "seconds": round(time.perf_counter() - t1, 1), "load": [l1, _load()]}
        row["reward_change"] = row["reward@10_after"] / row["reward@10_before"] - 1
        row["ndcg_change"] = row["ndcg@10"] / base["ndcg@10"] - 1
        row["recall_change"] = row["recall@10"] / base["recall@10"] - 1
        rows.append(row)
        print(json.dumps({k2: v for k2, v in row.items() if k2 != "history"}), flush=True)
    return {"data": data, "model": model, "seed": seed, "sasrec": base, "sasrec_total_s": round(sas_s, 1), "rm_run": str(rm),
            "rows": rows, "load_start": l0, "lr": lr, "positions": positions, "align_epochs": epochs}


def test_coverage(run_dir: Path, n_items: int) -> float:
    """Catalogue coverage of a run's test top-10 lists (per_user.parquet)."""
    import polars as pl

    from recforge.evaluate.beyond import catalog_coverage

    top = np.asarray(pl.read_parquet(run_dir / "per_user.parquet")["top_items"].to_list())[:, :10]
    return catalog_coverage(top, n_items)


def ipa_bench(data: str, rounds: int, lr: float, epochs: int, beta: float, out_dir: Path, seed: int,
              constraint: str, model: str = "sasrec") -> dict[str, Any]:
    """IPA without and with ``constraint`` on the SASRec run and reward model that ``dpo`` trained (reused)."""
    from recforge.cli.align import align_run
    from recforge.experiments.runs import load_run

    sas = load_run(out_dir / f"{model}-{data}-s{seed}")
    rm = out_dir / f"rm_bt-{data}-s{seed}"
    n_items = sas.model.n_items
    base = {"ndcg@10": sas.metrics["test"]["ndcg@10"]["mean"], "recall@10": sas.metrics["test"]["recall@10"]["mean"],
            "coverage@10": test_coverage(sas.path, n_items)}
    rows = []
    for label, constraints in (("ipa", []), ("ipa+" + constraint, [constraint])):
        t1, l1 = time.perf_counter(), _load()
        out = align_run(str(sas.path), "ipa", "model-hard", 1, "last", beta, epochs, lr, 256, str(rm), seed,
                        str(out_dir / f"{model}-{data}-{label.replace('@', '').replace('>=', '-ge-')}-r{rounds}-s{seed}"),
                        keep="reward", rounds=rounds, candidates=10, constraints=constraints)
        run = load_run(out)
        al = run.meta["alignment"]
        row = {"setting": label, "rounds": rounds, "best_round": al["best_round"], "history": al["history"],
               "reward@10_before": al["reward@10"]["before"], "reward@10_after": al["reward@10"]["after"],
               "ndcg@10": run.metrics["test"]["ndcg@10"]["mean"], "recall@10": run.metrics["test"]["recall@10"]["mean"],
               "coverage@10": test_coverage(run.path, n_items),
               "align_fit_s": run.meta["timings"]["fit_s"], "seconds": round(time.perf_counter() - t1, 1),
               "load": [l1, _load()]}
        row["reward_change"] = row["reward@10_after"] / row["reward@10_before"] - 1
        row["ndcg_change"] = row["ndcg@10"] / base["ndcg@10"] - 1
        row["recall_change"] = row["recall@10"] / base["recall@10"] - 1
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)
    return {"data": data, "model": model, "seed": seed, "sasrec": base, "rows": rows, "lr": lr, "align_epochs": epochs, "beta": beta,
            "constraint": constraint}


def _cost_child(what: str, run_dir: str, queue: Any) -> None:
    """One measurement in a fresh process: peak RSS before and after one epoch of SASRec training or of DPO."""
    import resource

    from recforge.align.dpo import AlignConfig, align
    from recforge.align.pairs import model_hard_pairs
    from recforge.data.preferences import build_pairs
    from recforge.experiments.runs import load_data, load_run, make_split

    torch.set_num_threads(1)
    run = load_run(run_dir)
    split = make_split(run.config, load_data(run.config).interactions)
    model = run.model
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if what == "sasrec":
        import dataclasses

        from recforge.models.sasrec import SASRec

        train_cfg = dataclasses.replace(model.config.train, epochs=1, patience=0)
        SASRec(dataclasses.replace(model.config, train=train_cfg)).fit(split.train)
        pairs_n = None
    else:
        pairs = model_hard_pairs(build_pairs(split, "random", positions="last", max_history=model.config.max_len),
                                 model, split=split)
        pairs_n = len(pairs)
        t0 = time.perf_counter()
        align(model, pairs, AlignConfig(epochs=1, batch_size=256))
    queue.put({"what": what, "epoch_s": round(time.perf_counter() - t0, 2), "pairs": pairs_n,
               "rss_before_mb": round(base, 1),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})


def cost(data: str, out_dir: Path, seed: int) -> dict[str, Any]:
    """One SASRec epoch (its defaults: batch 256 sequences, no validation) against one DPO epoch over model-hard pairs
    at each user's last training event (batch 256; the reference pass included), each in its own process."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    rows = []
    for what in ("sasrec", "dpo"):
        q = ctx.Queue()
        l0 = _load()
        proc = ctx.Process(target=_cost_child, args=(what, str(out_dir / f"sasrec-{data}-s{seed}"), q))
        proc.start()
        row = q.get()
        proc.join()
        row["load"] = [l0, _load()]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"data": data, "seed": seed, "rows": rows}


def paired(data: str, out_dir: Path, seed: int) -> dict[str, Any]:
    """Paired bootstrap of per-user NDCG@10 and Recall@10 (test users, 2000 resamples) of every IPA / DPO / S-DPO run
    of ``data`` against its reference and IPA against DPO, read from the run folders' per_user.parquet."""
    import polars as pl

    from recforge.metrics.stats import paired_bootstrap

    def per_user(name: str) -> pl.DataFrame | None:
        path = out_dir / name / "per_user.parquet"
        return pl.read_parquet(path).sort("user") if path.is_file() else None

    rows = []
    for model in ("sasrec", "hstu"):
        ref = f"{model}-{data}-s{seed}"
        runs = {"dpo": f"{model}-{data}-dpo-b0.1-k1-s{seed}", "sdpo": f"{model}-{data}-sdpo-b0.1-k3-s{seed}",
                "ipa": f"{model}-{data}-ipa-r2-s{seed}", "ipa+coverage": f"{model}-{data}-ipa+coverage10-ge-sft-r2-s{seed}"}
        pairs = [(k, v, "reference", ref) for k, v in runs.items()] + [("ipa", runs["ipa"], "dpo", runs["dpo"])]
        for a_label, a_name, b_label, b_name in pairs:
            a, b = per_user(a_name), per_user(b_name)
            if a is None or b is None:
                continue
            row = {"model": model, "a": a_label, "b": b_label}
            for metric in ("ndcg@10", "recall@10"):
                row[metric] = paired_bootstrap(a[metric].to_numpy(), b[metric].to_numpy(), n_boot=2000, seed=seed)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"data": data, "seed": seed, "rows": rows}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["method"] == "dpo"]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([r["reward@10_after"] for r in rows], [r["ndcg@10"] for r in rows], marker="o")
    for r in rows:
        ax.annotate(f"β={r['beta']}", (r["reward@10_after"], r["ndcg@10"]), fontsize=8)
    ax.scatter([rows[0]["reward@10_before"]], [result["sasrec"]["ndcg@10"]], color="black", label="SASRec (reference)")
    ax.set_xlabel("reward-model score of the test top-10")
    ax.set_ylabel("test NDCG@10")
    ax.set_title(f"DPO on {result.get('model', 'sasrec')} ({result['data']}): reward vs NDCG over β")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("synthetic", "rm", "dpo", "ipa", "cost", "paired"))
    p.add_argument("--rounds", type=int, default=2, help="IPA rounds")
    p.add_argument("--model", default="sasrec", help="the aligned recommender (sasrec, hstu, ...)")
    p.add_argument("--budget-s", type=int, default=600, help="training budget of the recommender (seconds)")
    p.add_argument("--constraint", default="coverage@10>=sft", help="the constrained IPA run's constraint")
    p.add_argument("--data", default="ml-100k")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=6, help="reward-model epochs")
    p.add_argument("--betas", type=float, nargs="+", default=[0.05, 0.1, 0.5, 1.0])
    p.add_argument("--lr", type=float, default=1e-3, help="alignment learning rate")
    p.add_argument("--align-epochs", type=int, default=5, help="alignment epochs (the best on validation is kept)")
    p.add_argument("--positions", choices=("last", "all"), default="last", help="alignment pairs per user")
    p.add_argument("--runs", default="bench/out/align", help="where run folders go")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)  # measured: one thread is 2x faster than two on the shared 2-core machine
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    if args.what == "synthetic":
        result = synthetic(args.seeds)
    elif args.what == "rm":
        result = {"rows": [reward_models(args.data, args.epochs, runs, s) for s in args.seeds]}
    elif args.what == "paired":
        result = paired(args.data, runs, args.seeds[0])
    elif args.what == "cost":
        result = {"rows": [cost(args.data, runs, s) for s in args.seeds]}
    elif args.what == "ipa":
        result = {"rows": [ipa_bench(args.data, args.rounds, args.lr, args.align_epochs, 0.1, runs, s,
                                     args.constraint, args.model) for s in args.seeds]}
    else:
        result = {"rows": [dpo(args.data, args.betas, args.epochs, args.lr, args.positions, args.align_epochs, runs, s,
                               args.model, args.budget_s) for s in args.seeds]}
        plot(result["rows"][0], Path(args.out).with_suffix(".png"))
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
