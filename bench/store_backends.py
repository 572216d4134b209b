"""Store backends side by side: the same stored records written to SQLite and to a local
three-node Redis Cluster (started here, as the tests do), in batches like HTTP ingest sends.

    .venv/bin/python bench/store_backends.py [--records 50000] [--batch 1000] [--writers 4]

Prints records/s for each backend, with one writer and with ``--writers`` concurrent writers
(group commit merges what waits), and the ratio Redis/SQLite measured in this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.metrics import Metrics
from collector.record import Record
from collector.store import Store, open_store
from tests.redis_cluster import RedisClusterProcs
from tests.service import make_settings


def records(n: int, visitors: int = 5000) -> list[Record]:
    rng = random.Random(7)
    t0 = time.time() - 3600
    out = []
    for i in range(n):
        v = rng.randrange(visitors)
        out.append({"time": t0 + i * 0.05, "ip": f"198.51.{v % 250}.0", "method": "GET",
                    "host": "example.org", "path": f"/p/{rng.randrange(200)}",
                    "path_template": "/p/:id", "status": 200, "bytes": 1234,
                    "browser": "Firefox", "browser_version": "128.0", "os": "Linux",
                    "device_type": "desktop", "is_bot": False, "language": "en",
                    "languages": ["en"], "country": "DE", "city": "Berlin", "asn": 3320,
                    "request_time": 0.012, "source": "bench", "site": "default",
                    "session_key": f"{v:032x}"})
    return out


async def run(store: Store, recs: list[Record], batch: int, writers: int) -> float:
    batches = [recs[i:i + batch] for i in range(0, len(recs), batch)]
    queue = list(reversed(batches))
    t = time.perf_counter()

    async def worker() -> None:
        while queue:
            await store.write(queue.pop())

    await asyncio.gather(*(worker() for _ in range(writers)))
    return len(recs) / (time.perf_counter() - t)


async def main(ns: argparse.Namespace) -> None:
    recs = records(ns.records)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RedisClusterProcs.start(Path(tmp) / "redis")
        try:
            rates: dict[tuple[str, int], float] = {}
            for backend in ("sqlite", "redis"):
                for writers in (1, ns.writers):
                    values = {"ingest.queue_size": "1000"}
                    if backend == "redis":
                        values |= {"store.backend": "redis",
                                   "store.redis_nodes": ",".join(cluster.nodes),
                                   "store.redis_prefix": f"bench{writers}"}
                    store = open_store(make_settings(Path(tmp) / f"{backend}{writers}",
                                                     **values), Metrics())
                    await store.start()
                    try:
                        rates[(backend, writers)] = await run(store, recs, ns.batch, writers)
                    finally:
                        await store.close()
                    print(f"{backend:6} writers={writers}: {rates[(backend, writers)]:,.0f} "
                          "records/s")
            for writers in (1, ns.writers):
                ratio = rates[("redis", writers)] / rates[("sqlite", writers)]
                print(f"ratio redis/sqlite, writers={writers}: {ratio:.2f}")
        finally:
            cluster.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--writers", type=int, default=4)
    asyncio.run(main(p.parse_args()))
