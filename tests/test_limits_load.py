"""Load on loopback beyond what the store queue holds: 503 + Retry-After, bounded memory,
and every record acknowledged with a 2xx stored exactly once (nothing of a 503 stored).

A real `lethelog serve` with `ingest.queue_size = 1` (one batch may wait for the writer) gets
48 concurrent shippers posting 100-line batches with a unique marker per line. Memory ceiling:
the service's peak RSS (VmHWM) stays under the documented ceiling, idle RSS +
``ingest.memory_budget`` + 64 MiB (docs/operations.md "Memory ceiling"), with a 64 MiB budget.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp

from tests.service import ServiceProcess

CLIENTS = 48
REQUESTS = 5
LINES = 100
BUDGET_MIB = 64
SLACK_MIB = 64  # parse threads, sockets, allocator slack (docs/operations.md "Memory ceiling")


def batch(client: int, req: int) -> bytes:
    t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    return "".join(
        f'85.{client}.{req}.{i + 1} - - [{t}] "GET /load/c{client}r{req}l{i} HTTP/1.1" 200 5 '
        f'"-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"\n' for i in range(LINES)).encode()


def peak_rss_mib(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def test_overload_answers_503_with_retry_after_and_loses_nothing_acknowledged(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "lethelog-data"
    svc = ServiceProcess(data_dir, tmp_path / "service.log", env={
        "LETHELOG_INGEST_QUEUE_SIZE": "1",
        "LETHELOG_SESSIONS_IDLE_TIMEOUT": "1d",
        "LETHELOG_INGEST_MEMORY_BUDGET": f"{BUDGET_MIB}MiB",
    })
    idle, _ = peak_rss_mib(svc.proc.pid)
    ceiling = idle + BUDGET_MIB + SLACK_MIB
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(peak_rss_mib(svc.proc.pid)[0])
            time.sleep(0.05)

    outcomes: dict[tuple[int, int], tuple[int, str | None, int]] = {}

    async def shipper(session: aiohttp.ClientSession, client: int) -> None:
        for req in range(REQUESTS):
            async with session.post(f"{svc.url}/v1/logs?format=combined",
                                    data=batch(client, req),
                                    headers={"Content-Type": "text/plain"}) as resp:
                body = await resp.json()
                outcomes[client, req] = (resp.status, resp.headers.get("Retry-After"),
                                         body.get("accepted", 0))

    async def load() -> None:
        conn = aiohttp.TCPConnector(limit=CLIENTS)
        async with aiohttp.ClientSession(connector=conn) as session:
            await asyncio.gather(*(shipper(session, c) for c in range(CLIENTS)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        asyncio.run(load())
        _, hwm = peak_rss_mib(svc.proc.pid)
    finally:
        stop.set()
        sampler.join()
        assert svc.stop() == 0

    statuses = Counter(status for status, _, _ in outcomes.values())
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] > 0, "more than the queue holds was pushed: some batches were refused"
    assert statuses[200] > 0
    for status, retry_after, accepted in outcomes.values():
        if status == 503:
            assert retry_after is not None and int(retry_after) >= 1
            assert accepted == 0
        else:
            assert accepted == LINES
    assert hwm < ceiling, f"peak RSS {hwm:.0f} MiB, idle {idle:.0f} MiB"
    assert max(samples) < ceiling

    # After a clean stop, read the real SQLite file: exactly the acknowledged records.
    with sqlite3.connect(f"file:{data_dir / 'lethelog.db'}?mode=ro", uri=True) as db:
        paths = Counter(p for (p,) in db.execute("SELECT path FROM records"))
    acknowledged = {f"/load/c{c}r{r}l{i}" for (c, r), (status, _, _) in outcomes.items()
                    if status == 200 for i in range(LINES)}
    refused = {f"/load/c{c}r{r}l{i}" for (c, r), (status, _, _) in outcomes.items()
               if status == 503 for i in range(LINES)}
    assert {p for p, n in paths.items() if n > 1} == set(), "exactly once"
    assert acknowledged - set(paths) == set(), "every acknowledged record is stored"
    assert refused & set(paths) == set(), "nothing of a refused batch is stored"
    assert len(paths) == len(acknowledged)
    print(f"\nload: {dict(statuses)} responses, peak RSS {hwm:.0f} MiB, "
          f"{len(acknowledged)} records stored")
