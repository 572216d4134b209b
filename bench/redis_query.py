"""Query cost on the redis backend: records fetched and scanned per second, vs SQLite.

Usage (starts its own three-node Redis Cluster from Debian's redis-server in a temp dir)::

    .venv/bin/python bench/redis_query.py [-n 100000]

Imports ``-n`` generated lines (bench/gen_log.py, sessions kept: idle timeout 10 years) with
``lethelog import`` into a SQLite store and into the cluster, then times queries through
``GET /v1/query`` on each backend. On redis a query fetches the records of its range and sites
from every bucket (one script call per bucket, pipelined per node) into an in-memory SQLite
snapshot and runs the same SQL there: its cost is records fetched per second.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.importer import ImportOptions, run_import
from tests.querytools import client_for
from tests.redis_cluster import RedisClusterProcs
from tests.service import make_settings

QUERIES = ("| count", "status >= 500 | count by path_template | limit 10",
           "| p95 bytes by status", 'path ^= "/api" | count by browser')


async def run(n: int, root: Path) -> None:
    log = root / "access.log"
    subprocess.run([sys.executable, "bench/gen_log.py", "-n", str(n), "-o", str(log)],
                   check=True, capture_output=True)
    cluster = RedisClusterProcs.start(root / "cluster")
    try:
        values = {"sessions.idle_timeout": "3650d", "sessions.max_age": "3650d",
                  "detect.enabled": "false"}
        backends = {
            "sqlite": make_settings(root / "lite", **values),
            "redis": make_settings(root / "red", **values, **{
                "store.backend": "redis", "store.redis_nodes": ",".join(cluster.nodes)}),
        }
        for name, settings in backends.items():
            t = time.perf_counter()
            totals = await run_import(settings, ImportOptions([str(log)], workers=1,
                                                              hold=0), open("/dev/null", "w"))
            print(f"{name}: imported {totals.accepted} lines in {time.perf_counter() - t:.1f} s",
                  flush=True)
            client = await client_for(settings)
            try:
                for q in QUERIES:
                    best = float("inf")
                    for _ in range(3):
                        t = time.perf_counter()
                        resp = await client.get("/v1/query", params={"q": q, "format": "json"})
                        assert resp.status == 200, await resp.text()
                        await resp.read()
                        best = min(best, time.perf_counter() - t)
                    print(f"  {name:6s} {best * 1000:8.0f} ms  {totals.accepted / best:10,.0f} "
                          f"records/s  {q}", flush=True)
            finally:
                await client.close()
    finally:
        cluster.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--lines", type=int, default=100_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(run(args.lines, Path(d)))


if __name__ == "__main__":
    main()
