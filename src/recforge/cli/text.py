"""Text subcommands: ``recforge text embed --data NAME`` (cached item text vectors) and ``recforge text show``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from recforge.errors import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``text embed`` and ``text show``."""
    text = sub.add_parser("text", help="item text: sentences from the catalogue, cached text vectors")
    tsub = text.add_subparsers(dest="text_command", metavar="SUBCOMMAND")

    embed = tsub.add_parser("embed", help="embed every item's sentence and cache the vectors")
    _common(embed)
    embed.add_argument("--embedder", default="hashing", help="registered embedder: hashing, minilm (default hashing)")
    embed.add_argument("--cache-dir", default=None, help="vector cache (default: $RECFORGE_CACHE_DIR/text-vectors)")
    embed.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    embed.set_defaults(func=run_embed)

    show = tsub.add_parser("show", help="print the first items' sentences")
    _common(show)
    show.add_argument("-n", type=int, default=5, help="number of items (default 5)")
    show.set_defaults(func=run_show)
    text.set_defaults(func=lambda args: (text.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="NAME|PATH", help="dataset name or folder")
    p.add_argument("--data-dir", default=None, help="data folder (default: $RECFORGE_DATA_DIR)")
    p.add_argument("--template", default="kv", help="item sentence template (default kv)")
    p.add_argument("--on-missing-text", choices=("raise", "attr_only"), default="attr_only",
                   help="items without text: fail, or leave them to their attributes (default attr_only)")


def _catalog(args: argparse.Namespace) -> Any:
    from recforge.data.datasets import load_dataset

    ds = load_dataset(args.data, data_dir=args.data_dir)
    if ds.catalog is None:
        raise ConfigError(f"{ds.name} has no item catalogue, so no item text")
    return ds


def run_embed(args: argparse.Namespace) -> int:
    from recforge.cli.console import console
    from recforge.registry import resolve
    from recforge.text.vectors import embed_items

    ds = _catalog(args)
    embedder = resolve("embedder", args.embedder)()
    vec = embed_items(ds.catalog, embedder, args.template, args.cache_dir, on_missing_text=args.on_missing_text)
    out = {"dataset": ds.name, "items": ds.catalog.n_items, "dim": vec.dim, "model": vec.model,
           "template": vec.template, "template_hash": vec.template_hash, "items_without_text": len(vec.missing),
           "cached": vec.cached, "seconds": round(vec.seconds, 3), "path": str(vec.path)}
    if args.format == "json":
        console.print_json(json.dumps(out))
        return 0
    how = "loaded from the cache" if vec.cached else "embedded"
    console.print(f"{ds.name}: {out['items']:,} items {how} in {vec.seconds:.2f}s with {vec.model} "
                  f"(template {vec.template} {vec.template_hash}, dim {vec.dim}, {len(vec.missing):,} items without "
                  f"text)\n  {vec.path}", highlight=False, soft_wrap=True)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from recforge.cli.console import console
    from recforge.text.templates import item_texts

    ds = _catalog(args)
    texts = item_texts(ds.catalog, args.template, on_missing_text=args.on_missing_text)
    ids = ds.catalog.item_vocab.ids
    for i in range(1, min(args.n, ds.catalog.n_items) + 1):
        console.print(f"{ids[i - 1]}  {texts.texts[i] or '(no text)'}", highlight=False, soft_wrap=True, markup=False)
    return 0
