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

    # on a given fitted run and reward model (alignment seed only), e.g. Amazon Beauty; then the seeds merged
    RECFORGE_DATA_DIR=../shared/data .venv/bin/python bench/align.py dpo --data amazon-beauty \
        --rec-run bench/out/align/sasrec-amazon-beauty-tuned-s0 --rm-run bench/out/align/rm_bt-amazon-beauty-big \
        --seeds 0 --lr 1e-4 --align-epochs 1 --out bench/results/align_dpo_beauty_s0.json
    .venv/bin/python bench/align.py summary --inputs bench/results/align_dpo_beauty_s0.json ... \
        --out bench/results/align_dpo_beauty.json

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


def _reference(data: str, model: str, seed: int, budget_s: int, out_dir: Path, rec_run: str | None) -> Any:
    """The fitted recommender: ``rec_run`` when given (e.g. a converged run trained once), else the bench's own run
    ``<model>-<data>-s<seed>`` (trained here with early stopping unless it exists)."""
    from recforge.experiments.runs import load_run, resolve_config, train_run

    if rec_run is not None:
        return load_run(rec_run)
    cfg = resolve_config(model, data, seed=seed, overrides=[
        "model.train.epochs=40", "model.train.patience=3", "model.train.threads=1", f"model.train.budget_s={budget_s}",
        f"model.train.seed={seed}"])
    sas_dir = out_dir / f"{model}-{data}-s{seed}"
    return load_run(sas_dir) if (sas_dir / "run.json").is_file() else train_run(cfg, out=sas_dir, progress=False)


def _run_name(ref: Any, data: str, model: str, seed: int, rec_run: str | None, setting: str) -> str:
    """Aligned run folder name: ``<model>-<data>-<setting>-s<seed>`` for the bench's own reference runs, or
    ``<reference run>-<setting>-a<seed>`` (a: the alignment seed) on a given ``rec_run``."""
    return f"{ref.path.name}-{setting}-a{seed}" if rec_run is not None else f"{model}-{data}-{setting}-s{seed}"


class _Paired:
    """Per-user test figures of a reference run, for paired tests of aligned runs against it: NDCG@10 and Recall@10
    from per_user.parquet, the reward-model score of each user's top-10 (the definition of ``recforge align``:
    100 fixed unseen comparison items per user, seeded by the alignment seed)."""

    def __init__(self, ref: Any, rm_path: Path, seed: int) -> None:
        from recforge.cli.rm import reward_run
        from recforge.experiments.runs import load_data, make_split

        self.rm, _ = reward_run(rm_path)
        self.split = make_split(ref.config, load_data(ref.config).interactions)
        self.seed = seed
        self.ref = self.per_user(ref.path)

    def per_user(self, run_dir: Path) -> dict[str, np.ndarray]:
        import polars as pl

        from recforge.cli.align import _reward_at_10

        df = pl.read_parquet(run_dir / "per_user.parquet").sort("user")
        users = df["user"].to_numpy()
        reward = _reward_at_10(self.rm, self.split, users, np.asarray(df["top_items"].to_list()), self.seed)
        return {"users": users, "ndcg@10": df["ndcg@10"].to_numpy(), "recall@10": df["recall@10"].to_numpy(),
                "reward@10": reward}

    def against_reference(self, run_dir: Path) -> dict[str, dict[str, float]]:
        """Paired bootstrap (2,000 resamples) of each metric's per-user difference to the reference, with the
        relative change and its CI (the difference's CI over the reference mean)."""
        from recforge.metrics.stats import paired_bootstrap

        a = self.per_user(run_dir)
        if not np.array_equal(a["users"], self.ref["users"]):
            raise ValueError(f"{run_dir}: not the reference's test users")
        out = {}
        for metric in ("reward@10", "ndcg@10", "recall@10"):
            test = paired_bootstrap(a[metric], self.ref[metric], n_boot=2000, seed=self.seed)
            base = float(self.ref[metric].mean())
            out[metric] = {**test, "mean": float(a[metric].mean()), "reference": base, "rel": test["diff"] / base,
                           "rel_ci": [test["ci_low"] / base, test["ci_high"] / base]}
        return out


