"""Query latency over live records generated from the real log (``## Query`` in RESULTS.md).

Usage::

    .venv/bin/python bench/query_bench.py [--lines 1000000] [--reps 20] [--data-dir DIR]

The real log (../shared/corpus/logs/elastic-examples_apache_logs) goes once through the serve
pipeline (parse, mask, scrub, GeoIP, User-Agent); its stored records are then copied, each copy
with its own sessions and its time squeezed into consecutive slices of the last 7 days, and
written through ``SQLiteStore.write`` (the service's own write path) until ``--lines`` live
records exist. Five typical queries then run ``--reps`` times each, parse + compile + execute on a
read-only connection as ``GET /v1/query`` does (HTTP and JSON encoding excluded); p50/p95
latencies and each query's ratio to a full-scan ``| count`` come from this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.enrich.geo import GeoEnricher  # noqa: E402
from collector.enrich.ua import UAEnricher  # noqa: E402
from collector.keys import KeyRing  # noqa: E402
from collector.metrics import Metrics  # noqa: E402
from collector.parse import parse_lines  # noqa: E402
from collector.pipeline import Pipeline, build_steps  # noqa: E402
from collector.query import compile_query, execute, parse  # noqa: E402
from collector.settings import Settings, load_settings  # noqa: E402
from collector.store.sqlite import SQLiteStore, connect  # noqa: E402

DEFAULT_LOG = ROOT.parent / "shared" / "corpus" / "logs" / "elastic-examples_apache_logs"
LOCAL_LOG = ROOT / "tests" / "data" / "logs" / "elastic-examples_apache_logs"
WINDOW = 7 * 86400.0
BATCH = 10_000

QUERIES = [
    ("recent errors by template",
     'status >= 400 last 24h | count by path_template | sort count desc | limit 10'),
    ("the issue's shape (p95 by template)",
     'status >= 200 and path ^= "/presentations" last 24h | p95 bytes by path_template'),
    ("last 15 minutes by status", "last 15m | count by status"),
    ("full scan: filter on two fields", 'path ^= "/blog" and browser = "Chrome" | count by os'),
    ("newest 100 records of a status", "status = 404 | limit 100"),
]
BASELINE = ("baseline: full scan", "| count")


def base_records(settings: Settings, log: Path, data_dir: Path) -> list[dict[str, Any]]:
    keyring = KeyRing(data_dir / "session-keys.json", 86400.0, 172800.0)
    geo = GeoEnricher(settings.enrich)
    ua = UAEnricher(settings.enrich.ua_cache_size)
    pipeline = Pipeline(build_steps(settings, keyring, geo, ua, source="bench"))
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    result = pipeline.process(parse_lines(lines))
    geo.close()
    return result.records


async def fill(settings: Settings, base: list[dict[str, Any]], total: int, now: float) -> float:
    store = SQLiteStore(settings, Metrics())
    await store.start()
    t0 = min(r["time"] for r in base)
    span = max(r["time"] for r in base) - t0 or 1.0
    copies = math.ceil(total / len(base))
    slice_ = WINDOW / (total / len(base))  # the last, partial copy ends a minute before now
    start = now - WINDOW - 60
    written = 0
    began = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for i in range(copies):
        for rec in base:
            if written + len(batch) >= total:
                break
            new = dict(rec)
            new["time"] = start + i * slice_ + (rec["time"] - t0) / span * slice_
            new["session_key"] = f"{rec['session_key']}:{i}"
            batch.append(new)
            if len(batch) >= BATCH:
                await store.write(batch)
                written += len(batch)
                batch = []
    if batch:
        await store.write(batch)
        written += len(batch)
    await store.close()
    return time.perf_counter() - began


def pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="live records to generate")
    ap.add_argument("--reps", type=int, default=20, help="runs per query")
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="where the store goes (default: a temporary directory)")
    ns = ap.parse_args()
    log = ns.log or (DEFAULT_LOG if DEFAULT_LOG.exists() else LOCAL_LOG)
    tmp = tempfile.TemporaryDirectory(prefix="lethelog-qbench-")
    data_dir = ns.data_dir or Path(tmp.name) / "data"
    settings = load_settings(None, env={}, overrides={
        "server.data_dir": str(data_dir), "sessions.idle_timeout": "3650d",
        "store.fsync": "false"})
    now = time.time()
    base = base_records(settings, log, data_dir)
    took = asyncio.run(fill(settings, base, ns.lines, now))
    conn = connect(data_dir / "lethelog.db", readonly=True)
    (count,) = conn.execute("SELECT count(*) FROM records").fetchone()
    (sessions,) = conn.execute("SELECT count(*) FROM sessions").fetchone()
    size = (data_dir / "lethelog.db").stat().st_size
    print(f"log: {log.name} ({len(base)} records through the pipeline)")
    print(f"records: {count} live in {sessions} sessions over the last 7 days; "
          f"written in {took:.1f}s ({count / took:,.0f} records/s); db {size / 2**20:.0f} MiB")
    print(f"runs per query: {ns.reps} (after one warm-up run); timeout none; "
          f"SQLite {__import__('sqlite3').sqlite_version}")
    results: list[tuple[str, str, float, float, int]] = []
    for name, text in [BASELINE, *QUERIES]:
        times: list[float] = []
        rows = 0
        for rep in range(ns.reps + 1):
            t = time.perf_counter()
            compiled = compile_query(parse(text), sites=frozenset({"default"}), now=now,
                                     max_rows=100_000)
            result = execute(conn, compiled, timeout=600)
            if rep:
                times.append(time.perf_counter() - t)
            rows = len(result.rows)
        results.append((name, text, pct(times, 50), pct(times, 95), rows))
    conn.close()
    base_p50 = results[0][2]
    print(f"{'query':<40} {'p50 ms':>9} {'p95 ms':>9} {'rows':>6} {'p50/scan':>9}")
    for name, text, p50, p95, rows in results:
        print(f"{name:<40} {p50 * 1000:>9.1f} {p95 * 1000:>9.1f} {rows:>6} "
              f"{p50 / base_p50:>8.2f}x")
        print(f"    {text}")
    print(f"median of the five: {statistics.median(r[2] for r in results[1:]) * 1000:.1f} ms")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
