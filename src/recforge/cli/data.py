"""Data subcommands: ``recforge data info NAME|PATH``, ``recforge data get NAME``, ``recforge data list``,
``recforge data synth preferences WORLD``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from recforge.errors import ConfigError

TIME_UNITS = ("s", "ms", "us", "ns", "auto")  # recforge.data.io.TIME_UNITS, kept literal so `--help` stays light


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``data info``, ``data get`` and ``data list``."""
    data = sub.add_parser("data", help="datasets: statistics, download, list")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    info = dsub.add_parser("info", help="statistics of a named dataset or an interaction file / dataset folder")
    info.add_argument("dataset", metavar="NAME|PATH", help="dataset name (see `recforge data list`) or a path")
    info.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    info.add_argument("--data-dir", default=None, help="data folder (default: $RECFORGE_DATA_DIR)")
    info.add_argument("--rating-threshold", type=float, default=None,
                      help="keep ratings >= this value as implicit feedback")
    info.add_argument("--duplicates", choices=("first", "last", "all", "sum"), default=None,
                      help="policy for repeated (user, item) pairs")
    info.add_argument("--min-user", type=int, default=0, help="k-core: minimum interactions per user")
    info.add_argument("--min-item", type=int, default=0, help="k-core: minimum interactions per item")
    add_reader_flags(info)
    info.set_defaults(func=run_info)

    get = dsub.add_parser("get", help="download a named dataset from its official URL and verify its sha256")
    get.add_argument("name", help="dataset name (see `recforge data list`)")
    get.add_argument("--dest", default=None, help="data folder to write into (default: $RECFORGE_DATA_DIR or ./data)")
    get.add_argument("--force", action="store_true", help="download again even if the files exist")
    get.set_defaults(func=run_get)

    lst = dsub.add_parser("list", help="named datasets with their licences")
    lst.set_defaults(func=run_list)

    synth = dsub.add_parser("synth", help="synthetic data with a known ground truth")
    ssub = synth.add_subparsers(dest="synth_kind", metavar="KIND")
    pref = ssub.add_parser("preferences", help="preference pairs of a synthetic world (a PreferencePairs parquet)")
    pref.add_argument("world", choices=("cyclic", "sources", "utility"),
                      help="cyclic: rock-paper-scissors; sources: annotator sources sharing one preference; utility: "
                           "a planted item utility on a sequential log (known optimum: item i0)")
    pref.add_argument("--out", required=True, help="the pair file to write (.parquet)")
    pref.add_argument("--pairs", type=int, default=None,
                      help="pairs (cyclic; default 3000), pairs per user (utility; default 4); sources: pairs of the "
                           "first source (default 6000)")
    pref.add_argument("--part", choices=("train", "valid", "shared"), default="train",
                      help="sources: the mixed training or validation pairs, or pairs of the shared preference alone")
    pref.add_argument("--log", default=None, help="utility: also write the interaction log (CSV user,item,time)")
    pref.add_argument("--seed", type=int, default=0)
    pref.set_defaults(func=run_synth_preferences)
    synth.set_defaults(func=lambda args: (synth.print_help(), 2)[1])
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])


def run_synth_preferences(args: argparse.Namespace) -> int:
    """Write a synthetic world's preference pairs (external ids) and its ground truth (``<out>.truth.json``: the item
    class, utility or shared utility by item id)."""
    from pathlib import Path

    import numpy as np

    from recforge.align import synthetic
    from recforge.data.split import leave_last_out

    out = Path(args.out)
    if out.suffix != ".parquet":
        raise ConfigError(f"--out must be a .parquet file, got {args.out!r}")
    if args.pairs is not None and args.pairs < 1:
        raise ConfigError(f"--pairs must be >= 1, got {args.pairs}")
    if args.log is not None and args.world != "utility":
        raise ConfigError("--log is for the utility world (the others have no interaction log)")
    if args.world == "cyclic":
        pairs = synthetic.cyclic_pairs(args.pairs or 3000, seed=args.seed)
        truth = {"item_class": pairs.meta["item_class"]}
    elif args.world == "sources":
        sizes = (args.pairs or 6000, 1000, 1000)
        pairs = synthetic.multi_source_pairs(sizes=sizes, seed=args.seed)[args.part]
        truth = {"shared_utility": pairs.meta["utility"]}
    else:
        data, utility = synthetic.planted_utility(seed=args.seed)
        pairs = synthetic.utility_pairs(leave_last_out(data), utility, args.pairs or 4, seed=args.seed)
        truth = {"utility": utility}
        if args.log:
            import polars as pl

            pl.DataFrame({"user": data.user_vocab.decode(data.user), "item": data.item_vocab.decode(data.item),
                          "time": data.time}).write_csv(args.log)
    out.parent.mkdir(parents=True, exist_ok=True)
    pairs.to_parquet(out)
    ids = pairs.item_vocab.decode(np.arange(1, len(pairs.item_vocab) + 1))
    known = {name: {str(i): float(v) for i, v in zip(ids, np.asarray(values)[1:])} for name, values in truth.items()}
    truth_file = out.with_suffix(".truth.json")
    truth_file.write_text(json.dumps({"world": args.world, "seed": args.seed, **known}, indent=1), encoding="utf-8")
    _console().print(f"{len(pairs)} {args.world} pairs (k={pairs.k}, sources {pairs.source_counts()}) -> {out}; "
                     f"ground truth -> {truth_file}" + (f"; log -> {args.log}" if args.log else ""))
    return 0


