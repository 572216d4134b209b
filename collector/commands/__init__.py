"""Subcommands beyond ``serve``: each module registers itself with ``collector.cli.command``."""
