"""Peak RSS of `lethelog serve` under concurrent maximum-size requests (issue 16, point 5).

Starts a real service, sends ``--concurrency`` requests at once, each ``--records`` short
records (the issue: 100,001 records of ~72 bytes, 7.2 MB, answered 413; or 99,000: accepted),
repeats ``--rounds`` times, and prints the service's idle RSS, peak RSS (VmHWM), RSS after, and
the answers' statuses. Run:

    .venv/bin/python -m bench.memory_ceiling --concurrency 4 --records 100001
    .venv/bin/python -m bench.memory_ceiling --concurrency 8 --records 99000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.service import ServiceProcess


def body(records: int, tag: int) -> bytes:
    now = time.time()
    lines = [f'{{"time":{now:.3f},"client":"198.51.{tag % 250}.{i % 250 + 1}","target":"/{i}"}}'
             for i in range(records)]
    return ("\n".join(lines) + "\n").encode()


def rss(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def fire(url: str, bodies: list[bytes]) -> list[int]:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        async def one(b: bytes) -> int:
            async with s.post(f"{url}/v1/logs", data=b,
                              headers={"Content-Type": "application/x-ndjson"}) as r:
                await r.read()
                return r.status
        return list(await asyncio.gather(*(one(b) for b in bodies)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--records", type=int, default=100_001)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    ns = ap.parse_args()
    env = {"LETHELOG_SESSIONS_IDLE_TIMEOUT": "1d"}
    env.update(kv.split("=", 1) for kv in ns.env)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        svc = ServiceProcess(root / "lethelog-data", root / "service.log", env=env)
        try:
            time.sleep(2.0)
            idle, _ = rss(svc.proc.pid)
            bodies = [body(ns.records, i) for i in range(ns.concurrency)]
            statuses: collections.Counter[int] = collections.Counter()
            for _ in range(ns.rounds):
                statuses.update(asyncio.run(fire(svc.url, bodies)))
            time.sleep(2.0)
            after, peak = rss(svc.proc.pid)
        finally:
            svc.stop()
    size = len(bodies[0]) / 1e6
    print(f"concurrency {ns.concurrency} × {ns.records} records ({size:.1f} MB) × {ns.rounds} "
          f"rounds: idle {idle:.0f} MiB, peak {peak:.0f} MiB, after {after:.0f} MiB; "
          f"statuses {dict(sorted(statuses.items()))}")


if __name__ == "__main__":
    main()