def _console() -> Any:
    from recforge.cli.console import console

    return console


def add_reader_flags(p: argparse.ArgumentParser) -> None:
    """The reader options of a plain interaction file, the same on every command that reads data
    (they mirror ``load_dataset`` / ``read_interactions`` keyword arguments)."""
    g = p.add_argument_group("reading a plain interaction file (CSV / TSV / JSONL / Parquet)")
    g.add_argument("--sep", default=None,
                   help="field separator (default: from the file name, else guessed); 'tab', 'space', ';', '|', ...")
    g.add_argument("--columns", default=None, metavar="ROLE=COL,...",
                   help="which column holds what, e.g. user=userId,item=movieId,time=timestamp,value=rating "
                        "(COL may be a 0-based position; default: recognised header names)")
    g.add_argument("--encoding", default=None, help="text encoding (default utf-8; e.g. latin-1, cp1252)")
    g.add_argument("--decimal", choices=(".", ","), default=None,
                   help="decimal mark of values (default: '.', and ',' when every non-number is written like 4,5)")
    g.add_argument("--time-unit", choices=TIME_UNITS, default=None,
                   help="unit of numeric timestamps since 1970 (default auto: decided from the whole column)")
    g.add_argument("--time-format", default=None, metavar="STRFTIME",
                   help="format of date-time text, e.g. '%%d/%%m/%%Y %%H:%%M' (default: ISO-8601)")
    g.add_argument("--no-header", action="store_true", help="the file has no header row")
    g.add_argument("--on-invalid", choices=("raise", "drop"), default=None,
                   help="rows with missing ids / bad times / bad values: stop with an error (default) or drop and "
                        "count them")


def reader_options(args: argparse.Namespace) -> dict[str, Any]:
    """The reader flags given on the command line as ``load_dataset`` options (absent flags are left out)."""
    sep = {"\\t": "\t", "tab": "\t", "space": " "}.get(args.sep, args.sep) if args.sep else None
    read: dict[str, Any] = {"columns": parse_columns(args.columns), "sep": sep, "encoding": args.encoding,
                            "decimal": args.decimal, "time_unit": args.time_unit, "time_format": args.time_format,
                            "on_invalid": args.on_invalid}
    read = {k: v for k, v in read.items() if v is not None}
    if args.no_header:
        read["header"] = False
    return read


def parse_columns(spec: str | None) -> dict[str, str | int] | None:
    """'user=userId,item=1' -> {"user": "userId", "item": 1} (digits are positions)."""
    if not spec:
        return None
    out: dict[str, str | int] = {}
    for part in spec.split(","):
        role, sep, col = part.partition("=")
        if not sep or not role.strip() or not col.strip():
            raise ConfigError(f"--columns expects ROLE=COLUMN pairs separated by commas, got {part!r}")
        col = col.strip()
        out[role.strip()] = int(col) if col.isdigit() else col
    return out


def run_info(args: argparse.Namespace) -> int:
    from recforge.data.datasets import load_dataset

    options: dict[str, Any] = {}
    if args.rating_threshold is not None:
        options["rating_threshold"] = args.rating_threshold
    if args.duplicates:
        options["duplicates"] = args.duplicates
    if args.min_user:
        options["min_user_interactions"] = args.min_user
    if args.min_item:
        options["min_item_interactions"] = args.min_item
    ds = load_dataset(args.dataset, data_dir=args.data_dir, **options, **reader_options(args))
    info = ds.info
    if args.format == "json":
        _console().print_json(json.dumps(_json_info(ds), default=str))
        return 0
    _print_table(ds.name, info, ds.catalog)
    return 0


