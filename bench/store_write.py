"""``store.write`` alone, in µs a record (goal: ≤ 10 µs including aggregates), SQLite backend:
the record-at-a-time write (``tests/oracle/sqlite_write.py``, what the store did before the
columnar engine) against the columnar write, alternating, in one run.

    .venv/bin/python bench/store_write.py [--records 100000] [--batch 1000] [--rounds 3]
                                          [--writers 1] [--profile]

The bench generator's records (``bench/store_backends.py``: 5,000 visitors, 200 paths, ~1,200
records a minute) are written in ``--batch`` batches by ``--writers`` concurrent writers (the
store's group commit takes every batch waiting; the columnar store writes them as one frame):
to the oracle store as ``list[Record]``, to the columnar store as DataFrames (what the columnar
engine hands over).
Prints, per path, the median over ``--rounds`` of the wall time and of the process CPU time per
record (CPU time is the fairer figure on a loaded machine); ``--profile`` adds the columnar
writer's top functions by cumulative time (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.store_backends import records
from collector.metrics import Metrics
from collector.store.frame import to_frame
from collector.store.sqlite import SQLiteStore
from tests.oracle.sqlite_write import OracleStore
from tests.service import make_settings


async def once(kind: str, batches: list[Any], n: int, prof: cProfile.Profile | None,
               writers: int = 1) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), **{"ingest.queue_size": "1000",
                                               "sessions.idle_timeout": "1d"})
        cls = OracleStore if kind == "record-at-a-time" else SQLiteStore
        store = cls(settings, Metrics())
        await store.start()
        if prof is not None:
            run = store._write_batches

            def profiled(*a: Any, **kw: Any) -> Any:
                prof.enable()
                try:
                    return run(*a, **kw)
                finally:
                    prof.disable()

            store._write_batches = profiled  # type: ignore[method-assign]
        wall, cpu = time.perf_counter(), time.process_time()
        todo = list(reversed(batches))

        async def writer() -> None:
            while todo:
                await store.write(todo.pop())

        await asyncio.gather(*(writer() for _ in range(writers)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await store.close()
    return wall / n * 1e6, cpu / n * 1e6


async def main(ns: argparse.Namespace) -> None:
    recs = records(ns.records)
    lists = [recs[i:i + ns.batch] for i in range(0, len(recs), ns.batch)]
    frames = [to_frame(b) for b in lists]
    got: dict[str, list[tuple[float, float]]] = {"record-at-a-time": [], "columnar": []}
    for _ in range(ns.rounds):
        got["record-at-a-time"].append(
            await once("record-at-a-time", [[dict(r) for r in b] for b in lists], ns.records,
                       None, ns.writers))
        got["columnar"].append(await once("columnar", frames, ns.records, None, ns.writers))
    for kind, runs in got.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{kind:17} {ns.records:,} records, batches of {ns.batch}, {ns.writers} writer(s): "
              f"wall {wall:.1f} µs/record, CPU {cpu:.1f} µs/record (median of {ns.rounds})")
    if ns.profile:
        prof = cProfile.Profile()
        await once("columnar", frames, ns.records, prof, ns.writers)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--writers", type=int, default=1,
                   help="concurrent writers (their waiting batches share a group commit)")
    p.add_argument("--profile", action="store_true")
    asyncio.run(main(p.parse_args()))
