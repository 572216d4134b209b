"""Cost of counting aggregates at ingest, as a ratio to the store's own write path.

    python -m bench.aggregates_cost

Writes the same 50,000 synthetic stored records through ``SQLiteStore.write`` twice in one run:
once as shipped, once with the aggregates hook switched off (a no-op counter), and prints the
per-record times and their ratio.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from collector.metrics import Metrics
from collector.store.sqlite import SQLiteStore
from tests.service import make_settings
from tests.synth import DAY0, Visitors

N = 50_000


def records() -> list[dict[str, Any]]:
    import random
    rng, vis = random.Random(1), Visitors(3000)
    out = []
    for i in range(N):
        rec, sid = vis.record(rng, DAY0 + i * 0.6)
        rec["session_key"] = f"k{sid}"
        out.append(rec)
    return out


class _Off:
    def add(self, *a: Any) -> None: ...
    def flush(self, *a: Any) -> None: ...
    def setup(self, *a: Any) -> None: ...
    def maintain(self, *a: Any, **k: Any) -> None: ...
    def rolled_back(self, *a: Any) -> None: ...


async def run(aggregates: bool, recs: list[dict[str, Any]]) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = SQLiteStore(make_settings(Path(d), **{"sessions.idle_timeout": "3650d"}),
                            Metrics())
        if not aggregates:
            store.aggregates = _Off()  # type: ignore[assignment]
        await store.start()
        t = time.perf_counter()
        for i in range(0, len(recs), 1000):
            await store.write([dict(r) for r in recs[i:i + 1000]])
        dt = time.perf_counter() - t
        await store.close()
        return dt


async def main() -> None:
    recs = records()
    off = await run(False, recs)
    on = await run(True, recs)
    print(f"store.write without aggregates: {off / N * 1e6:.1f} µs/record")
    print(f"store.write with aggregates:    {on / N * 1e6:.1f} µs/record")
    print(f"ratio: {on / off:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
