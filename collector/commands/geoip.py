"""``lethelog geoip update --config GeoIP.conf``: fetch MaxMind databases like geoipupdate.

Exit codes: 0 every edition is current (updated or unchanged), 1 a download or verification
failed (the old file stays), 2 the configuration is unusable, 3 the server refused the key.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
    prep = sub.add_parser("prepare", help="convert the zero-config databases from PyPI now "
                          "(else the first `serve` converts them in the background)")
    prep.add_argument("--data-dir", metavar="DIR", default=None,
                      help="cache here when no user cache directory is writable")


@command("geoip", "keep GeoIP databases current (update)", _args)
def run(ns: argparse.Namespace) -> int:
    from collector.enrich.update import AuthError, UpdateError, parse_conf, update

    if ns.geoip_command == "prepare":
        return _prepare(Path(ns.data_dir) if ns.data_dir else None)
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


def _prepare(data_dir: Path | None) -> int:
    from collector.enrich import fastdata

    status = 0
    for kind in fastdata.KINDS:
        source = fastdata.find_source(kind)
        if source is None:
            print(f"{kind}: {fastdata.KINDS[kind][0]} not installed")
            continue
        try:
            reader = fastdata.open_cached(kind, source, data_dir)
        except (ValueError, OSError) as exc:
            print(f"lethelog geoip prepare: {exc}", file=sys.stderr)
            status = 1
            continue
        meta = reader.metadata()
        built = dt.datetime.fromtimestamp(meta.build_epoch, dt.UTC).date().isoformat()
        print(f"{kind}: ready ({meta.database_type}, built {built})")
    return status
