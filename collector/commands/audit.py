"""``lethelog audit verify|list|prune --data-dir DIR``: check and read the audit log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collector.cli import add_settings_args, command, settings_from


def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="audit_command", required=True)
    v = sub.add_parser("verify", help="check every entry's hash and the chain; exit 1 if broken")
    add_settings_args(v)
    v.add_argument("--file", metavar="FILE", default=None,
                   help="an audit log file (default: DATA_DIR/audit.log)")
    v.add_argument("--key-file", metavar="FILE", default=None,
                   help="the anchors' HMAC key (default: audit.anchor_key_file, else "
                        "DATA_DIR.audit-key beside the data directory)")
    ls = sub.add_parser("list", help="print the newest entries")
    add_settings_args(ls)
    ls.add_argument("--limit", type=int, default=50, metavar="N")
    pr = sub.add_parser("prune", help="drop entries older than audit.retention now")
    add_settings_args(pr)


@command("audit", "verify, list or prune the audit log", _args)
def run(ns: argparse.Namespace) -> int:
    from collector.audit import FILE_NAME, AuditLog, verify
    from collector.query.output import table

    key_path: Path | None = None
    if ns.audit_command == "verify" and ns.file:
        path = Path(ns.file)
    else:
        settings = settings_from(ns)
        path = Path(settings.server.data_dir) / FILE_NAME
        key_path = settings.audit.anchor_key_file
    if ns.audit_command == "verify":
        if ns.key_file:
            key_path = Path(ns.key_file)
        result = verify(path, key_path)
        print(("ok: " if result.ok else "FAILED: ") + result.message,
              file=sys.stdout if result.ok else sys.stderr)
        return 0 if result.ok else 1
    book = AuditLog(path, settings.audit.retention, settings.audit.fsync,
                    settings.audit.anchor_key_file)
    if ns.audit_command == "prune":
        n = book.prune()
        print(f"pruned {n} entries older than {settings.audit.retention:g}s")
        return 0
    cols = ["seq", "time", "token", "role", "peer", "endpoint", "rows", "outcome", "query"]
    rows = [e for e in book.entries() if e.get("kind") != "anchor"][-max(1, ns.limit):]
    sys.stdout.write(table(cols, rows, width=80))
    return 0
