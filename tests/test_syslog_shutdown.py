"""SIGTERM on a real `lethelog serve` under HTTP and syslog load: stop accepting, drain, commit
what was acknowledged (HTTP) and what was read (syslog), exit 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import time
from collections import Counter
from pathlib import Path

import aiohttp

from tests.service import ServiceProcess, free_port


def clf(tag: str, n: int) -> str:
    t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    return (f'85.181.{n // 250 % 250}.{n % 250 + 1} - - [{t}] "GET /{tag}/{n} HTTP/1.1" 200 5 '
            f'"-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"')


def test_sigterm_drains_and_commits_everything_acknowledged_or_read(tmp_path: Path) -> None:
    tcp, udp = free_port(), free_port()
    data = tmp_path / "lethelog-data"
    svc = ServiceProcess(data, tmp_path / "service.log", env={
        "LETHELOG_SESSIONS_IDLE_TIMEOUT": "1d", "LETHELOG_SYSLOG_TCP": f"127.0.0.1:{tcp}",
        "LETHELOG_SYSLOG_UDP": f"127.0.0.1:{udp}", "LETHELOG_SYSLOG_SOURCE": "nginx"})
    outcomes: dict[int, int] = {}

    async def http_batch(session: aiohttp.ClientSession, b: int) -> None:
        body = "\n".join(clf(f"h{b}", i) for i in range(200))
        try:
            async with session.post(f"{svc.url}/v1/logs?format=combined", data=body,
                                    headers={"Content-Type": "text/plain"}) as resp:
                outcomes[b] = resp.status
                await resp.read()
        except aiohttp.ClientError:
            outcomes[b] = 0  # refused or cut: must not be half-stored

    async def syslog_tcp() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", tcp)
        for chunk in range(20):
            writer.write(b"".join(
                f"<190>Nov 27 10:00:00 web nginx: {clf('t', chunk * 250 + i)}\n".encode()
                for i in range(250)))
            await writer.drain()
        await asyncio.sleep(2)  # the service closes its side on shutdown
        writer.close()

    async def load() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for i in range(300):
                u.sendto(f"<190>Nov 27 10:00:00 web nginx: {clf('u', i)}".encode(),
                         ("127.0.0.1", udp))
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(http_batch(session, b)) for b in range(30)]
            tcp_task = asyncio.create_task(syslog_tcp())
            await asyncio.sleep(0.3)
            svc.proc.send_signal(signal.SIGTERM)  # mid-load
            await asyncio.gather(*tasks, tcp_task, return_exceptions=True)

    asyncio.run(load())
    assert svc.proc.wait(30) == 0, "a clean exit"
    svc.stop()

    log = [json.loads(x) for x in svc.log_path.read_text().splitlines() if x.startswith("{")]
    names = [e["event"] for e in log]
    assert names.index("syslog_closed") < names.index("store_closed"), "drained, then closed"
    closed = log[names.index("syslog_closed")]
    with sqlite3.connect(data / "lethelog.db") as db:
        paths = Counter(p for (p,) in db.execute("SELECT path FROM records"))
        by_source = dict(db.execute("SELECT source, count(*) FROM records GROUP BY source"))
    # syslog: everything read was committed (nothing half-way), nothing twice
    tcp_c, udp_c = closed["tcp"], closed["udp"]
    assert tcp_c["received"] > 0 and udp_c["received"] == 300
    assert tcp_c["received"] == tcp_c["stored"] + tcp_c["rejected"] + tcp_c["malformed"]
    assert udp_c["stored"] == 300
    assert by_source.get("nginx", 0) == tcp_c["stored"] + udp_c["stored"]
    assert max(paths.values()) == 1
    # HTTP: every acknowledged batch is stored whole; every other batch not at all
    assert 200 in outcomes.values()
    for b, status in outcomes.items():
        stored = sum(1 for i in range(200) if f"/h{b}/{i}" in paths)
        assert stored == (200 if status == 200 else 0), (b, status, stored)
    print(f"\nSIGTERM: HTTP {Counter(outcomes.values())}, syslog TCP read/stored "
          f"{tcp_c['received']}/{tcp_c['stored']}, UDP {udp_c['stored']}")
