"""CLI subcommand groups (see ``recforge.cli.COMMANDS``)."""
