"""Subcommands beyond ``serve``: each module registers itself with ``collector.cli.command``."""

from collector.commands import settings_doc, token

__all__ = ["settings_doc", "token"]
