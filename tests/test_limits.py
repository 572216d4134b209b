"""Limits on a real `lethelog serve`: body size, gzip bombs, records per request, slow clients.

One service process with small limits (64 KiB bodies, 100 records, 2 s body deadline, 2 s
keep-alive); slow clients trickle one byte a second while a normal shipper keeps being served.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.service import ServiceProcess

LIMIT = 64 * 1024


def clf(n: int, marker: str = "ok") -> str:
    t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    return (f'85.181.35.{n % 250 + 1} - - [{t}] "GET /{marker}/{n} HTTP/1.1" 200 5 "-" '
            f'"Mozilla/5.0 (X11; Linux x86_64)"')


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("limits")
    service = ServiceProcess(root / "lethelog-data", root / "service.log", env={
        "LETHELOG_INGEST_MAX_BODY_SIZE": "64KiB",
        "LETHELOG_INGEST_MAX_RECORDS_PER_REQUEST": "100",
        "LETHELOG_INGEST_BODY_TIMEOUT": "2s",
        "LETHELOG_INGEST_KEEPALIVE_TIMEOUT": "2s",
        "LETHELOG_SESSIONS_IDLE_TIMEOUT": "1d",
    })
    yield service
    assert service.stop() == 0


async def post(url: str, data: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    h = {"Content-Type": "text/plain", **headers}
    async with aiohttp.ClientSession() as s, s.post(f"{url}/v1/logs?format=combined",
                                                    data=data, headers=h) as resp:
        return resp.status, await resp.json()


async def count(url: str, marker: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/v1/records?limit=100000") as resp:
        assert resp.status == 200
        rows = [json.loads(x) for x in (await resp.read()).splitlines() if x]
    return sum(1 for r in rows if (r["path"] or "").startswith(f"/{marker}/"))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_body_over_limit_413_and_nothing_stored(svc: ServiceProcess) -> None:
    body = "\n".join(clf(i, "big") for i in range(700)).encode()
    assert len(body) > LIMIT

    async def run() -> None:
        status, answer = await post(svc.url, body)
        assert status == 413 and "ingest.max_body_size" in answer["error"]

        async def chunks() -> Any:  # no Content-Length: the limit holds while streaming
            for i in range(0, len(body), 4096):
                yield body[i:i + 4096]

        async with aiohttp.ClientSession() as s, s.post(
                f"{svc.url}/v1/logs?format=combined", data=chunks(),
                headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 413
        assert await count(svc.url, "big") == 0

    asyncio.run(run())


def test_gzip_bomb_refused(svc: ServiceProcess) -> None:
    bomb = gzip.compress(b"\n" * (128 * 1024**2), compresslevel=9)  # 128 MiB of newlines
    assert len(bomb) < 1024**2
    before = rss_mib(svc.proc.pid)

    async def run() -> None:
        status, answer = await post(svc.url, bomb, **{"Content-Encoding": "gzip"})
        assert status == 413 and "after decompression" in answer["error"]
        # deflate too, and a bomb of real lines: refused, nothing stored
        lines = ("\n".join(clf(i, "bomb") for i in range(5000)) + "\n").encode()
        status, _ = await post(svc.url, zlib.compress(lines), **{"Content-Encoding": "deflate"})
        assert status == 413
        assert await count(svc.url, "bomb") == 0
        small = gzip.compress(("\n".join(clf(i, "gz") for i in range(50)) + "\n").encode())
        status, answer = await post(svc.url, small, **{"Content-Encoding": "gzip"})
        assert status == 200 and answer["accepted"] == 50

    asyncio.run(run())
    assert rss_mib(svc.proc.pid) < before + 32, "the bomb was never inflated in memory"


def test_too_many_records_413(svc: ServiceProcess) -> None:
    body = "\n".join(clf(i, "many") for i in range(101)).encode()

    async def run() -> None:
        status, answer = await post(svc.url, body)
        assert status == 413 and "ingest.max_records_per_request" in answer["error"]
        assert await count(svc.url, "many") == 0

    asyncio.run(run())


async def trickle(port: int, head: bytes, total: int) -> tuple[float, bytes]:
    """Send ``head`` then one byte a second; (seconds until the service hung up, its answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head)
    await writer.drain()
    answer = b""
    try:
        for _ in range(total):
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 1.0)
            except TimeoutError:
                writer.write(b"x" if head.endswith(b"\r\n\r\n") else b"X")
                await writer.drain()
                continue
            answer += chunk
            if not chunk:
                break
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started, answer


def test_one_byte_a_second_is_cut_off_while_others_are_served(svc: ServiceProcess) -> None:
    body_head = (b"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: 1000\r\n\r\n")
    header_head = b"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "

    async def run() -> None:
        slow_body = asyncio.create_task(trickle(svc.port, body_head, 30))
        slow_head = asyncio.create_task(trickle(svc.port, header_head, 30))
        idle = asyncio.create_task(trickle(svc.port, b"", 30))
        await asyncio.sleep(0.5)
        latencies = []
        for i in range(5):  # a normal shipper keeps being served meanwhile
            t0 = time.monotonic()
            status, answer = await post(svc.url, (clf(i, "during") + "\n").encode())
            latencies.append(time.monotonic() - t0)
            assert status == 200 and answer["accepted"] == 1
            await asyncio.sleep(0.2)
        assert max(latencies) < 1.0, latencies
        (t_body, answer_body), (t_head, _), (t_idle, _) = await asyncio.gather(
            slow_body, slow_head, idle)
        assert answer_body.startswith(b"HTTP/1.1 408"), answer_body[:60]
        assert b"ingest.body_timeout" in answer_body
        assert t_body < 5, "the slow body was cut off after ingest.body_timeout (2 s)"
        assert t_head < 5, "slow headers were cut off after ingest.keepalive_timeout (2 s)"
        assert t_idle < 5, "an idle connection was closed after ingest.keepalive_timeout"
        assert await count(svc.url, "during") == 5

    asyncio.run(run())
