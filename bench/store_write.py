"""``store.write`` alone, in µs a record (goal: ≤ 10 µs including aggregates), SQLite backend.

    .venv/bin/python bench/store_write.py [--records 100000] [--batch 1000] [--form frame|list]
                                          [--profile]

The bench generator's records (``bench/store_backends.py``: 5,000 visitors, 200 paths, one
minute per ~1,200 records) are written in ``--batch`` batches by one writer, as a DataFrame
(``--form frame``, what the columnar engine hands over) or as ``list[Record]``. Prints the total
and the time per record; ``--profile`` adds the top functions of the writer thread by cumulative
time (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.store_backends import records
from collector.metrics import Metrics
from collector.store.frame import to_frame
from collector.store.sqlite import SQLiteStore
from tests.service import make_settings


async def main(ns: argparse.Namespace) -> None:
    recs = records(ns.records)
    batches: list = [recs[i:i + ns.batch] for i in range(0, len(recs), ns.batch)]
    if ns.form == "frame":
        batches = [to_frame(b) for b in batches]
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(make_settings(Path(tmp), **{"ingest.queue_size": "1000",
                                                        "sessions.idle_timeout": "1d"}),
                            Metrics())
        await store.start()
        prof = cProfile.Profile() if ns.profile else None
        if prof is not None:
            run = store._write_batch

            def profiled(*a, **kw):  # type: ignore[no-untyped-def]
                prof.enable()
                try:
                    return run(*a, **kw)
                finally:
                    prof.disable()

            store._write_batch = profiled  # type: ignore[method-assign]
        t = time.perf_counter()
        for b in batches:
            await store.write(b)
        took = time.perf_counter() - t
        await store.close()
    print(f"{ns.form}: {ns.records:,} records in {took:.2f} s = "
          f"{took / ns.records * 1e6:.1f} µs/record ({ns.records / took:,.0f} records/s)")
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--form", choices=("frame", "list"), default="frame")
    p.add_argument("--profile", action="store_true")
    asyncio.run(main(p.parse_args()))
