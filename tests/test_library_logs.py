"""No library writes a peer address on our behalf (issue 15, point 5): aiohttp's server and
access loggers, asyncio, redis and every other ``logging`` user go through our sanitising
handler; uncaught exceptions print no traceback."""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest

from collector.log import configure_logging
from tests.service import ServiceProcess

PEER = "127.0.0.5"
BIG = "a" * 20000


def _raw(port: int, payload: bytes) -> bytes:
    with socket.socket() as s:
        s.bind((PEER, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(payload)
        s.settimeout(5)
        try:
            return s.recv(200)
        except OSError:
            return b""


def test_service_output_holds_no_peer_address(tmp_path: Path) -> None:
    """The issue's reproduction against a real ``lethelog serve``: a 20 kB header from
    127.0.0.5 (curl --interface), a broken request line, an address as the method and in the
    path. Its stdout and stderr (one file) never hold the address, the header or a traceback."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (Debian package curl)")
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "service.out"
    svc = ServiceProcess(data, out)
    try:
        for _ in range(100):
            try:
                _raw(svc.port, b"")
                break
            except OSError:
                time.sleep(0.1)
        big = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", PEER,
             "-H", f"X-Big: {BIG}", f"{svc.url}/healthz"],
            capture_output=True, text=True, timeout=30)
        assert big.stdout == "400", big
        assert _raw(svc.port, b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.")
        assert _raw(svc.port, b"203.0.113.7 / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.")
        assert _raw(svc.port, b"GET / HTTP/1.1\r\nContent-Length: zz\r\n\r\n").startswith(b"HTTP")
        path = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", PEER,
             f"{svc.url}/a/203.0.113.9/x"], capture_output=True, text=True, timeout=30)
        assert path.stdout == "404"
        time.sleep(0.5)
    finally:
        svc.stop()
    text = out.read_text()
    for needle in (PEER, "203.0.113.7", "203.0.113.9", "aaaaaaaaaa", "Traceback", "\\x01"):
        assert needle not in text, needle
    events = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(events) == len(text.splitlines()), "every line is one JSON event"
    library = [e for e in events if e["event"] == "library_log"]
    assert {e.get("error") for e in library} >= {"LineTooLong", "InvalidURLError"}
    assert all(e.get("peer") == "127.0.0.0" for e in library if "peer" in e)
    access = [e for e in events if e["event"] == "http_request"]
    assert {"method": "other", "peer": "127.0.0.0"}.items() <= access[0].items()
    assert any(e["path"] == "/a/203.0.113.0/x" for e in access)


def test_every_library_logger_is_sanitised() -> None:
    buf = io.StringIO()
    configure_logging("info", buf)
    try:
        try:
            raise ValueError("secret request data from 198.51.100.23")
        except ValueError:
            logging.getLogger("redis.cluster").error(
                "Connection to %s failed\nsecond line 198.51.100.24", "198.51.100.25",
                exc_info=True)
        logging.getLogger("aiohttp.access").info('198.51.100.26 "GET / HTTP/1.1" 200')
        logging.getLogger("aiohttp.server").debug("below the level: dropped")

        async def crash() -> None:
            raise RuntimeError("198.51.100.27 in an exception text")

        async def orphan() -> None:
            task = asyncio.get_running_loop().create_task(crash())
            await asyncio.sleep(0.01)
            del task

        asyncio.run(orphan())
        import gc
        gc.collect()
        thread = threading.Thread(target=lambda: 1 / 0)
        thread.start()
        thread.join()
    finally:
        configure_logging("info")
    text = buf.getvalue()
    for n in range(23, 28):
        assert f"198.51.100.{n}" not in text, n
    assert "Traceback" not in text and "secret request data" not in text
    events = [orjson.loads(line) for line in text.splitlines()]
    redis = next(e for e in events if e.get("logger") == "redis.cluster")
    assert redis["template"] == "Connection to %s failed" and redis["peer"] == "198.51.100.0"
    assert redis["error"] == "ValueError"
    assert not any(e.get("logger") == "aiohttp.access" for e in events)
    assert any(e.get("error") == "ZeroDivisionError" and e["event"] == "uncaught_exception"
               for e in events)
    assert any(e.get("logger") == "asyncio" for e in events), events
