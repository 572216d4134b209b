"""Cost per record of GeoIP + User-Agent enrichment, and the UA cache hit rate, on a real log.

Usage::

    .venv/bin/python bench/enrich_bench.py [LOG] [--city-db PATH] [--asn-db PATH] [--repeat N]

LOG defaults to ../shared/corpus/logs/elastic-examples_apache_logs (Apache combined). Client IP
and User-Agent are taken with a plain regex; the IP is truncated to /24 (IPv4) or /48 (IPv6) with
``ipaddress`` outside the timed region. Without ``--city-db`` the zero-config default database
is used. Everything printed comes from this one run.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import user_agents  # noqa: E402

from collector.enrich.geo import GeoEnricher  # noqa: E402
from collector.enrich.ua import UAEnricher  # noqa: E402
from collector.settings import EnrichSettings  # noqa: E402

DEFAULT_LOG = ROOT.parent / "shared" / "corpus" / "logs" / "elastic-examples_apache_logs"
COMBINED = re.compile(r'^(\S+) \S+ \S+ \[[^\]]*\] "[^"]*" \S+ \S+ "[^"]*" "([^"]*)"')


def read_log(path: Path) -> list[tuple[str, str, str]]:
    """(full ip, masked ip, user agent) per line matching the combined format."""
    out: list[tuple[str, str, str]] = []
    for line in path.read_text("utf-8", errors="replace").splitlines():
        m = COMBINED.match(line)
        if not m:
            continue
        ip, ua = m.group(1), m.group(2)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        bits = 24 if addr.version == 4 else 48
        masked = str(ipaddress.ip_network(f"{addr}/{bits}", strict=False).network_address)
        out.append((ip, masked, ua))
    return out


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", nargs="?", type=Path, default=DEFAULT_LOG)
    ap.add_argument("--city-db", type=Path)
    ap.add_argument("--asn-db", type=Path)
    ap.add_argument("--repeat", type=int, default=5, help="warm passes (median reported)")
    args = ap.parse_args(argv)

    records = read_log(args.log)
    n = len(records)
    agents = [ua for _, _, ua in records]
    distinct = list(dict.fromkeys(agents))
    settings = EnrichSettings(city_db=args.city_db, asn_db=args.asn_db)

    def make() -> tuple[GeoEnricher, UAEnricher]:
        return GeoEnricher(settings), UAEnricher(settings.ua_cache_size)

    # Cold pass: fresh caches, as right after start (every distinct agent/network is a miss).
    geo, ua = make()

    def both() -> None:
        for full, masked, agent in records:
            geo.lookup(masked, full)
            ua(agent)

    cold = timed(both)
    ua_cold = ua.cache_info()
    geo_cold = geo.cache_info()
    warm = statistics.median(timed(both) for _ in range(args.repeat))

    # Separate costs, cold, each on fresh enrichers.
    geo2, ua2 = make()
    geo_only = timed(lambda: [geo2.lookup(m, f) for f, m, _ in records])
    ua_only = timed(lambda: [ua2(a) for a in agents])
    # Per-miss costs: uncached UA parse (ours vs plain user_agents.parse) and uncached GeoIP.
    build = timed(lambda: UAEnricher(cache_size=0))
    ua3 = UAEnricher(cache_size=0)
    first_miss = timed(lambda: [ua3(a) for a in distinct]) / len(distinct)  # lazy regex builds
    ours_miss = timed(lambda: [ua3(a) for a in distinct]) / len(distinct)  # steady state
    plain_miss = timed(lambda: [user_agents.parse(a) for a in distinct]) / len(distinct)
    geo3 = GeoEnricher(EnrichSettings(city_db=args.city_db, asn_db=args.asn_db, geo_cache_size=0))
    geo_miss = timed(lambda: [geo3.lookup(m, f) for f, m, _ in records]) / n

    us = 1e6
    dbs = ", ".join(f"{i['role']}={i['database_type']} {i['build_date']}" for i in geo.info())
    print(f"log: {args.log} ({n} records, {len(distinct)} distinct User-Agents, "
          f"{len({m for _, m, _ in records})} distinct /24 networks)")
    print(f"GeoIP databases: {dbs or 'none'}; crawler engine: {ua.crawler_engine}")
    print(f"UA cache: hits {ua_cold['hits']}, misses {ua_cold['misses']}, "
          f"hit rate {ua_cold['hits'] / n:.1%} (cold pass)")
    print(f"GeoIP cache: hits {geo_cold['hits']}, misses {geo_cold['misses']}, "
          f"hit rate {geo_cold['hits'] / max(1, geo_cold['hits'] + geo_cold['misses']):.1%}")
    print(f"enrichment per record, cold caches: {cold / n * us:.2f} µs "
          f"(geo {geo_only / n * us:.2f} µs, UA {ua_only / n * us:.2f} µs)")
    print(f"enrichment per record, warm caches (median of {args.repeat}): {warm / n * us:.2f} µs")
    print(f"UAEnricher construction {build * 1e3:.0f} ms; first-ever parse per distinct agent "
          f"{first_miss * us:.1f} µs (Rust automata built lazily)")
    print(f"uncached UA parse per distinct agent: ours {ours_miss * us:.1f} µs, "
          f"user_agents.parse {plain_miss * us:.1f} µs ({plain_miss / ours_miss:.1f}x slower)")
    print(f"uncached GeoIP lookup per record: {geo_miss * us:.2f} µs")
    print(f"ratios: cold/warm {cold / warm:.1f}x; uncached-geo/cached-geo-in-cold-pass "
          f"{geo_miss * n / geo_only:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
