"""Subcommands beyond ``serve``: each module registers itself with ``collector.cli.command``."""

from collector.commands import import_, settings_doc, ship, token

__all__ = ["import_", "settings_doc", "ship", "token"]
