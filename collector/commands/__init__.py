"""Subcommands beyond ``serve``: each module registers itself with ``collector.cli.command``."""

from collector.commands import audit, geoip, import_, query, settings_doc, ship, token

__all__ = ["audit", "geoip", "import_", "query", "settings_doc", "ship", "token"]
