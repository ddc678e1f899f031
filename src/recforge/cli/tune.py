"""``recforge tune``: hyper-parameter search on validation, optionally refit on train + validation and test once."""

from __future__ import annotations

import argparse
import shlex
import tomllib
from typing import Any

from recforge.cli.data import add_reader_flags
from recforge.errors import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``tune``."""
    p = sub.add_parser("tune", help="search a model's hyper-parameters on validation (Optuna); writes a tune run folder")
    p.add_argument("model", help="registered model name (see `recforge models`)")
    p.add_argument("--data", default=None, help="dataset name or path (default: the bundled ml-latest-small)")
    p.add_argument("--config", default=None, help="TOML run config (the base every trial starts from)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a config value (a fixed field is not searched), e.g. --set model.train.epochs=20")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--metric", default="ndcg@10", help="validation metric to maximise")
    p.add_argument("--sampler", choices=("tpe", "grid", "random"), default="tpe")
    p.add_argument("--trials", type=int, default=20,
                   help="finished trials the study should hold (over every process sharing it)")
    p.add_argument("--timeout", type=float, default=0.0, metavar="SECONDS",
                   help="start no new trial after this many seconds (0 = no limit)")
    p.add_argument("--grid-points", type=int, default=4, help="values per numeric parameter for --sampler grid")
    p.add_argument("--pruner", choices=("median", "none"), default="median",
                   help="prune neural trials whose validation curve falls behind the median")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="share one study between processes or machines (any SQLAlchemy URL, e.g. sqlite:///study.db)")
    p.add_argument("--study-name", default=None, help="the study's name in --storage (default: MODEL-DATA)")
    p.add_argument("--enqueue", action="append", default=[], metavar="KEY=VALUE,...",
                   help="a setting a new study tries first (repeatable), e.g. --enqueue l2=100,recency=0.6")
    p.add_argument("--refit", action="store_true",
                   help="then fit the chosen setting on train + validation and evaluate it once on test")
    p.add_argument("--out", default=None, help="tune run folder (default: runs/tune-<model>-<data>-<time>)")
    add_reader_flags(p)
    p.set_defaults(func=cmd_tune)


def command_line(args: argparse.Namespace) -> str:
    """The ``recforge tune`` command that reproduces this study (recorded in preset files)."""
    words = ["recforge", "tune", args.model]
    for flag, value, default in (("--data", args.data, None), ("--config", args.config, None),
                                 ("--seed", args.seed, None), ("--metric", args.metric, "ndcg@10"),
                                 ("--sampler", args.sampler, "tpe"), ("--trials", args.trials, 20),
                                 ("--timeout", args.timeout, 0.0), ("--grid-points", args.grid_points, 4),
                                 ("--pruner", args.pruner, "median")):
        if value != default:
            words += [flag, str(value)]
    for item in args.overrides:
        words += ["--set", item]
    for item in args.enqueue:
        words += ["--enqueue", item]
    if args.refit:
        words.append("--refit")
    return shlex.join(words)


def parse_setting(text: str) -> dict[str, Any]:
    """``"l2=100,recency=0.6"`` -> ``{"l2": 100, "recency": 0.6}`` (values read as TOML, else kept as strings)."""
    out: dict[str, Any] = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--enqueue {text!r}: expected KEY=VALUE[,KEY=VALUE...]")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out


def cmd_tune(args: argparse.Namespace) -> int:
    import optuna  # lazy: `recforge --help` must not load it

    from recforge.cli.console import console
    from recforge.cli.core import print_leaderboard, with_reader_options
    from recforge.experiments.runs import resolve_config
    from recforge.experiments.tune import TuneConfig, tune

    if not args.debug:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the CLI prints one line per trial itself
    cfg = with_reader_options(resolve_config(args.model, args.data, args.config, args.overrides, args.seed), args)
    tc = TuneConfig(metric=args.metric, sampler=args.sampler, trials=args.trials, timeout_s=args.timeout,
                    grid_points=args.grid_points, pruner=args.pruner, storage=args.storage,
                    study_name=args.study_name, refit=args.refit,
                    enqueue=tuple(parse_setting(item) for item in args.enqueue))

    def show(row: dict[str, Any]) -> None:
        value = "-" if row["value"] is None else f"{row['value']:.5f}"
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items())
        console.print(f"trial {row['number']:3d} {row['state']:8s} {args.metric} {value}  {params}", highlight=False)

    result = tune(cfg, tc, args.out, command=command_line(args), on_trial=show)
    console.print(f"best validation {args.metric} {result.best_value:.5f} ({result.n_finished} finished trials): "
                  f"{result.best_params}", highlight=False)
    if result.refit_run is not None:
        run = result.refit_run
        print_leaderboard([{"run": run.name, "model": run.meta["model"],
                            "metrics": {k: v for k, v in run.metrics["test"].items() if not k.startswith("_")}}],
                          title="test metrics of the refit on train + validation (evaluated once)")
    console.print(f"tune run folder: [bold]{result.path}[/]")
    return 0
