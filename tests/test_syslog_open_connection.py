"""A relay (rsyslog, syslog-ng) keeps its syslog TCP connection open for days: a message must be
committed within syslog.flush_interval, not when the connection idles out or closes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.service import free_port
from tests.test_syslog_service import clf, octet, rfc3164, start, stored_paths, wait_until


async def test_a_few_messages_on_an_open_connection_are_committed_promptly(
        tmp_path: Path) -> None:
    tcp = free_port()
    client, rx = await start(tmp_path, **{"syslog.tcp": f"127.0.0.1:{tcp}",
                                          "syslog.idle_timeout": "1h"})
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", tcp)
        for i in range(3):  # fewer than syslog.batch_size, connection left open
            writer.write(octet(rfc3164(clf(i, tag="open"))))
            await writer.drain()

            async def stored(n: int = i + 1) -> bool:
                return len(await stored_paths(client)) == n
            await wait_until(stored, timeout=5)  # flush_interval is 50 ms here
        assert sorted(await stored_paths(client)) == ["/open/0", "/open/1", "/open/2"]
        assert rx.tcp.stored == 3
        writer.close()
        await writer.wait_closed()
    finally:
        await client.close()
