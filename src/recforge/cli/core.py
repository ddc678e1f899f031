"""Core subcommands: train, evaluate, recommend, compare, quickstart."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from recforge.cli.data import add_reader_flags, reader_options
from recforge.errors import ConfigError, UnknownIdError

QUICKSTART_MODELS = ("popular", "itemknn", "ease", "als")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register train / evaluate / recommend / compare / quickstart."""
    p = sub.add_parser("train", help="train and evaluate a model; writes a run folder")
    p.add_argument("model", help="registered model name (see `recforge models`)")
    p.add_argument("--data", default=None, help="dataset name or path (default: the bundled ml-latest-small)")
    p.add_argument("--config", default=None, help="TOML run config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.l2=300 --set split.name=temporal")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="run folder (default: runs/<model>-<data>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN", help="resume an interrupted run folder (neural models)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="train N times (seeds seed..seed+N-1, one run folder each) and report mean ± CI across seeds")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run folder at --out (only once the new run succeeds)")
    add_reader_flags(p)
    p.add_argument("--refit", action="store_true",
                   help="fit on train + validation (settings already fixed, e.g. by `recforge tune`); test only")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="start from a shipped preset for this model and dataset, e.g. `tuned` (see docs/tuning.md)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run's saved model again (full ranking)")
    p.add_argument("run")
    p.add_argument("--on", choices=("valid", "test"), default="test")
    p.add_argument("--metrics", nargs="+", default=None)
    p.add_argument("--protocol", choices=("full", "sampled-uniform", "sampled-popularity"), default="full")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("recommend", help="top-k items for a user, or for an anonymous history, from a run folder")
    p.add_argument("run")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="external user id")
    who.add_argument("--history", nargs="+", metavar="ITEM",
                     help="an anonymous session: external item ids, oldest first (models that score histories)")
    p.add_argument("--times", nargs="+", type=int, metavar="T",
                   help="the history's timestamps, one per item, in the training data's unit (used by HSTU)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--include-seen", action="store_true", help="do not mask items the user already has")
    p.add_argument("--prefer", nargs="+", metavar="GROUP=VALUE", default=None,
                   help="steer a generative retriever trained with preference tokens (e.g. genre=Comedy)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fmt.add_argument("--ids-only", action="store_true", help="print the item ids only, one per line (for scripts)")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("compare", help="one leaderboard table over several run folders")
    p.add_argument("runs", nargs="+")
    p.add_argument("--on", choices=("valid", "test"), default="test")
    p.add_argument("--force", action="store_true", help="compare runs evaluated on different splits anyway")
    p.add_argument("--report", default=None, metavar="DIR", help="also write an HTML report with plots into DIR")
    p.add_argument("--metric", default="ndcg@10", help="metric for the report's significance tests and plots")
    p.add_argument("--test", choices=("wilcoxon", "t", "permutation", "bootstrap"), default="wilcoxon",
                   help="paired test of each run against the best (Holm-corrected)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("models", help="list registered models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("quickstart", help="train MostPopular, ItemKNN, EASE and ALS on the bundled dataset")
    p.add_argument("--out", default="runs/quickstart", help="folder of the runs (re-running replaces them)")
    p.add_argument("--data", default="ml-latest-small")
    add_reader_flags(p)
    p.set_defaults(func=cmd_quickstart)


def _console() -> Any:
    from recforge.cli.console import console

    return console


def _err_console() -> Any:
    """stderr: warnings that must not mix into ``--json`` output."""
    from recforge.cli.console import err_console

    return err_console


def cmd_train(args: argparse.Namespace) -> int:
    from recforge.experiments.runs import resolve_config, run_config, train_run

    if args.resume:  # an interrupted run folder has config.toml and checkpoints, not yet metrics.json
        cfg = run_config(args.resume)
        out = args.resume
    else:
        overrides = [*args.overrides, "refit=true"] if args.refit else args.overrides
        cfg = resolve_config(args.model, args.data, args.config, overrides, args.seed, preset=args.preset)
        cfg = with_reader_options(cfg, args)
        out = args.out
        if args.seeds is not None:
            from recforge.cli.evaluation import train_seeds_cmd

            return train_seeds_cmd(cfg, args.seeds, out, overwrite=args.overwrite)
    run = train_run(cfg, out=out, resume=bool(args.resume), overwrite=args.overwrite)
    if run is None:  # a non-zero torchrun rank: rank 0 reports
        return 0
    fit_on = "fit on train + validation" if run.config.refit else "fit on train"
    print_leaderboard([{"run": run.name, "model": run.meta["model"], "metrics": _public(run.metrics["test"])}],
                      title=f"test metrics ({run.meta['split']['splitter']}, {fit_on}, full ranking, "
                            "seen items masked)")
    _console().print(f"run folder: [bold]{run.path}[/]")
    return 0


def with_reader_options(cfg: Any, args: argparse.Namespace) -> Any:
    """``cfg`` with the reader flags (--sep, --columns, ...) added to its data section."""
    import dataclasses

    options = reader_options(args)
    return dataclasses.replace(cfg, data={**cfg.data, **options}) if options else cfg


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recforge.experiments.runs import load_run, reevaluate
    from recforge.metrics.ranking import parse_metric

    for name in args.metrics or ():  # before loading anything
        parse_metric(name)
    run = load_run(args.run)
    report = reevaluate(run, on=args.on, metrics=tuple(args.metrics) if args.metrics else None, protocol=args.protocol)
    for w in report.info["warnings"]:
        _console().print(f"[bold yellow]WARNING:[/] {w}")
    print_leaderboard([{"run": run.name, "model": run.meta["model"], "metrics": report.metrics}],
                      title=f"{args.on} metrics ({args.protocol} ranking, {report.info['n_users']} users)")
    return 0


def _lookup_user(vocab: Any, raw: str) -> Any:
    user = vocab.canonical(raw)  # CLI ids arrive as strings; datasets may use ints
    if user is None:
        raise UnknownIdError(f"unknown user {raw!r}")
    return user


def cmd_recommend(args: argparse.Namespace) -> int:
    from recforge.experiments.runs import load_run

    if args.times is not None and args.history is None:
        raise ConfigError("--times needs --history (one timestamp per history item)")
    run = load_run(args.run)
    model = run.model
    with _steering(model, args.prefer):
        if args.history is not None:
            known = [model.item_vocab.canonical(raw) for raw in args.history]
            history = [raw if item is None else item for raw, item in zip(args.history, known)]
            if all(item is None for item in known):  # as the server: an all-unknown history is an unknown user
                recs, ignored = model.recommend([None], k=args.k, on_unknown="popular"), list(args.history)
            else:
                recs, ignored = model.recommend_history(history, k=args.k, exclude_seen=not args.include_seen,
                                                        times=args.times)
            if recs.fallback[0]:
                _err_console().print("[bold yellow]WARNING:[/] no history item is known to the model: the most popular "
                                     "items (fallback)", highlight=False)
            if ignored:
                _err_console().print(f"[bold yellow]WARNING:[/] ignored {len(ignored)} unknown item(s): "
                                     f"{', '.join(map(str, ignored))}", highlight=False)
            title = f"top-{args.k} after a history of {len(history) - len(ignored)} item(s)"
        else:
            user = _lookup_user(model.user_vocab, args.user)
            recs, ignored = model.recommend([user], k=args.k, exclude_seen=not args.include_seen), []
            title = f"top-{args.k} for user {user}"
    items = list(recs.items[0])
    if args.ids_only:
        for item in items:
            print(item)  # plain stdout: no rich markup or wrapping for scripts
        return 0
    titles = _titles(run, items)
    if args.json:
        out = recs.to_dict()[0]
        if titles is not None:
            out["titles"] = titles
        if args.history is not None:
            out["ignored"] = ignored
        _console().print_json(json.dumps(out, default=str))
        return 0
    table = Table(title=title)
    table.add_column("rank", justify="right")
    table.add_column("item")
    if titles is not None:
        table.add_column("title", overflow="fold")
    table.add_column("score", justify="right")
    for rank, (item, score) in enumerate(zip(items, recs.scores[0]), 1):
        name = [] if titles is None else [titles[rank - 1] or ""]
        table.add_row(str(rank), str(item), *name, f"{score:.4f}")
    _console().print(table)
    return 0


def _steering(model: Any, prefer: list[str] | None) -> contextlib.AbstractContextManager[None]:
    """The model's steering context for ``--prefer`` values (a Steerable), else a no-op."""
    from recforge.protocols import Steerable

    if not prefer:
        return contextlib.nullcontext()
    if not isinstance(model, Steerable):
        raise ConfigError(f"--prefer needs a model steered by preference tokens (tiger or tiger_decoder trained with "
                          f"preference=<attribute group>); {model.name} is not")
    return model.steer(prefer)


def _titles(run: Any, items: list[Any]) -> list[str | None] | None:
    """Titles of ``items`` from the run's dataset catalogue; None when it has no titles or cannot be loaded."""
    from recforge.errors import RecforgeError
    from recforge.experiments.runs import load_data

    try:
        catalog = load_data(run.config).catalog
    except RecforgeError as exc:
        _err_console().print(f"[bold yellow]WARNING:[/] no titles (cannot load the run's data: {exc})",
                             highlight=False, soft_wrap=True)
        return None
    if catalog is None or not any(catalog.titles[1:]):
        return None
    dense = catalog.item_vocab.encode(items, on_unknown="zero")
    return [catalog.titles[int(i)] if i > 0 else None for i in dense]


def _public(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if not k.startswith("_")}


def print_leaderboard(rows: list[dict[str, Any]], title: str, max_metrics: int = 4) -> None:
    """Rows of {"run", "model", "metrics": {name: {mean, ci_low, ci_high}}} as a rich table (mean [95% CI]).

    Shows the first ``max_metrics`` metrics so that the table fits a terminal; metrics.json has them all.
    """
    names = list(rows[0]["metrics"])[:max_metrics] if rows else []
    table = Table(title=title)
    table.add_column("run", overflow="fold")
    table.add_column("model")
    for n in names:
        table.add_column(n, justify="right")
    for row in rows:
        cells = []
        for n in names:
            m = row["metrics"].get(n)
            cells.append("-" if m is None else f"{m['mean']:.4f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]")
        table.add_row(Path(row["run"]).name, str(row["model"]), *cells)
    _console().print(table)
    _console().print("[dim]mean [95% bootstrap CI] over users[/]")


def cmd_compare(args: argparse.Namespace) -> int:
    from recforge.experiments.runs import compare_runs

    rows = compare_runs(args.runs, on=args.on, force=args.force)
    rows.sort(key=lambda r: -next(iter(r["metrics"].values()))["mean"])
    print_leaderboard(rows, title=f"{args.on} leaderboard")
    if args.report:
        from recforge.cli.evaluation import write_report

        return write_report(args)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from recforge.registry import MODELS

    for name, target in MODELS.items():
        _console().print(f"{name:12s} {target}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """The main job: the classic models on the bundled ML-latest-small, one leaderboard with CIs."""
    from recforge.experiments.runs import load_data, make_split, resolve_config, train_run

    console = _console()
    base = with_reader_options(resolve_config("popular", args.data), args)
    dataset = load_data(base)
    split = make_split(base, dataset.interactions)
    console.print(f"[bold]recforge quickstart[/] on {args.data}: {split.summary()}")
    rows = []
    for name in QUICKSTART_MODELS:
        cfg = with_reader_options(resolve_config(name, args.data), args)
        with console.status(f"training {name} ..."):
            run = train_run(cfg, out=Path(args.out) / name, dataset=dataset, split=split, overwrite=True)
        rows.append({"run": str(run.path), "model": name, "metrics": _public(run.metrics["test"]),
                     "fit_s": run.meta["timings"]["fit_s"]})
        console.print(f"  {name}: fit {run.meta['timings']['fit_s']:.1f}s, "
                      f"ndcg@10 {run.metrics['test']['ndcg@10']['mean']:.4f}")
    rows.sort(key=lambda r: -r["metrics"]["ndcg@10"]["mean"])
    print_leaderboard(rows, title="quickstart leaderboard (leave-last-out, full ranking, seen items masked)")
    return 0
