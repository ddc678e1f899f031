"""Evaluation subcommands: ``protocol-check`` (full vs. sampled ranking), plus the handlers behind
``recforge compare --report`` and ``recforge train --seeds`` (their flags live on the core parsers)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from recforge.cli.data import add_reader_flags
from recforge.errors import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``protocol-check``."""
    p = sub.add_parser("protocol-check",
                       help="evaluate models with full ranking and with sampled negatives; show ordering flips")
    p.add_argument("models", nargs="+", help="registered model names (at least two)")
    p.add_argument("--data", required=True, help="dataset name or path")
    p.add_argument("--metrics", nargs="+", default=["ndcg@10", "hit@10"])
    p.add_argument("--n-negatives", type=int, default=100)
    p.add_argument("--sampling", choices=("uniform", "popularity"), default="uniform")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value for every model, e.g. --set split.name=temporal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="also write the result as JSON")
    add_reader_flags(p)
    p.set_defaults(func=cmd_protocol_check)


def _console() -> Any:
    from recforge.cli.console import console

    return console


def cmd_protocol_check(args: argparse.Namespace) -> int:
    from recforge.cli.core import with_reader_options
    from recforge.evaluate.protocol import protocol_check
    from recforge.experiments.runs import (
        bind_side_information,
        build_model,
        load_data,
        make_split,
        resolve_config,
        seed_everything,
    )

    if len(args.models) < 2:
        raise ConfigError(f"protocol-check needs at least two models, got {args.models}")
    if args.n_negatives < 1:
        raise ConfigError(f"--n-negatives must be >= 1, got {args.n_negatives}")
    console = _console()
    cfgs = {m: with_reader_options(resolve_config(m, args.data, overrides=args.overrides, seed=args.seed), args)
            for m in args.models}
    first = cfgs[args.models[0]]
    data = load_data(first)
    split = make_split(first, data.interactions)
    models = {}
    for name, cfg in cfgs.items():
        seed_everything(cfg.seed)
        with console.status(f"fitting {name} ..."):
            models[name] = build_model(cfg)
            bind_side_information(models[name], data, split)
            models[name].fit(split.train, split.valid)
    res = protocol_check(models, split, metrics=tuple(args.metrics), n_negatives=args.n_negatives,
                         sampling=f"sampled-{args.sampling}", seed=args.seed, progress=False)
    print_protocol_check(res, args.data)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2), encoding="utf-8")
    return 0


def print_protocol_check(res: dict[str, Any], data: str) -> None:
    """Rich table of full vs. sampled metrics with ranks, then every flipped pair."""
    console = _console()
    table = Table(title=f"{data}: full ranking vs. {res['n_negatives']} {res['sampling']} negatives "
                        f"({res['n_users']} test users, split {res['split']} {res['split_hash']})")
    table.add_column("model")
    metrics = list(res["orderings"])
    for m in metrics:
        table.add_column(f"{m} full (rank)", justify="right")
        table.add_column(f"{m} sampled (rank)", justify="right")
    for name in res["full"]:
        cells = []
        for m in metrics:
            o = res["orderings"][m]
            cells.append(f"{res['full'][name][m]:.4f} ({o['full'].index(name) + 1})")
            cells.append(f"{res['sampled'][name][m]:.4f} ({o['sampled'].index(name) + 1})")
        table.add_row(name, *cells)
    console.print(table)
    for m in metrics:
        flips = res["flips"][m]
        tau = res["orderings"][m]["kendall_tau"]
        if not flips:
            console.print(f"{m}: same ordering under both protocols (Kendall tau {tau:.2f})")
        for f in flips:
            console.print(f"[bold yellow]{m} FLIP:[/] {f['full_better']} beats {f['full_worse']} with full ranking "
                          f"({f['full'][0]:.4f} > {f['full'][1]:.4f}) but loses with sampled negatives "
                          f"({f['sampled'][0]:.4f} < {f['sampled'][1]:.4f}); Kendall tau {tau:.2f}")


def write_report(args: argparse.Namespace) -> int:
    """``recforge compare RUN... --report DIR``: the HTML report (see recforge.experiments.report_html)."""
    from recforge.experiments.report_html import build_report
    from recforge.experiments.runs import load_run

    runs = [load_run(p) for p in args.runs]
    with _console().status("building the report (re-evaluating with sampled negatives, plotting) ..."):
        path = build_report(runs, args.report, force=args.force, metric=args.metric, test=args.test)
    _console().print(f"report: [bold]{path}[/] (and PNGs in {path.parent})")
    return 0


def train_seeds_cmd(cfg: Any, n_seeds: int, out: str | None, overwrite: bool = False) -> int:
    """``recforge train MODEL --seeds N``: N runs and a mean ± t-CI table across seeds."""
    from recforge.experiments.seeds import train_seeds

    res = train_seeds(cfg, n_seeds, out=out, overwrite=overwrite)
    table = Table(title=f"{res['model']} on {res['dataset']}: test metrics over seeds {res['seeds']}")
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    table.add_column("95% CI (t, across seeds)", justify="right")
    for m, a in res["aggregate"].items():
        table.add_row(m, f"{a['mean']:.4f} ± {a['std']:.4f}", f"[{a['ci_low']:.4f}, {a['ci_high']:.4f}]")
    _console().print(table)
    _console().print(f"runs: {', '.join(res['runs'])}")
    return 0
