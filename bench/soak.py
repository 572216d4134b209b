"""Soak: a steady mixed load on a real `lethelog serve` for a bounded time (issue 16).

Every second a batch of ``--batch`` combined lines (rotating clients, so sessions start and end:
idle timeout 60 s), every 5 s a query and a records read, every 10 s an aggregates read and a
``/healthz``. Every ``--every`` seconds it samples the service's RSS, open files, data-directory
size and the ingest latency (p50/p99 of the window), and prints one row; at the end the first and
last quarter are compared (flat: RSS, open files and data-dir size within a bound). Run:

    .venv/bin/python -m bench.soak --minutes 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.service import ServiceProcess


def lines(n: int, tick: int) -> bytes:
    t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    return "".join(
        f'198.51.{(tick // 60) % 200}.{(i + tick) % 250 + 1} - - [{t}] "GET /p/{i % 40}?q={tick} '
        f'HTTP/1.1" {200 if i % 9 else 404} {i * 13} "-" "Mozilla/5.0 (X11; Linux) '
        f'Firefox/{100 + i % 30}.0"\n' for i in range(n)).encode()


def sample(pid: int, data: Path) -> tuple[float, int, float]:
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    rss = int(fields["VmRSS"].split()[0]) / 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) / 2**20
    return rss, fds, size


async def run(url: str, pid: int, data: Path, seconds: float, batch: int, every: float
              ) -> list[tuple[float, float, int, float, float, float, int]]:
    rows: list[tuple[float, float, int, float, float, float, int]] = []
    lat: list[float] = []
    errors = 0
    start = time.monotonic()
    next_sample = start + every
    tick = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        while time.monotonic() - start < seconds:
            t0 = time.monotonic()
            try:
                async with s.post(f"{url}/v1/logs?format=combined", data=lines(batch, tick),
                                  headers={"Content-Type": "text/plain"}) as r:
                    await r.read()
                    errors += r.status != 200
                lat.append(time.monotonic() - t0)
                if tick % 5 == 0:
                    for path in ("/v1/query?q=status%20%3E%3D%20400%20%7C%20count%20by%20path",
                                 "/v1/records?limit=100"):
                        async with s.get(url + path) as r:
                            await r.read()
                            errors += r.status != 200
                if tick % 10 == 0:
                    for path in ("/v1/aggregates?dims=path_template", "/healthz"):
                        async with s.get(url + path) as r:
                            await r.read()
            except aiohttp.ClientError:
                errors += 1
            tick += 1
            if time.monotonic() >= next_sample:
                rss, fds, size = sample(pid, data)
                lat.sort()
                p50 = statistics.median(lat) if lat else 0.0
                p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0
                rows.append((time.monotonic() - start, rss, fds, size, p50, p99, errors))
                print(f"{rows[-1][0]:7.0f}s rss {rss:6.1f} MiB  fds {fds:3d}  data {size:6.2f} MiB"
                      f"  p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:7.1f} ms  errors {errors}",
                      flush=True)
                lat, next_sample = [], next_sample + every
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--every", type=float, default=60.0)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "lethelog-data"
        svc = ServiceProcess(data, Path(tmp) / "service.log", env={
            "LETHELOG_SESSIONS_IDLE_TIMEOUT": "60s"})
        try:
            rows = asyncio.run(run(svc.url, svc.proc.pid, data, ns.minutes * 60, ns.batch,
                                   ns.every))
        finally:
            svc.stop()
    q = max(1, len(rows) // 4)
    first, last = rows[1:q + 1] or rows[:1], rows[-q:]
    for name, i in (("rss MiB", 1), ("open files", 2), ("data dir MiB", 3), ("p99 s", 5)):
        a = statistics.mean(r[i] for r in first)
        b = statistics.mean(r[i] for r in last)
        print(f"{name}: first quarter {a:.2f}, last quarter {b:.2f} ({b - a:+.2f})")
    print(f"requests failed: {rows[-1][6] if rows else 0}")


if __name__ == "__main__":
    main()
