"""Semantic-ID subcommands: ``recforge sid build`` (a SID table from a dataset's training split) and ``recforge sid
inspect`` (collisions, codebook use, prefix coherence, popularity per first code; a table and a plot)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recforge.errors import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``sid build`` and ``sid inspect``."""
    sid = sub.add_parser("sid", help="semantic IDs for generative retrieval: build and inspect SID tables")
    ssub = sid.add_subparsers(dest="sid_command", metavar="SUBCOMMAND")

    build = ssub.add_parser("build", help="build a SID table from a dataset's training split")
    build.add_argument("--data", required=True, metavar="NAME|PATH", help="dataset name or folder")
    build.add_argument("--data-dir", default=None, help="data folder (default: $RECFORGE_DATA_DIR)")
    build.add_argument("--split", default="leave_last_out", help="registered splitter (default leave_last_out); the "
                       "table is tied to its training part")
    build.add_argument("--features", default="cf", help="sources joined by '+': cf, attributes, text (default cf)")
    build.add_argument("--tokenizer", default="rkmeans", help="rkmeans | balanced-rkmeans | rqvae (default rkmeans)")
    build.add_argument("--levels", type=int, default=3, help="L, codes per item (default 3)")
    build.add_argument("--codebook-size", type=int, default=256, help="K, values per code (default 256)")
    build.add_argument("--collisions", default="uniform", help="uniform | dedup (default uniform)")
    build.add_argument("--dim", type=int, default=64, help="SVD components per cf/attributes source (default 64)")
    build.add_argument("--epochs", type=int, default=200, help="training epochs of --tokenizer rqvae (default 200)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--embedder", default="hashing", help="text embedder for --features text (default hashing)")
    build.add_argument("--out", required=True, type=Path, help="folder to write the table to")
    build.set_defaults(func=run_build)

    insp = ssub.add_parser("inspect", help="collisions, codes per level, prefix coherence, popularity per first code")
    insp.add_argument("table", type=Path, help="a SID table folder")
    insp.add_argument("--plot", type=Path, default=None, help="PNG path (default: TABLE/inspect.png)")
    insp.add_argument("--format", choices=("table", "json"), default="table")
    insp.set_defaults(func=run_inspect)
    sid.set_defaults(func=lambda args: (sid.print_help(), 2)[1])


def run_build(args: argparse.Namespace) -> int:
    from recforge.cli.console import console
    from recforge.data.datasets import load_dataset
    from recforge.models.generative.semantic_ids import SidConfig, build_semantic_ids, parse_sources
    from recforge.registry import resolve

    cfg = SidConfig(features=args.features, tokenizer=args.tokenizer, levels=args.levels,
                    codebook_size=args.codebook_size, collisions=args.collisions, dim=args.dim, epochs=args.epochs,
                    seed=args.seed)
    resolve("tokenizer", cfg.tokenizer)  # an unknown tokenizer fails before the data is loaded
    ds = load_dataset(args.data, data_dir=args.data_dir)
    split = resolve("splitter", args.split)(ds.interactions)
    embedder = texts = None
    if "text" in parse_sources(cfg.features):
        if ds.catalog is None:
            raise ConfigError(f"features 'text' need an item catalogue, and {ds.name} has none")
        from recforge.text.templates import item_texts

        texts = item_texts(ds.catalog, on_missing_text="attr_only").texts
        embedder = resolve("embedder", args.embedder)()
    sids = build_semantic_ids(split.train, cfg, catalog=ds.catalog, embedder=embedder, texts=texts)
    sids.save(args.out)
    s = sids.stats
    console.print(f"{ds.name}: {sids.n_items:,} items -> {sids.length} tokens {list(sids.sizes)} "
                  f"({cfg.features}, {cfg.tokenizer}, {cfg.collisions}) in {s['seconds']:.1f}s; "
                  f"{100 * s['collided_share_before']:.1f}% of items collided before (largest group "
                  f"{s['largest_group_before']}), 0 after; hash {sids.hash}\n  {args.out}",
                  highlight=False, soft_wrap=True)
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from rich.table import Table

    from recforge.cli.console import console
    from recforge.models.generative.inspect import inspect_sids, plot_sids
    from recforge.models.generative.semantic_ids import SemanticIds

    sids = SemanticIds.load(args.table)
    rep = inspect_sids(sids)
    plot = plot_sids(sids, args.plot or Path(args.table) / "inspect.png")
    rep["plot"] = str(plot)
    if args.format == "json":
        console.print_json(json.dumps(rep))
        return 0
    before, after = rep["collisions"]["before"], rep["collisions"]["after"]
    coh = rep["prefix_coherence"]
    t = Table(title=f"SID table {rep['hash']}: {rep['n_items']:,} items, sizes {rep['sizes']}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("config", " ".join(f"{k}={v}" for k, v in rep["config"].items()))
    t.add_row("items collided before", f"{100 * before['collided_share']:.1f}% (largest group {before['largest_group']})")
    t.add_row("items collided after", f"{100 * after['collided_share']:.1f}% (largest group {after['largest_group']})")
    t.add_row("codes used per level", " / ".join(str(c) for c in rep["codes_used_per_level"]))
    t.add_row("prefix coherence", f"{coh['same_first_code']:.3f} same first code vs {coh['random_pairs']:.3f} random "
              f"(x{coh['ratio']:.2f}; {coh['measure']})")
    top = rep["popularity_per_first_code"]["top_codes"][:5]
    t.add_row("most popular first codes", ", ".join(f"{c['code']}: {100 * c['interaction_share']:.1f}% "
                                                    f"({c['items']} items)" for c in top))
    t.add_row("plot", str(plot))
    console.print(t)
    return 0
