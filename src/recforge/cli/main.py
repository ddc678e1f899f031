"""The ``recforge`` command. Every subcommand calls one library function; output is printed with rich.

Subcommand groups are modules of this package, listed in the literal table ``COMMANDS``:
each entry is "module:function" where ``function(subparsers)`` adds its parser(s) and sets ``func`` on them.
``func(args) -> int`` returns the exit code. Exit codes: 0 ok, 2 usage/config error, 1 data error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rich.markup import escape

from recforge.cli.console import err_console
from recforge.errors import RecforgeError

COMMANDS: list[str] = [
    "recforge.cli.core:add_commands",
    "recforge.cli.tune:add_commands",
    "recforge.cli.bandit:add_commands",
    "recforge.cli.evaluation:add_commands",
    "recforge.cli.serve:add_commands",
    "recforge.cli.data:add_commands",
    "recforge.cli.crs:add_commands",
    "recforge.cli.text:add_commands",
    "recforge.cli.llm:add_commands",
    "recforge.cli.sid:add_commands",
    "recforge.cli.rm:add_commands",
    "recforge.cli.align:add_commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recforge", description="Recommender systems: train, evaluate, serve.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for target in COMMANDS:
        module, _, fn = target.partition(":")
        getattr(importlib.import_module(module), fn)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 data error, 2 usage/config error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    level = logging.DEBUG if args.debug else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # run folders log INFO to train.log; the console stays quiet
        handler.setLevel(level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from recforge.data.io import cli_hints  # error hints name command-line flags (lazy: polars)

    try:
        with cli_hints():
            return int(args.func(args) or 0)
    except RecforgeError as exc:
        if args.debug:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except OSError as exc:  # a file or folder the command cannot read or write: one line, no traceback
        if args.debug:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