def _json_info(ds: Any) -> dict[str, Any]:
    out = dict(ds.info)
    if ds.catalog is not None:
        out["catalog"] = {"items": ds.catalog.n_items, "attributes": ds.catalog.n_attributes,
                          "items_without_entry": ds.catalog.meta.get("missing_items", 0)}
    out["item_text"] = _item_text(ds.catalog)
    return out


def _item_text(catalog: Any) -> list[str]:
    """The catalogue's text fields (title, named attribute groups, free text); [] = no item text."""
    from recforge.text.templates import text_fields

    return text_fields(catalog)


def _print_table(name: str, info: dict[str, Any], catalog: Any) -> None:
    from rich.table import Table

    st = info["stats"]
    table = Table(title=f"{name}" + (" [bold red](PARTIAL)[/]" if info.get("partial") else ""), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("users", f"{st['users']:,}")
    table.add_row("items", f"{st['items']:,}")
    table.add_row("interactions", f"{st['interactions']:,}")
    table.add_row("density", f"{st['density']:.4%}")
    if "time" in st:
        t = st["time"]
        span = f"{t['first']} .. {t['last']} ({t['days']:,} days)" if t["kind"] == "unix" else \
            f"{t['kind']} clock {t['min']} .. {t['max']}"
        table.add_row("time span", span)
    if "history_length" in st:
        h = st["history_length"]
        table.add_row("history length", f"mean {h['mean']:.1f}; min {h['q0']:g} / q25 {h['q25']:g} / median "
                      f"{h['q50']:g} / q75 {h['q75']:g} / q90 {h['q90']:g} / max {h['q100']:g}")
        p = st["item_popularity"]
        table.add_row("popularity Gini", f"{p['gini']:.3f} (max {p['max']:,} interactions on one item)")
        v = st["value"]
        table.add_row("values", f"{v['min']:g} .. {v['max']:g} ({v['distinct']} distinct)")
    if st.get("duplicate_pairs_rows"):
        table.add_row("repeated pairs", f"{st['duplicate_pairs_rows']:,} rows repeat a (user, item) pair")
    if catalog is not None:
        table.add_row("catalog", f"{catalog.n_items:,} items, {catalog.n_attributes:,} attributes")
    fields = _item_text(catalog)
    table.add_row("item text", ", ".join(fields) if fields else "no item text (attribute ids only: describe items by "
                  "attributes)" if catalog is not None else "no item text (no catalogue)")
    load = info.get("load") or {}
    if load.get("removed"):
        table.add_row("removed on load", ", ".join(f"{k}: {v:,}" for k, v in load["removed"].items()))
    for note in load.get("notes", []):
        table.add_row("read", note)
    for step in info.get("preprocess", []):
        table.add_row(f"preprocess {step['step']}", ", ".join(f"{k}={v}" for k, v in step.items() if k != "step"))
    table.add_row("source", f"{info.get('origin')}: {info.get('path')}")
    if info.get("checksums"):
        ok = sum(v == "ok" for v in info["checksums"].values())
        table.add_row("sha256", f"{ok}/{len(info['checksums'])} files match the reference"
                      if len(info["checksums"]) > 1 or ok else ", ".join(f"{k}: {v}" for k, v in info["checksums"].items()))
    table.add_row("licence", info.get("licence", ""))
    for note in info.get("notes", []):
        table.add_row("note", f"[bold red]{note}[/]" if note.startswith("PARTIAL") else note)
    _console().print(table)


def run_get(args: argparse.Namespace) -> int:
    from recforge.data.datasets import DATASETS, data_dir_from_env, download

    if args.name not in DATASETS:
        raise ConfigError(f"unknown dataset {args.name!r} (known: {', '.join(DATASETS)})")
    dest = args.dest or data_dir_from_env() or "data"
    folder = download(args.name, dest, force=args.force)
    _console().print(f"{args.name}: files verified in [bold]{folder}[/]; use it with RECFORGE_DATA_DIR={dest}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from recforge.data.datasets import list_datasets

    table = Table(title="named datasets")
    for col in ("name", "description", "licence"):
        table.add_column(col, overflow="fold")
    for row in list_datasets():
        table.add_row(row["name"] + (" (partial)" if row["partial"] else ""), row["description"], row["licence"])
    _console().print(table)
    return 0
