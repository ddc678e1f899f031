"""``recforge rm``: reward models — train, evaluate, bench, synth.

``train`` writes a run folder (kind ``reward-model``)::

    config.toml       reward model {name, **fields}, data, split, pairs, seed
    metrics.json      {"valid": {...}, "test": {...}, "test_scaled": {...}}: pairwise accuracy, AUC, ECE, log loss
    run.json          provenance, split summary + hash, timings, temperature, training curve
    reliability.png   reliability diagram of the test pairs before and after temperature scaling
    artifact/         the reward model (table "reward_model"; recforge.align.reward.load_reward_model)

``bench`` scores reward-model runs on the fixed suite of :mod:`recforge.align.bench` (one table; ``bench.json`` in
each run folder), or trains the named reward models on the synthetic worlds and scores them (``--synthetic``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from recforge.errors import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``recforge rm train|evaluate|bench|synth``."""
    rm = sub.add_parser("rm", help="reward models: train, evaluate, synthetic checks")
    rm_sub = rm.add_subparsers(dest="rm_command", metavar="RM_COMMAND")
    rm.set_defaults(func=lambda args: (rm.print_help(), 2)[1])

    p = rm_sub.add_parser("train", help="train a reward model on a split's training pairs; writes a run folder")
    p.add_argument("model", help="reward_model registry name (rm_bt, rm_gpm)")
    p.add_argument("--data", default="ml-latest-small", help="dataset name or path")
    p.add_argument("--split", default="leave_last_out", help="splitter (registry name, default parameters)")
    p.add_argument("--pairs", default="random", choices=("random", "popular", "ratings", "random+popular"),
                   help="rejected items of the training pairs (random+popular: both sources, for --set more=true)")
    p.add_argument("--positions", default="all", choices=("all", "last"),
                   help="training pairs at every event after the first (all) or the last one per user")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="reward-model config field, e.g. --set dim=32 --set more=true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/<model>-<data>-<time>)")
    p.set_defaults(func=cmd_train)

    p = rm_sub.add_parser("evaluate", help="score a reward-model run on held-out pairs of its split")
    p.add_argument("run")
    p.add_argument("--on", choices=("valid", "test"), default="test")
    p.add_argument("--rejected", choices=("random", "popular"), default="random")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = rm_sub.add_parser("bench", help="score reward models on a fixed suite of preference test sets (one table)")
    p.add_argument("runs", nargs="*", metavar="RUN", help="reward-model run folders (bench.json is written into each)")
    p.add_argument("--synthetic", nargs="*", metavar="MODEL", default=None,
                   help="train these registered reward models (default rm_bt rm_gpm) on the synthetic worlds and "
                        "score them there")
    p.add_argument("--epochs", type=int, default=None, help="--synthetic: epochs per world (default: the worlds')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the whole table as JSON to this file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = rm_sub.add_parser("synth", help="synthetic checks: cyclic (GPM vs BT) or sources (MORE vs uniform)")
    p.add_argument("world", choices=("cyclic", "sources"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_synth)


def _console() -> Any:
    from recforge.cli.console import console

    return console


def load_split(data: str, splitter: str, seed: int) -> tuple[Any, Any]:
    """(dataset, split) for a registered dataset name or path and a registered splitter with its defaults (seeded
    where the splitter takes a seed), as ``recforge train`` builds them."""
    from recforge.experiments.runs import RunConfig, load_data, make_split

    cfg = RunConfig(model={"name": "popular"}, seed=seed, data={"name": data}, split={"name": splitter})
    dataset = load_data(cfg)
    return dataset, make_split(cfg, dataset.interactions)


def _parse_overrides(overrides: list[str]) -> dict[str, Any]:
    from recforge.config import parse_value

    out = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def _report_row(name: str, rep: dict[str, Any]) -> list[str]:
    return [name, f"{rep['accuracy']:.4f}", f"{rep['auc']:.4f}", f"{rep['ece']:.4f}", f"{rep['log_loss']:.4f}",
            str(rep["n"])]


def _print_reports(title: str, rows: dict[str, dict[str, Any]]) -> None:
    table = Table(title=title)
    for col in ("pairs", "accuracy", "AUC", "ECE", "log loss", "n"):
        table.add_column(col, justify="right" if col != "pairs" else "left")
    for name, rep in rows.items():
        table.add_row(*_report_row(name, rep))
    _console().print(table)


def train_reward_run(model_name: str, data: str, splitter: str, pairs_kind: str, positions: str,
                     overrides: dict[str, Any], seed: int, out: str | None) -> Path:
    """Train, calibrate and evaluate a reward model; write its run folder. Returns the folder."""
    from recforge.align.evaluation import calibrate, pair_report, reliability_plot
    from recforge.align.pairs import heldout_pairs
    from recforge.config import to_dict
    from recforge.data.preferences import PreferencePairs, build_pairs
    from recforge.experiments.folder import RunFolder
    from recforge.experiments.provenance import dataset_files
    from recforge.registry import configured

    cls, rcfg = configured("reward_model", {"name": model_name, "seed": seed, **overrides})
    t0 = time.perf_counter()
    dataset, split = load_split(data, splitter, seed)
    kinds = pairs_kind.split("+")
    parts = [build_pairs(split, kind, positions=positions if kind != "ratings" else "last",
                         max_history=rcfg.max_len, seed=seed + i) for i, kind in enumerate(kinds)]
    train_pairs = parts[0] if len(parts) == 1 else PreferencePairs.concat(parts)
    train_pairs.meta["split_hash"] = split.hash
    valid_pairs = heldout_pairs(split, "valid", "random", max_history=rcfg.max_len, seed=seed + 1000)
    test_pairs = heldout_pairs(split, "test", "random", max_history=rcfg.max_len, seed=seed + 2000)
    t_data = time.perf_counter() - t0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = Path(out) if out else Path("runs") / f"{model_name}-{Path(data).stem}-{stamp}"
    config = {"reward_model": {"name": model_name, **to_dict(rcfg)}, "data": {"name": data},
              "split": {"name": splitter}, "pairs": {"rejected": pairs_kind, "positions": positions}, "seed": seed}
    with RunFolder.create(out_path, kind="reward-model", name=model_name, config=config, seed=seed) as run:
        t1 = time.perf_counter()
        model = cls(rcfg).fit(train_pairs, valid_pairs)
        fit_s = time.perf_counter() - t1
        raw_test = pair_report(model, test_pairs)
        temperature = calibrate(model, valid_pairs)
        model.info["split_hash"] = split.hash
        model.save(run.artifact_dir)
        scaled_test = pair_report(model, test_pairs)
        metrics = {"valid": pair_report(model, valid_pairs).to_dict(), "test": raw_test.to_dict(),
                   "test_scaled": scaled_test.to_dict()}
        run.write_metrics(metrics)
        reliability_plot({"raw": raw_test.reliability, f"T={temperature:.2f}": scaled_test.reliability},
                         run.path / "reliability.png", title=f"{model_name} on {Path(data).stem} test pairs")
        info = dict(getattr(dataset, "info", {}) or {})
        run.finish(data_files=info.get("files") or dataset_files(info), split=split, extra={
            "reward_model": model_name, "dataset": data, "split": split.summary(), "temperature": temperature,
            "pairs": {"train": len(train_pairs), "valid": len(valid_pairs), "test": len(test_pairs),
                      "sources": train_pairs.source_counts()},
            "history": model.history_,
            "timings": {"data_s": round(t_data, 3), "fit_s": round(fit_s, 3)}})
    return out_path


def cmd_train(args: argparse.Namespace) -> int:
    out = train_reward_run(args.model, args.data, args.split, args.pairs, args.positions,
                           _parse_overrides(args.overrides), args.seed, args.out)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    _print_reports(f"{args.model}: held-out pairs (uniform negatives)",
                   {"valid (scaled)": metrics["valid"], "test (raw)": metrics["test"],
                    "test (scaled)": metrics["test_scaled"]})
    _console().print(f"run folder: [bold]{out}[/]")
    return 0


def reward_run(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """(the reward model, run.json) of a reward-model run folder; DataError when it is not one."""
    from recforge.align.reward import load_reward_model
    from recforge.errors import DataError

    meta_file = Path(path) / "run.json"
    if not meta_file.is_file():
        raise DataError(f"not a run folder (missing run.json): {path}")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("kind") != "reward-model":
        raise DataError(f"{path} is a {meta.get('kind')} run, not a reward-model run")
    return load_reward_model(Path(path) / "artifact"), meta


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recforge.align.evaluation import pair_report
    from recforge.align.pairs import check_same_split, heldout_pairs
    from recforge.config import load_toml

    model, meta = reward_run(args.run)
    cfg = load_toml(Path(args.run) / "config.toml")
    _, split = load_split(cfg["data"]["name"], cfg["split"]["name"], int(cfg.get("seed", 0)))
    check_same_split("the reward model", model.split_hash, split)
    seed = int(cfg.get("seed", 0)) + (1000 if args.on == "valid" else 2000)
    pairs = heldout_pairs(split, args.on, args.rejected, max_history=model.config.max_len, seed=seed)
    rep = pair_report(model, pairs).to_dict()
    if args.json:
        _console().print_json(json.dumps(rep))
    else:
        _print_reports(f"{meta['name']}: {args.on} pairs ({args.rejected} negatives, T={model.temperature:.3f})",
                       {args.on: rep})
    return 0


def bench_runs(runs: list[str], seed: int = 0) -> dict[str, dict[str, Any]]:
    """{run: {set: report dict, "_skipped": {set: reason}}} for reward-model run folders on the suite of their split
    (hard negatives from ItemKNN fitted on the split's training part); writes ``bench.json`` into each run folder."""
    from recforge.align.bench import score_suite, split_suite
    from recforge.align.pairs import check_same_split
    from recforge.config import load_toml
    from recforge.models.itemknn import ItemKNN

    out: dict[str, dict[str, Any]] = {}
    suites: dict[tuple[str, int], Any] = {}
    for run in runs:
        model, _ = reward_run(run)
        cfg = load_toml(Path(run) / "config.toml")
        _, split = load_split(cfg["data"]["name"], cfg["split"]["name"], int(cfg.get("seed", 0)))
        check_same_split(f"the reward model of {run}", model.split_hash, split)
        key = (split.hash, int(model.config.max_len))
        if key not in suites:
            suites[key] = split_suite(split, ItemKNN().fit(split.train), max_history=key[1], seed=seed)
        sets, skipped = suites[key]
        res = {**score_suite(model, sets), "_skipped": skipped}
        tmp = Path(run) / "bench.json.tmp"  # written whole, then renamed: a failed bench leaves no half file
        tmp.write_text(json.dumps(res, indent=1), encoding="utf-8")
        tmp.replace(Path(run) / "bench.json")
        out[run] = res
    return out


def cmd_bench(args: argparse.Namespace) -> int:
    from recforge.align.bench import SPLIT_SETS, SYNTHETIC_SETS, synthetic_bench

    if not args.runs and args.synthetic is None:
        raise ConfigError("give reward-model run folders and/or --synthetic [MODEL ...]")
    res: dict[str, dict[str, Any]] = bench_runs(args.runs, args.seed) if args.runs else {}
    if args.synthetic is not None:
        res.update({f"{name} (synthetic)": rep for name, rep in synthetic_bench(
            args.synthetic or ["rm_bt", "rm_gpm"], args.seed, args.epochs).items()})
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1), encoding="utf-8")
    if args.json:
        _console().print_json(json.dumps(res))
        return 0
    table = Table(title="reward-model bench: accuracy / AUC / ECE (n comparisons)")
    table.add_column("test set")
    for name in res:
        table.add_column(name, justify="right")
    for set_name in (*SPLIT_SETS, *SYNTHETIC_SETS):
        if not any(set_name in r or set_name in r.get("_skipped", {}) for r in res.values()):
            continue
        cells = [f"{r[set_name]['accuracy']:.3f} / {r[set_name]['auc']:.3f} / {r[set_name]['ece']:.3f} "
                 f"({r[set_name]['n']})" if set_name in r else r.get("_skipped", {}).get(set_name, "-")
                 for r in res.values()]
        table.add_row(set_name, *cells)
    _console().print(table)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from recforge.align.checks import cyclic_check, sources_check

    if args.world == "cyclic":
        res = cyclic_check(args.seed)
        rows = res
    else:
        res = sources_check(args.seed)
        rows = {f"{k} ({part})": res[k][part] for k in ("uniform", "more") for part in ("raw", "scaled")}
    if args.json:
        _console().print_json(json.dumps(res, default=float))
        return 0
    _print_reports(f"synthetic {args.world} world (seed {args.seed})", rows)
    if args.world == "sources":
        _console().print(f"shared-preference ECE reduction of more vs uniform: {res['ece_reduction']:.1%} (raw), "
                         f"{res['ece_reduction_scaled']:.1%} (after temperature scaling)")
    return 0
