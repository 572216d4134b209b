"""The syslog source in the running app: framing, TLS (and client certificates), backpressure on
TCP when the store is busy, UDP drops counted, bad messages rejected without leaking addresses.

The store is the real SQLite store; "busy" is injected by closing a gate in front of its
``write`` that raises ``StoreBusy``, exactly what the bounded queue raises when full.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.appkeys import METRICS, STORE
from collector.log import configure_logging
from collector.record import Record
from collector.settings import SettingsError
from collector.sources.syslog import SYSLOG, SyslogReceiver
from collector.store import StoreBusy, WriteResult
from tests.service import free_port, make_settings

UA = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/121.0"


def clf(n: int, tag: str = "t", ua: str = UA) -> str:
    t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    return (f'85.181.{n // 250 % 250}.{n % 250 + 1} - - [{t}] "GET /{tag}/{n} HTTP/1.1" 200 5 '
            f'"-" "{ua}"')


def rfc3164(body: str) -> bytes:
    return f"<190>Nov 27 10:00:00 web1 nginx: {body}".encode()


def octet(msg: bytes) -> bytes:
    return b"%d " % len(msg) + msg


@pytest.fixture
async def logbuf(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "service.log"
    with open(path, "w") as fh:
        configure_logging("debug", fh)
        yield path
    configure_logging("info")


async def start(tmp_path: Path, **values: Any) -> tuple[TestClient[Any, Any], SyslogReceiver]:
    values = {"sessions.idle_timeout": "1d", "syslog.flush_interval": "50ms", **values}
    app: web.Application = create_app(make_settings(tmp_path / "data", **values))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client, app[SYSLOG]


async def stored_paths(client: TestClient[Any, Any]) -> list[str]:
    store: Any = client.app[STORE]
    rows = await store.read(lambda c: c.execute("SELECT path FROM records").fetchall())
    return [p for (p,) in rows]


async def wait_until(pred: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_tcp_framings_malformed_and_rejected(tmp_path: Path, logbuf: Path) -> None:
    tcp = free_port()
    client, rx = await start(tmp_path, **{"syslog.tcp": f"127.0.0.1:{tcp}",
                                          "syslog.source": "edge-nginx"})
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", tcp)
        stream = b"".join(octet(rfc3164(clf(i))) for i in range(300))
        stream += b"".join(rfc3164(clf(i)) + b"\n" for i in range(300, 600))
        stream += b"not syslog at all 85.181.35.98\n"  # malformed
        stream += rfc3164("85.181.35.98 this is no access log line") + b"\n"  # rejected
        stream += octet(rfc3164(clf(600)))
        for i in range(0, len(stream), 1000):  # arbitrary chunking
            writer.write(stream[i:i + 1000])
            await writer.drain()
        writer.write(rfc3164(clf(601)))  # the last message has no LF: EOF ends it
        writer.close()
        await writer.wait_closed()

        async def all_in() -> bool:
            return len(await stored_paths(client)) >= 602
        await wait_until(all_in)
        paths = await stored_paths(client)
        assert sorted(paths) == sorted(f"/t/{i}" for i in range(602))
        assert rx.tcp.malformed == 1 and rx.tcp.rejected == 1 and rx.tcp.stored == 602
        store: Any = client.app[STORE]
        sources = await store.read(lambda c: c.execute(
            "SELECT DISTINCT source FROM records").fetchall())
        assert sources == [("edge-nginx",)]
    finally:
        await client.close()
    text = logbuf.read_text()
    assert "syslog_records_rejected" in text and "syslog_closed" in text
    assert "85.181.35.98" not in text


async def test_tcp_idle_connection_closed(tmp_path: Path) -> None:
    tcp = free_port()
    client, _ = await start(tmp_path, **{"syslog.tcp": f"127.0.0.1:{tcp}",
                                         "syslog.idle_timeout": "300ms"})
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp)
        t0 = time.monotonic()
        assert await asyncio.wait_for(reader.read(1), 5) == b""
        assert 0.25 < time.monotonic() - t0 < 3
        writer.close()
    finally:
        await client.close()


async def test_tcp_backpressure_stops_reading_while_store_busy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tcp = free_port()
    client, rx = await start(tmp_path, **{"syslog.tcp": f"127.0.0.1:{tcp}",
                                          "syslog.batch_size": "200"})
    store: Any = client.app[STORE]
    real_write = store.write
    gate = asyncio.Event()
    refusals = 0

    async def gated(records: list[Record]) -> WriteResult:
        nonlocal refusals
        if not gate.is_set():
            refusals += 1
            raise StoreBusy(retry_after=0.05)
        return await real_write(records)

    monkeypatch.setattr(store, "write", gated)
    long_ua = UA + " " + "x" * 800
    msgs = [octet(rfc3164(clf(i, "bp", long_ua))) for i in range(8000)]  # ~8 MiB
    stream = b"".join(msgs)
    sent = 0

    def sender() -> None:
        nonlocal sent
        with socket.create_connection(("127.0.0.1", tcp)) as s:
            for i in range(0, len(stream), 65536):
                s.sendall(stream[i:i + 65536])
                sent = i + 65536
            sent = len(stream)

    th = threading.Thread(target=sender, daemon=True)
    try:
        th.start()
        await asyncio.sleep(1.0)
        read1, sent1 = rx.tcp.received, sent
        await asyncio.sleep(0.5)
        read2, sent2 = rx.tcp.received, sent
        assert read2 == read1, "nothing more is read while the store is busy"
        assert read1 < 2 * (200 + 300), "two batches in hand (one committing), a read more each"
        assert sent2 == sent1 < len(stream), "the sender is blocked: its TCP window closed"
        assert refusals > 3 and rx.tcp.busy_waits > 3
        assert await stored_paths(client) == []
        gate.set()
        await asyncio.to_thread(th.join, 30)
        assert not th.is_alive()

        async def all_in() -> bool:
            return len(await stored_paths(client)) >= len(msgs)
        await wait_until(all_in, 30)
        paths = await stored_paths(client)
        assert len(paths) == len(set(paths)) == len(msgs), "all stored, none twice"
        assert sum(rx.tcp.dropped.values()) == 0
    finally:
        gate.set()
        await client.close()


async def test_udp_drops_and_counts_when_store_busy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    udp = free_port()
    client, rx = await start(tmp_path, **{"syslog.udp": f"127.0.0.1:{udp}",
                                          "syslog.max_message_size": "1KiB"})
    store: Any = client.app[STORE]
    real_write = store.write
    busy = True

    async def gated(records: list[Record]) -> WriteResult:
        if busy:
            raise StoreBusy(retry_after=1.0)
        return await real_write(records)

    monkeypatch.setattr(store, "write", gated)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(40):
                s.sendto(rfc3164(clf(i, "lost")), ("127.0.0.1", udp))
            s.sendto(b"<190>" + b"x" * 2000, ("127.0.0.1", udp))  # over max_message_size

            async def dropped() -> bool:
                return rx.udp.dropped.get("store_busy", 0) == 40
            await wait_until(dropped)
            busy = False
            for i in range(10):
                s.sendto(rfc3164(clf(i, "kept")), ("127.0.0.1", udp))

            async def kept() -> bool:
                return len(await stored_paths(client)) >= 10
            await wait_until(kept)
        assert sorted(await stored_paths(client)) == sorted(f"/kept/{i}" for i in range(10))
        assert rx.udp.dropped == {"store_busy": 40, "too_long": 1}
        text = client.app[METRICS].render()
        assert "lethelog_syslog_udp_dropped 41.0" in text
        assert "lethelog_syslog_udp_datagrams 51.0" in text
    finally:
        await client.close()


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=lethelog test CA")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")
    yield {n: d / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


async def test_tls_with_client_certificates(tmp_path: Path, pki: dict[str, Path]) -> None:
    tcp = free_port()
    client, rx = await start(tmp_path, **{
        "syslog.tcp": f"127.0.0.1:{tcp}", "syslog.tls_cert": str(pki["server.pem"]),
        "syslog.tls_key": str(pki["server.key"]), "syslog.tls_client_ca": str(pki["ca.pem"])})
    try:
        good = ssl.create_default_context(cafile=str(pki["ca.pem"]))
        good.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
        _, writer = await asyncio.open_connection("127.0.0.1", tcp, ssl=good,
                                                  server_hostname="127.0.0.1")
        writer.write(b"".join(octet(rfc3164(clf(i, "tls"))) for i in range(50)))
        await writer.drain()
        writer.close()
        anon = ssl.create_default_context(cafile=str(pki["ca.pem"]))  # no client certificate
        try:
            r2, w2 = await asyncio.open_connection("127.0.0.1", tcp, ssl=anon,
                                                   server_hostname="127.0.0.1")
            w2.write(octet(rfc3164(clf(99, "anon"))))
            await w2.drain()
            refused = await asyncio.wait_for(r2.read(1), 5) == b""  # TLS 1.3: on first read
        except (ssl.SSLError, ConnectionError):
            refused = True
        assert refused

        def plain() -> bool:  # plain text on the TLS port (a thread: the service is this loop)
            with socket.create_connection(("127.0.0.1", tcp)) as s:
                s.sendall(octet(rfc3164(clf(98, "plain"))))
                s.settimeout(5)
                try:
                    return s.recv(100) == b""
                except ConnectionError:
                    return True

        assert await asyncio.to_thread(plain)

        async def got() -> bool:
            return len(await stored_paths(client)) >= 50
        await wait_until(got)
        await asyncio.sleep(0.2)
        assert sorted(await stored_paths(client)) == sorted(f"/tls/{i}" for i in range(50))
        assert rx.ssl is not None
    finally:
        await client.close()


def test_settings_errors_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^syslog\.format: "):
        make_settings(tmp_path, **{"syslog.udp": "127.0.0.1:5514", "syslog.format": "bogus"})
    with pytest.raises(SettingsError, match=r"^syslog\.tls_cert: TLS needs the TCP listener"):
        make_settings(tmp_path, **{"syslog.udp": "127.0.0.1:5514",
                                   "syslog.tls_cert": "/c.pem", "syslog.tls_key": "/k.pem"})
    with pytest.raises(SettingsError, match=r"^syslog\.allowed_networks"):
        make_settings(tmp_path, **{"syslog.allowed_networks": "10.0.0.0/8,nonsense"})
    with pytest.raises(SettingsError, match=r"^syslog\.source"):
        make_settings(tmp_path, **{"syslog.source": "has space"})
    s = make_settings(tmp_path, **{"syslog.tcp": "127.0.0.1:5514",
                                   "syslog.format": "log_format x '$remote_addr [$time_local] "
                                                    "\"$request\" $status';"})
    assert s.syslog.tcp == "127.0.0.1:5514"