def dpo(data: str, betas: list[float], rm_epochs: int, lr: float, positions: str, epochs: int, out_dir: Path,
        seed: int, model: str = "sasrec", budget_s: int = 600, rec_run: str | None = None,
        rm_run: str | None = None, sdpo_betas: tuple[float, ...] = (0.1,)) -> dict[str, Any]:
    """One DPO round per beta (and S-DPO with K = 3 per ``sdpo_betas``) with model-hard pairs on one reference run;
    ``seed`` is the alignment seed (batch order, validation sample, comparison items) and, without ``rec_run`` /
    ``rm_run``, also the seed of the recommender and reward model trained here. A finished aligned run folder of the
    same name is reused."""
    from recforge.cli.align import align_run
    from recforge.cli.rm import train_reward_run
    from recforge.experiments.runs import load_run

    l0 = _load()
    t0 = time.perf_counter()
    sas = _reference(data, model, seed, budget_s, out_dir, rec_run)
    sas_s = time.perf_counter() - t0
    curves = json.loads((sas.path / "curves.json").read_text()) if (sas.path / "curves.json").is_file() else {}
    rm = Path(rm_run) if rm_run is not None else out_dir / f"rm_bt-{data}-s{seed}"
    if not (rm / "run.json").is_file():
        train_reward_run("rm_bt", data, "leave_last_out", "random", "all", {"epochs": rm_epochs, "max_len": RM_LEN},
                         seed, str(rm))
    base = {"run": str(sas.path), "ndcg@10": sas.metrics["test"]["ndcg@10"]["mean"],
            "recall@10": sas.metrics["test"]["recall@10"]["mean"], "valid_ndcg@10": sas.metrics["valid"]["ndcg@10"]["mean"],
            "fit_s": sas.meta["timings"]["fit_s"], "curves": curves}
    paired_ref = _Paired(sas, rm, seed) if rec_run is not None else None
    rows = []
    settings = [("dpo", b, 1) for b in betas] + [("sdpo", b, 3) for b in sdpo_betas]
    for method, beta, k in settings:
        t1, l1 = time.perf_counter(), _load()
        out = out_dir / _run_name(sas, data, model, seed, rec_run, f"{method}-b{beta}-k{k}")
        if not (out / "run.json").is_file():
            align_run(str(sas.path), method, "model-hard", k, positions, beta, epochs, lr, 256, str(rm), seed,
                      str(out), keep="last")
        run = load_run(out)
        al = run.meta["alignment"]
        row = {"method": method, "beta": beta, "k": k, "run": str(out), "pairs": al["pairs"]["n"],
               "reward@10_before": al["reward@10"]["before"], "reward@10_after": al["reward@10"]["after"],
               "ndcg@10": run.metrics["test"]["ndcg@10"]["mean"], "recall@10": run.metrics["test"]["recall@10"]["mean"],
               "valid_ndcg@10": run.metrics["valid"]["ndcg@10"]["mean"],
               "best_epoch": al["best_epoch"], "history": al["history"], "align_fit_s": run.meta["timings"]["fit_s"],
               "timings": run.meta["timings"], "seconds": round(time.perf_counter() - t1, 1), "load": [l1, _load()]}
        row["reward_change"] = row["reward@10_after"] / row["reward@10_before"] - 1
        row["ndcg_change"] = row["ndcg@10"] / base["ndcg@10"] - 1
        row["recall_change"] = row["recall@10"] / base["recall@10"] - 1
        if paired_ref is not None:
            row["paired"] = paired_ref.against_reference(out)
        rows.append(row)
        print(json.dumps({k2: v for k2, v in row.items() if k2 not in ("history", "paired")}), flush=True)
    return {"data": data, "model": model, "seed": seed, "sasrec": base, "sasrec_total_s": round(sas_s, 1), "rm_run": str(rm),
            "rows": rows, "load_start": l0, "lr": lr, "positions": positions, "align_epochs": epochs}


def test_coverage(run_dir: Path, n_items: int) -> float:
    """Catalogue coverage of a run's test top-10 lists (per_user.parquet)."""
    import polars as pl

    from recforge.evaluate.beyond import catalog_coverage

    top = np.asarray(pl.read_parquet(run_dir / "per_user.parquet")["top_items"].to_list())[:, :10]
    return catalog_coverage(top, n_items)


