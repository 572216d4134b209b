"""``lethelog geoip update --config GeoIP.conf``: fetch MaxMind databases like geoipupdate.

Exit codes: 0 every edition is current (updated or unchanged), 1 a download or verification
failed (the old file stays), 2 the configuration is unusable, 3 the server refused the key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collector.cli import command

DEFAULT_CONF = "/etc/GeoIP.conf"


def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="geoip_command", required=True)
    up = sub.add_parser("update", help="download new MaxMind databases (GeoIP.conf, as "
                        "geoipupdate reads it)")
    up.add_argument("--config", metavar="FILE", default=DEFAULT_CONF,
                    help=f"geoipupdate configuration (default {DEFAULT_CONF})")
    up.add_argument("--dir", metavar="DIR", default=None,
                    help="database directory (overrides DatabaseDirectory)")
    up.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")


@command("geoip", "keep GeoIP databases current (update)", _args)
def run(ns: argparse.Namespace) -> int:
    from collector.enrich.update import AuthError, UpdateError, parse_conf, update

    try:
        conf = parse_conf(Path(ns.config).read_text(), ns.config)
    except OSError as exc:
        print(f"lethelog geoip update: cannot read {ns.config}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"lethelog geoip update: {exc}", file=sys.stderr)
        return 2
    if ns.dir:
        conf.database_directory = Path(ns.dir)
    try:
        outcomes = update(conf, ns.timeout)
    except AuthError as exc:
        print(f"lethelog geoip update: {exc}", file=sys.stderr)
        return 3
    except UpdateError as exc:
        print(f"lethelog geoip update: {exc}; the previous file stays in place",
              file=sys.stderr)
        return 1
    for o in outcomes:
        print(f"{o.edition}: {o.status} ({o.date}) {o.path}")
    return 0
