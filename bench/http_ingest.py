"""HTTP ingest under load: concurrent shippers posting 1,000-record NDJSON batches to
``lethelog serve`` on loopback; acknowledged records/s, p50/p99 batch latency, peak RSS, and how
fast ended sessions are deleted compared with the ingest rate.

Usage::

    .venv/bin/python bench/http_ingest.py [--seconds 20] [--shippers 8] [--batch 1000]
        [--runs 3] [--live 1000000] [--write]

Three measurements, each against a fresh ``lethelog serve`` subprocess (default settings: SQLite
with ``synchronous=FULL``, GeoIP from the default database, no tokens, loopback):

1. **plain** and **gzip** (``Content-Encoding: gzip``) bodies, alternately, ``--runs`` times:
   records acknowledged (``accepted`` of 2xx answers) per second of wall clock, batch latency
   p50/p99 (request sent → answer read, i.e. after the commit), 503s retried.
2. **forgetting**: ``sessions.idle_timeout = 5s``, ``sweep_interval = 1s``; plain load for
   ``--seconds``; records deleted per second (from ``/metrics``) against records accepted per
   second, and the live records at the end (bounded = deletion keeps up).
3. **holding ``--live`` records**: idle timeout 1 day; ``--live`` records posted, then the
   service's peak RSS (``VmHWM``) with that many live records.

Bodies are built before the clock starts from ``bench/gen_log.py`` lines (real-looking clients and
agents; the record time is the build time), and the shippers run in this process with aiohttp: on
a 2-core machine they share the CPU with the service.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PY,
    clean_env,
    command_line,
    ensure_log,
    machine,
    peak_hwm_kib,
    profile_table,
    spread,
    today,
    write_section,
)
from tests.service import ServiceProcess

_LINE = re.compile(
    r'^(\S+) \S+ \S+ \[[^\]]+\] "(\S+) (\S+) [^"]*" (\d{3}) (\S+) "([^"]*)" "([^"]*)"')


def build_bodies(log: Path, batch: int, count: int) -> list[bytes]:
    """``count`` NDJSON bodies of ``batch`` records from the generated log, stamped now."""
    now = time.time()
    bodies: list[bytes] = []
    records: list[bytes] = []
    with open(log, encoding="utf-8") as fh:
        for line in fh:
            m = _LINE.match(line)
            if not m:
                continue
            ip, method, target, status, size, ref, ua = m.groups()
            records.append(orjson.dumps({
                "time": now, "client": ip, "method": method, "target": target,
                "protocol": "HTTP/1.1", "status": int(status),
                "bytes": None if size == "-" else int(size),
                "referrer": None if ref == "-" else ref, "user_agent": ua,
            }))
            if len(records) == batch:
                bodies.append(b"\n".join(records) + b"\n")
                records = []
                if len(bodies) == count:
                    break
    if not bodies:
        raise SystemExit(f"{log}: no combined lines")
    return bodies


@dataclass
class Load:
    accepted: int = 0
    batches: int = 0
    busy: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


async def drive(url: str, bodies: list[bytes], shippers: int, seconds: float,
                use_gzip: bool, max_batches: int | None = None) -> Load:
    import aiohttp

    payloads = [gzip.compress(b, 1) for b in bodies] if use_gzip else bodies
    headers = {"Content-Type": "application/x-ndjson"}
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    load = Load()
    counter = iter(range(1 << 62))
    deadline = time.perf_counter() + seconds

    async def shipper(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            n = next(counter)
            if max_batches is not None and n >= max_batches:
                return
            body = payloads[n % len(payloads)]
            while True:
                t0 = time.perf_counter()
                async with session.post(f"{url}/v1/logs", data=body, headers=headers) as resp:
                    answer = await resp.read()
                    status = resp.status
                if status == 503:
                    load.busy += 1
                    await asyncio.sleep(0.05)
                    continue
                break
            if status != 200:
                load.failed += 1
                continue
            load.latencies.append(time.perf_counter() - t0)
            load.accepted += orjson.loads(answer)["accepted"]
            load.batches += 1

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=shippers)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(shipper(session) for _ in range(shippers)))
    load.seconds = time.perf_counter() - started
    return load


async def metric(url: str, name: str) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as resp:
        text = await resp.text()
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def serve(tmp: Path, name: str, **env: str) -> ServiceProcess:
    full = clean_env()
    full.update({f"LETHELOG_{k.upper()}": v for k, v in env.items()})
    data = tmp / name
    data.mkdir(parents=True, exist_ok=True)
    return ServiceProcess(data / "data", tmp / f"{name}.log", env=full)


def profile_serve(tmp: Path, bodies: list[bytes], shippers: int, seconds: float) -> str:
    """One plain run against ``lethelog serve`` under cProfile; top functions of both threads."""
    import subprocess

    from tests.service import free_port

    port = free_port()
    prefix = tmp / "serve-profile"
    data = tmp / "profile-data"
    proc = subprocess.Popen(
        [PY, str(Path(__file__).with_name("profiled_serve.py")), str(prefix), "serve",
         "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)],
        env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_port(port, proc)
        load = asyncio.run(drive(url, bodies, shippers, seconds, False))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return (f"profile: serve under cProfile, plain load: {load.rate:,.0f} records/s\n\n"
            f"event-loop thread (HTTP, parse, pipeline), top by own time:\n"
            f"{profile_table(f'{prefix}.main.prof')}\n\n"
            f"store writer thread, top by own time:\n{profile_table(f'{prefix}.writer.prof')}")


def _wait_port(port: int, proc: object, timeout: float = 30.0) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("profiled serve did not start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--shippers", type=int, default=8)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--bodies", type=int, default=200, help="distinct bodies cycled through")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--live", type=int, default=1_000_000, help="records held for the RSS figure")
    p.add_argument("--log-lines", type=int, default=1_000_000)
    p.add_argument("--log", type=Path, default=None, help="use this log instead of generating")
    p.add_argument("--forget-timeout", type=float, default=5.0,
                   help="sessions.idle_timeout (s) of the forgetting run")
    p.add_argument("--profile", action="store_true",
                   help="one more plain run against a serve under cProfile")
    p.add_argument("--write", action="store_true")
    ns = p.parse_args(argv)
    log = ns.log or ensure_log(ns.log_lines)
    bodies = build_bodies(log, ns.batch, ns.bodies)
    plain: list[Load] = []
    zipped: list[Load] = []
    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        for run in range(ns.runs):
            for use_gzip, bucket in ((False, plain), (True, zipped)):
                svc = serve(tmp, f"load-{run}-{int(use_gzip)}")
                try:
                    load = asyncio.run(drive(svc.url, bodies, ns.shippers, ns.seconds, use_gzip))
                finally:
                    svc.stop()
                bucket.append(load)
                print(f"run {run + 1} {'gzip' if use_gzip else 'plain'}: {load.rate:,.0f} "
                      f"records/s, p50 {load.pct(0.5):.0f} ms, p99 {load.pct(0.99):.0f} ms, "
                      f"503s {load.busy}", file=sys.stderr)
        for title, loads in (("plain NDJSON", plain), ("gzip NDJSON", zipped)):
            out.append(f"{title:13s} acknowledged records/s {spread([x.rate for x in loads])}")
            out.append(f"{'':13s} batch latency p50 ms   {spread([x.pct(0.5) for x in loads])}")
            out.append(f"{'':13s} batch latency p99 ms   {spread([x.pct(0.99) for x in loads])}")
            out.append(f"{'':13s} 503 answers (retried)  {sum(x.busy for x in loads)}, "
                       f"failed {sum(x.failed for x in loads)}")

        # Forgetting keeps up with ingest?
        ft = ns.forget_timeout
        sweep = min(1.0, ft / 4)
        svc = serve(tmp, "forget", sessions_idle_timeout=f"{ft:g}s",
                    sessions_sweep_interval=f"{sweep:g}s")
        try:
            load = asyncio.run(drive(svc.url, bodies, ns.shippers, ns.seconds, False))
            deleted = asyncio.run(metric(svc.url, "lethelog_records_deleted_total"))
            live = asyncio.run(metric(svc.url, "lethelog_records_live"))
            wait = ft + 2 * sweep + 0.5
            time.sleep(wait)
            live_after = asyncio.run(metric(svc.url, "lethelog_records_live"))
            deleted_after = asyncio.run(metric(svc.url, "lethelog_records_deleted_total"))
            hwm = peak_hwm_kib(svc.proc.pid)
        finally:
            svc.stop()
        out.append("")
        out.append(f"forgetting (idle_timeout {ft:g}s): accepted {load.rate:,.0f} records/s, "
                   f"deleted {deleted / load.seconds:,.0f} records/s during the load "
                   f"(ratio {deleted / max(1, load.accepted):.2f} of accepted); live at end "
                   f"{live:,.0f}, {wait:g} s later {live_after:,.0f} (deleted total "
                   f"{deleted_after:,.0f} of {load.accepted:,}); peak RSS {hwm / 1024:.0f} MiB")

        # Peak RSS while holding --live records.
        svc = serve(tmp, "hold", sessions_idle_timeout="1d")
        try:
            batches = -(-ns.live // ns.batch)
            load = asyncio.run(drive(svc.url, bodies, ns.shippers, 3600.0, False,
                                     max_batches=batches))
            live = asyncio.run(metric(svc.url, "lethelog_records_live"))
            hwm = peak_hwm_kib(svc.proc.pid)
        finally:
            svc.stop()
        out.append(f"holding: {live:,.0f} live records after {load.accepted:,} accepted at "
                   f"{load.rate:,.0f} records/s; serve peak RSS {hwm / 1024:.0f} MiB")
        if ns.profile:
            out.append("")
            out.append(profile_serve(tmp, bodies, ns.shippers, ns.seconds))
    text = f"""Measured {today()} on {machine()}; other sessions share the machine; shippers
run in the benchmark process (aiohttp) on the same 2 cores as the service.

```
$ {command_line([PY, 'bench/http_ingest.py', *(argv if argv is not None else sys.argv[1:])])}
{ns.shippers} shippers, {ns.batch}-record NDJSON batches, {ns.seconds:g} s per run, default settings

""" + "\n".join(out) + "\n```\n"
    print(text)
    if ns.write:
        write_section("HTTP ingest", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
