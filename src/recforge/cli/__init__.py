"""The ``recforge`` command (layer 9). :func:`main` is the entry point; each subcommand group is one module here."""

from recforge.cli.main import main

__all__ = ["main"]
