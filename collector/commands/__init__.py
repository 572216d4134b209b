"""Subcommands beyond ``serve``: each module registers itself with ``collector.cli.command``."""

from collector.commands import token

__all__ = ["token"]
