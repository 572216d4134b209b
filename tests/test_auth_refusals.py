"""Only the shippers allowed to: no token, a wrong token, or the wrong network is refused.

A real `lethelog serve` with [[tokens]] and a syslog allowlist. The test client connects from
127.0.0.5 (any 127/8 address is local on Linux), so "the caller's full address" is an address
the service has no other reason to write: it must appear nowhere in its log or data directory,
while the refusal is logged with the masked 127.0.0.0.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.auth import new_token
from collector.settings import load_settings
from tests.service import ServiceProcess, all_files, files_containing, free_port

CALLER = "127.0.0.5"  # the refused caller's full address


def clf(ip: str, marker: str) -> str:
    t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    return f'{ip} - - [{t}] "GET /{marker} HTTP/1.1" 200 12 "-" "Mozilla/5.0 (X11; Linux)"'


def can_bind(addr: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


@pytest.fixture
def service(tmp_path: Path) -> Any:
    if not can_bind(CALLER):
        pytest.skip(f"{CALLER} is not a local address here")
    tokens = {name: new_token() for name in ("edge", "vpc-only", "oncall")}
    udp, tcp = free_port(), free_port()
    config = tmp_path / "lethelog.toml"
    config.write_text(f"""
[sessions]
idle_timeout = "1d"

[syslog]
udp = "127.0.0.1:{udp}"
tcp = "127.0.0.1:{tcp}"
allowed_networks = ["127.0.0.1/32"]

[[tokens]]
name = "edge"
roles = ["shipper"]
sha256 = "{tokens['edge'][1]}"

[[tokens]]
name = "vpc-only"
roles = ["shipper"]
sha256 = "{tokens['vpc-only'][1]}"
networks = ["10.0.0.0/8", "127.0.0.1/32"]

[[tokens]]
name = "oncall"
roles = ["sre"]
sha256 = "{tokens['oncall'][1]}"
""")
    load_settings(config, env={})  # the file is valid as written
    svc = ServiceProcess(tmp_path / "lethelog-data", tmp_path / "service.log",
                         args=["--config", str(config)])
    try:
        yield svc, {k: v[0] for k, v in tokens.items()}, udp, tcp
    finally:
        svc.stop()


async def post(url: str, body: str, token: str | None, local: str = CALLER
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Content-Type": "text/plain"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn = aiohttp.TCPConnector(local_addr=(local, 0))
    async with aiohttp.ClientSession(connector=conn) as s, \
            s.post(f"{url}/v1/logs?format=combined", data=body, headers=headers) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def records(url: str, token: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(
            f"{url}/v1/records?limit=1000",
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        return [json.loads(x) for x in (await resp.read()).splitlines() if x]


def events(log: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in (json.loads(x) for x in log.read_text().splitlines() if x.startswith("{"))
            if e.get("event") == name]


def test_refused_callers_store_nothing_and_are_logged_masked(service: Any,
                                                             tmp_path: Path) -> None:
    svc, tokens, _udp, _tcp = service
    body = clf("85.181.35.98", "refused-marker")

    async def scenario() -> None:
        status, answer, headers = await post(svc.url, body, None)
        assert (status, answer["error"]) == (401, "missing token")
        assert headers.get("WWW-Authenticate") == "Bearer"
        status, answer, _ = await post(svc.url, body, "lethelog_" + "x" * 43)
        assert (status, answer["error"]) == (401, "unknown token")
        status, answer, _ = await post(svc.url, body, tokens["vpc-only"])
        assert status == 403 and "network not allowed" in answer["error"]
        status, answer, _ = await post(svc.url, body, tokens["oncall"])  # not a shipper
        assert status == 403 and "role shipper required" in answer["error"]
        assert await records(svc.url, tokens["oncall"]) == [], "nothing stored"
        # the same token from an allowed network, and a token without networks: accepted
        status, answer, _ = await post(svc.url, clf("85.181.35.98", "vpc-ok"),
                                       tokens["vpc-only"], local="127.0.0.1")
        assert status == 200 and answer["accepted"] == 1
        status, answer, _ = await post(svc.url, clf("85.181.35.99", "edge-ok"), tokens["edge"])
        assert status == 200 and answer["accepted"] == 1
        stored = await records(svc.url, tokens["oncall"])
        assert sorted((r["path"], r["source"]) for r in stored) == [
            ("/edge-ok", "edge"), ("/vpc-ok", "vpc-only")]

    asyncio.run(scenario())
    assert svc.stop() == 0
    refused = events(svc.log_path, "auth_refused")
    assert len(refused) == 4
    assert {e["peer"] for e in refused} == {"127.0.0.0"}
    assert {e["status"] for e in refused} == {401, 403}
    files = all_files(tmp_path / "lethelog-data", svc.log_path)
    hits = files_containing(files, [CALLER, "refused-marker", *tokens.values()])
    assert hits == {}, "neither the caller's address, the refused data nor a token was written"


def test_syslog_outside_allowlist_is_refused_and_nothing_stored(service: Any,
                                                                tmp_path: Path) -> None:
    svc, tokens, udp, tcp = service
    line = clf("85.181.35.98", "syslog-refused")
    msg = f"<190>Nov 27 10:00:00 web nginx: {line}\n".encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind((CALLER, 0))
        for _ in range(3):
            u.sendto(msg, ("127.0.0.1", udp))
    with socket.socket() as t:
        t.bind((CALLER, 0))
        t.connect(("127.0.0.1", tcp))
        t.settimeout(5)
        try:
            t.sendall(msg * 3)
            closed = t.recv(1) == b""  # the service closes a refused connection at once
        except ConnectionResetError:
            closed = True
        assert closed
    # the allowed address gets through (positive control)
    ok = f"<190>Nov 27 10:00:00 web nginx: {clf('85.181.35.97', 'syslog-ok')}\n".encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        u.sendto(ok, ("127.0.0.1", udp))
    deadline = time.monotonic() + 10
    stored: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not stored:
        time.sleep(0.1)
        stored = asyncio.run(records(svc.url, tokens["oncall"]))
    time.sleep(0.4)
    stored = asyncio.run(records(svc.url, tokens["oncall"]))
    assert [r["path"] for r in stored] == ["/syslog-ok"]
    assert svc.stop() == 0
    udp_refused = events(svc.log_path, "syslog_refused_udp")
    tcp_refused = events(svc.log_path, "syslog_refused_tcp")
    assert udp_refused and tcp_refused
    assert {e["peer"] for e in udp_refused + tcp_refused} == {"127.0.0.0"}
    closed_ev = events(svc.log_path, "syslog_closed")[0]
    assert closed_ev["udp"]["refused"] == 3 and closed_ev["tcp"]["refused"] == 1
    files = all_files(tmp_path / "lethelog-data", svc.log_path)
    assert files_containing(files, [CALLER, "syslog-refused"]) == {}
