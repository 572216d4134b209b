"""``lethelog import FILE... --data-dir DIR``: load log files through the serve pipeline."""

from __future__ import annotations

import argparse
import asyncio
import sys

from collector.cli import add_settings_args, command, settings_from
from collector.log import configure_logging


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="access-log files; '-' reads stdin; .gz files are decompressed")
    add_settings_args(p)
    p.add_argument("--format", dest="fmt", metavar="F", default=None,
                   help="log format name (combined, common, w3c, …) or a custom nginx/Apache "
                   "format line; default: detected per file")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="worker processes for parse/mask/enrich (default: one per core; "
                   "1: everything in this process)")
    p.add_argument("--hold", type=int, default=None, metavar="N",
                   help="records of open sessions kept in memory during the replay (default "
                   "200000; beyond it the oldest open sessions are written to the store; "
                   "0: write every record as serve does)")
    p.add_argument("--source", default="import",
                   help="source name the records and their sessions carry (default import)")


@command("import", "load access-log files through the full pipeline into the store", _args)
def run(ns: argparse.Namespace) -> int:
    from collector.importer import ImportFailed, ImportOptions, run_import, summary

    settings = settings_from(ns)
    configure_logging(settings.server.log_level)
    if ns.workers < 0:
        print("lethelog import: --workers must be 0 or more", file=sys.stderr)
        return 2
    if ns.hold is not None and ns.hold < 0:
        print("lethelog import: --hold must be 0 or more", file=sys.stderr)
        return 2
    if ns.files.count("-") > 1:
        print("lethelog import: '-' (stdin) may be given once", file=sys.stderr)
        return 2
    opts = ImportOptions(files=list(ns.files), fmt=ns.fmt, workers=ns.workers,
                         source=ns.source, progress=sys.stdout.isatty())
    if ns.hold is not None:
        opts.hold = ns.hold
    try:
        totals = asyncio.run(run_import(settings, opts))
    except ImportFailed as exc:
        print(f"lethelog import: {exc}", file=sys.stderr)
        return 1
    from collector.importer import Input

    print(summary(totals, [Input(name, None) for name in ns.files]))
    return 0
