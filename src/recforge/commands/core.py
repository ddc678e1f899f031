"""Core subcommands: data, train, evaluate, recommend, compare, quickstart."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the core subcommands (filled in as the foundation lands)."""