def ipa_bench(data: str, rounds: int, lr: float, epochs: int, beta: float, out_dir: Path, seed: int,
              constraint: str, model: str = "sasrec", rec_run: str | None = None, rm_run: str | None = None,
              settings: tuple[str, ...] = ("ipa", "constrained"), dual_step: float = 5.0) -> dict[str, Any]:
    """IPA without and with ``constraint`` on the recommender run and reward model that ``dpo`` used (``rec_run`` /
    ``rm_run``, else the ones ``dpo`` trained); a finished run folder of the same name is reused."""
    from recforge.cli.align import align_run
    from recforge.experiments.runs import load_run

    sas = load_run(rec_run) if rec_run is not None else load_run(out_dir / f"{model}-{data}-s{seed}")
    rm = Path(rm_run) if rm_run is not None else out_dir / f"rm_bt-{data}-s{seed}"
    n_items = sas.model.n_items
    base = {"ndcg@10": sas.metrics["test"]["ndcg@10"]["mean"], "recall@10": sas.metrics["test"]["recall@10"]["mean"],
            "coverage@10": test_coverage(sas.path, n_items)}
    paired_ref = _Paired(sas, rm, seed) if rec_run is not None else None
    rows = []
    for key, label, constraints in (("ipa", "ipa", []), ("constrained", "ipa+" + constraint, [constraint])):
        if key not in settings:
            continue
        t1, l1 = time.perf_counter(), _load()
        setting = f"{label.replace('@', '').replace('>=', '-ge-')}-r{rounds}" + (
            f"-ds{dual_step:g}" if constraints and dual_step != 5.0 else "")
        out = out_dir / _run_name(sas, data, model, seed, rec_run, setting)
        if not (out / "run.json").is_file():
            align_run(str(sas.path), "ipa", "model-hard", 1, "last", beta, epochs, lr, 256, str(rm), seed, str(out),
                      keep="reward", rounds=rounds, candidates=10, constraints=constraints, dual_step=dual_step)
        run = load_run(out)
        al = run.meta["alignment"]
        row = {"setting": label, "rounds": rounds, "best_round": al["best_round"], "history": al["history"],
               "reward@10_before": al["reward@10"]["before"], "reward@10_after": al["reward@10"]["after"],
               "ndcg@10": run.metrics["test"]["ndcg@10"]["mean"], "recall@10": run.metrics["test"]["recall@10"]["mean"],
               "coverage@10": test_coverage(run.path, n_items), "valid_ndcg@10": run.metrics["valid"]["ndcg@10"]["mean"],
               "align_fit_s": run.meta["timings"]["fit_s"], "timings": run.meta["timings"],
               "seconds": round(time.perf_counter() - t1, 1), "load": [l1, _load()]}
        row["reward_change"] = row["reward@10_after"] / row["reward@10_before"] - 1
        row["ndcg_change"] = row["ndcg@10"] / base["ndcg@10"] - 1
        row["recall_change"] = row["recall@10"] / base["recall@10"] - 1
        if paired_ref is not None:
            row["paired"] = paired_ref.against_reference(out)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("history", "paired")}), flush=True)
    return {"data": data, "model": model, "seed": seed, "sasrec": base, "rows": rows, "lr": lr, "align_epochs": epochs, "beta": beta,
            "constraint": constraint, "dual_step": dual_step}


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


