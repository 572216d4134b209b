"""How often does geolocating the truncated address change the answer? (geo_from masked vs full)

Usage::

    .venv/bin/python bench/enrich_geo_modes.py [LOG] [--city-db PATH] [--asn-db PATH]
        [--v4-bits 24] [--v6-bits 48]

For every record of LOG (Apache/nginx combined; client IP taken with a plain regex) the client
address is looked up twice: full, and truncated to the kept bits. Prints, per field, the share of
records (with an answer in at least one mode) whose value differs. Without ``--city-db`` the
zero-config default database is used; ASN is reported only with ``--asn-db``.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.enrich.geo import GeoEnricher  # noqa: E402
from collector.settings import EnrichSettings  # noqa: E402

DEFAULT_LOG = ROOT.parent / "shared" / "corpus" / "logs" / "elastic-examples_apache_logs"
CLIENT = re.compile(r"^(\S+) ")
FIELDS = ("country", "region", "city", "asn")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", nargs="?", type=Path, default=DEFAULT_LOG)
    ap.add_argument("--city-db", type=Path)
    ap.add_argument("--asn-db", type=Path)
    ap.add_argument("--v4-bits", type=int, default=24)
    ap.add_argument("--v6-bits", type=int, default=48)
    args = ap.parse_args(argv)

    base = EnrichSettings(city_db=args.city_db, asn_db=args.asn_db)
    masked_geo = GeoEnricher(base)
    full_geo = GeoEnricher(dataclasses.replace(base, geo_from="full"))
    total = 0
    answered = dict.fromkeys(FIELDS, 0)
    differ = dict.fromkeys(FIELDS, 0)
    lost = dict.fromkeys(FIELDS, 0)  # answer in full mode, none in masked mode
    for line in args.log.read_text("utf-8", errors="replace").splitlines():
        m = CLIENT.match(line)
        if not m:
            continue
        try:
            addr = ipaddress.ip_address(m.group(1))
        except ValueError:
            continue
        bits = args.v4_bits if addr.version == 4 else args.v6_bits
        masked = str(ipaddress.ip_network(f"{addr}/{bits}", strict=False).network_address)
        full = str(addr)
        a = masked_geo.lookup(masked, full)
        b = full_geo.lookup(masked, full)
        total += 1
        for f in FIELDS:
            if a[f] is None and b[f] is None:
                continue
            answered[f] += 1
            if a[f] != b[f]:
                differ[f] += 1
                if a[f] is None:
                    lost[f] += 1
    dbs = ", ".join(f"{i['role']}={i['database_type']} {i['build_date']}"
                    for i in masked_geo.info())
    print(f"log: {args.log} ({total} records); databases: {dbs or 'none'}; "
          f"truncation /{args.v4_bits} IPv4, /{args.v6_bits} IPv6")
    for f in FIELDS:
        if not answered[f]:
            print(f"  {f:8s} n/a (no database answers this field)")
            continue
        print(f"  {f:8s} differs in {differ[f]:5d} of {answered[f]:5d} records "
              f"({differ[f] / answered[f]:.2%}); of which masked has no answer: {lost[f]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