def cost(data: str, out_dir: Path, seed: int, rec_run: str | None = None) -> dict[str, Any]:
    """One SASRec epoch (its defaults: batch 256 sequences, no validation) against one DPO epoch over model-hard pairs
    at each user's last training event (batch 256; the reference pass included), each in its own process."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    rows = []
    for what in ("sasrec", "dpo"):
        q = ctx.Queue()
        l0 = _load()
        run_dir = rec_run if rec_run is not None else str(out_dir / f"sasrec-{data}-s{seed}")
        proc = ctx.Process(target=_cost_child, args=(what, run_dir, q))
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


def sweep_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting (method, beta, K), the mean over alignment seeds of the test figures and their relative changes,
    validation NDCG@10, and how many seeds' paired tests against the reference reach p < 0.05; the chosen beta is
    the DPO beta of highest mean validation NDCG@10 (full validation part)."""
    groups: dict[tuple[str, float, int], list[dict[str, Any]]] = {}
    for res in results:
        for row in res["rows"]:
            groups.setdefault((row["method"], row["beta"], row["k"]), []).append(row)
    table = []
    for (method, beta, k), rows in groups.items():
        entry: dict[str, Any] = {"method": method, "beta": beta, "k": k, "seeds": len(rows)}
        for key in ("reward@10_before", "reward@10_after", "ndcg@10", "recall@10", "valid_ndcg@10", "reward_change",
                    "ndcg_change", "recall_change"):
            vals = np.array([r[key] for r in rows], float)
            entry[key] = float(vals.mean())
            entry[key + "_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        if all("paired" in r for r in rows):
            entry["paired"] = {m: {"rel": [r["paired"][m]["rel"] for r in rows],
                                   "rel_ci": [r["paired"][m]["rel_ci"] for r in rows],
                                   "p_value": [r["paired"][m]["p_value"] for r in rows]}
                               for m in ("reward@10", "ndcg@10", "recall@10")}
        table.append(entry)
    dpo_rows = [e for e in table if e["method"] == "dpo"]
    chosen = max(dpo_rows, key=lambda e: e["valid_ndcg@10"])["beta"] if dpo_rows else None
    ref = results[0]["sasrec"]
    return {"reference": {k: ref[k] for k in ("run", "ndcg@10", "recall@10", "valid_ndcg@10") if k in ref},
            "seeds": [r["seed"] for r in results], "chosen_beta": chosen, "table": table}


def plot(summary: dict[str, Any], title: str, path: Path) -> None:
    """Reward-model score of the test top-10 against test NDCG@10 over beta (DPO; mean over seeds, error bars one
    standard deviation), the reference as a black point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((e for e in summary["table"] if e["method"] == "dpo"), key=lambda e: e["beta"])
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.errorbar([e["reward@10_after"] for e in rows], [e["ndcg@10"] for e in rows],
                xerr=[e["reward@10_after_sd"] for e in rows], yerr=[e["ndcg@10_sd"] for e in rows], marker="o",
                capsize=3, label=f"DPO, model-hard pairs ({len(summary['seeds'])} seed(s))")
    for e in rows:
        ax.annotate(f"β={e['beta']:g}", (e["reward@10_after"], e["ndcg@10"]), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")
    for e in summary["table"]:
        if e["method"] == "sdpo":
            ax.scatter([e["reward@10_after"]], [e["ndcg@10"]], marker="s", color="tab:orange",
                       label=f"S-DPO K={e['k']}, β={e['beta']:g}")
    ax.scatter([rows[0]["reward@10_before"]], [summary["reference"]["ndcg@10"]], color="black",
               label="unaligned (reference)", zorder=3)
    ax.set_xlabel("reward-model score of the test top-10 (reward@10)")
    ax.set_ylabel("test NDCG@10")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("synthetic", "rm", "dpo", "ipa", "cost", "paired", "summary"))
    p.add_argument("--rec-run", default=None, help="align this fitted recommender run (default: train one per seed)")
    p.add_argument("--rm-run", default=None, help="the reward-model run (default: train one per seed)")
    p.add_argument("--sdpo-betas", type=float, nargs="*", default=[0.1], help="S-DPO (K=3) runs, one per beta")
    p.add_argument("--settings", nargs="+", default=["ipa", "constrained"], choices=("ipa", "constrained"),
                   help="ipa: which of the two IPA runs")
    p.add_argument("--inputs", nargs="+", default=[], help="summary: dpo result files to merge (seeds)")
    p.add_argument("--rounds", type=int, default=2, help="IPA rounds")
    p.add_argument("--model", default="sasrec", help="the aligned recommender (sasrec, hstu, ...)")
    p.add_argument("--budget-s", type=int, default=600, help="training budget of the recommender (seconds)")
    p.add_argument("--constraint", default="coverage@10>=sft", help="the constrained IPA run's constraint")
    p.add_argument("--data", default="ml-100k")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=6, help="reward-model epochs")
    p.add_argument("--betas", type=float, nargs="*", default=[0.05, 0.1, 0.5, 1.0])
    p.add_argument("--lr", type=float, default=1e-3, help="alignment learning rate")
    p.add_argument("--ipa-beta", type=float, default=0.1, help="beta of IPA's per-round DPO pass")
    p.add_argument("--dual-step", type=float, default=5.0, help="constrained IPA: dual-ascent step")
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
        result = {"rows": [cost(args.data, runs, s, args.rec_run) for s in args.seeds]}
    elif args.what == "ipa":
        result = {"rows": [ipa_bench(args.data, args.rounds, args.lr, args.align_epochs, args.ipa_beta, runs, s,
                                     args.constraint, args.model, args.rec_run, args.rm_run, tuple(args.settings),
                                     args.dual_step)
                           for s in args.seeds]}
    elif args.what == "summary":
        results = [seed_result for f in args.inputs for seed_result in json.loads(Path(f).read_text())["rows"]]
        result = sweep_summary(results)
        plot(result, f"DPO on {results[0]['model']} ({results[0]['data']}): reward vs NDCG over β",
             Path(args.out).with_suffix(".png"))
    else:
        result = {"rows": [dpo(args.data, args.betas, args.epochs, args.lr, args.positions, args.align_epochs, runs, s,
                               args.model, args.budget_s, args.rec_run, args.rm_run, tuple(args.sdpo_betas))
                           for s in args.seeds]}
        if args.betas:
            summary = sweep_summary(result["rows"])
            result["summary"] = summary
            plot(summary, f"DPO on {args.model} ({args.data}): reward vs NDCG over β", Path(args.out).with_suffix(".png"))
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
