"""The main job end to end, in process: POST /v1/logs → masked, enriched, per-session records."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import random
import re
import string
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.log import configure_logging
from tests.conftest import DATA, log_fixture
from tests.service import all_files, files_containing, make_settings

COMBINED = re.compile(
    r'^(\S+) \S+ \S+ \[([^\]]+)\] "([^"]*)" (\d{3}) (\S+) "([^"]*)" "([^"]*)"$'
)
MMDB = DATA / "mmdb"


async def start(tmp_path: Path, **values: Any) -> TestClient[Any, Any]:
    settings = make_settings(tmp_path / "data", **values)
    app: web.Application = create_app(settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def logbuf(tmp_path: Path) -> AsyncIterator[Path]:
    """Route the service's structlog output into a file we can search."""
    path = tmp_path / "service.log"
    with open(path, "w") as fh:
        configure_logging("debug", fh)
        yield path
    configure_logging("info")


async def records(client: TestClient[Any, Any], limit: int = 1_000_000) -> list[dict[str, Any]]:
    resp = await client.get(f"/v1/records?limit={limit}")
    assert resp.status == 200
    body = await resp.read()
    return [orjson.loads(line) for line in body.splitlines() if line]


def parse_elastic(path: Path) -> list[tuple[str, float, str]]:
    """Independent reading of the combined log: (ip, epoch, user agent) of each good line."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = COMBINED.match(line)
        if not m:
            continue
        t = datetime.strptime(m.group(2), "%d/%b/%Y:%H:%M:%S %z").timestamp()
        out.append((m.group(1), t, m.group(7)))
    return out


def expected_live(lines: list[tuple[str, float, str]], idle: float) -> int:
    """Records of sessions still open at the file's end, sessionized the documented way."""
    last: dict[tuple[str, str], float] = {}
    count: dict[tuple[str, str], int] = {}
    clock = float("-inf")
    for ip, t, ua in lines:
        key = (ip, ua)
        if key in last and t - last[key] > idle:
            count[key] = 0
        last[key] = max(last.get(key, t), t)
        count[key] = count.get(key, 0) + 1
        clock = max(clock, t)
    return sum(n for key, n in count.items() if clock - last[key] <= idle)


async def test_elastic_log_long_timeout_keeps_all(tmp_path: Path, logbuf: Path) -> None:
    path = log_fixture("elastic-examples_apache_logs")
    client = await start(tmp_path, **{"sessions.idle_timeout": "3650d",
                                      "enrich.city_db": str(MMDB / "GeoIP2-City-Test.mmdb")})
    try:
        resp = await client.post("/v1/logs", data=path.read_bytes(),
                                 headers={"Content-Type": "text/plain"})
        assert resp.status == 200
        body = await resp.json()
        assert body["accepted"] == 9999
        assert body["rejected"] == 1
        assert body["errors"][0]["line"] == 8899
        assert body["errors"][0]["error"]
        got = await records(client)
        assert len(got) == 9999
        times = [r["time"] for r in got]
        assert times == sorted(times, reverse=True), "newest first"
        for r in got:
            ip = ipaddress.ip_address(r["ip"])
            assert ip.version == 4 and int(ip) & 0xFF == 0, r["ip"]
            assert r["time"].endswith("Z")
            assert r["session"] and "session_key" not in r
        assert sum(r["browser"] is not None for r in got) > 8500
        assert sum(r["os"] is not None for r in got) > 5000
        kinds = {"desktop", "mobile", "tablet", "bot", "other", None}
        assert {r["device_type"] for r in got} <= kinds
        assert sum(r["is_bot"] is True for r in got) > 100
        # empty-string guesses are not allowed anywhere
        empty = {k for r in got for k, v in r.items() if v == ""}
        assert empty == set()
        first = next(r for r in got if r["path"] == "/presentations/logstash-monitorama-2013/"
                     "images/kibana-search.png")
        assert first["method"] == "GET" and first["status"] == 200
    finally:
        await client.close()


async def test_elastic_log_default_timeout_forgets_ended_sessions(
    tmp_path: Path, logbuf: Path
) -> None:
    path = log_fixture("elastic-examples_apache_logs")
    lines = parse_elastic(path)
    assert len(lines) == 9999
    want = expected_live(lines, 1800.0)
    assert 0 < want < 1000
    client = await start(tmp_path)
    try:
        resp = await client.post("/v1/logs", data=path.read_bytes(),
                                 headers={"Content-Type": "text/plain"})
        assert (await resp.json())["accepted"] == 9999
        got = await records(client)
        assert len(got) == want
        end = max(t for _, t, _ in lines)
        assert min(datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()
                   for r in got) <= end
        metrics = await (await client.get("/metrics")).text()
        deleted = float(re.search(r"^lethelog_records_deleted_total (\S+)$", metrics,
                                  re.M).group(1))  # type: ignore[union-attr]
        assert deleted == 9999 - want
        live = float(re.search(r"^lethelog_records_live (\S+)$", metrics,
                               re.M).group(1))  # type: ignore[union-attr]
        assert live == want
    finally:
        await client.close()
    # No raw client address in any file the service wrote, nor in its log.
    raw_ips = {ip for ip, _, _ in lines if not ip.endswith(".0")}
    assert len(raw_ips) > 1700
    hits = files_containing(all_files(tmp_path / "data", logbuf), raw_ips)
    assert hits == {}


async def test_session_forgotten_after_idle_timeout(tmp_path: Path) -> None:
    client = await start(tmp_path, **{"sessions.idle_timeout": "2s",
                                      "sessions.sweep_interval": "200ms"})
    marker = "/forget-me-" + "".join(random.choices(string.ascii_lowercase, k=16))
    try:
        now = datetime.now().astimezone().isoformat()
        rec = {"time": now, "client": "198.51.100.77", "method": "GET", "target": marker,
               "status": 200, "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"}
        resp = await client.post("/v1/logs", data=orjson.dumps(rec),
                                 headers={"Content-Type": "application/x-ndjson"})
        assert (await resp.json())["accepted"] == 1
        got = await records(client)
        assert [r["path"] for r in got] == [marker]
        assert got[0]["ip"] == "198.51.100.0"
        data_dir = tmp_path / "data"
        assert files_containing(all_files(data_dir), [marker[1:]]) != {}
        # idle timeout (2 s) + one sweep (0.2 s) + slack for the checkpoint
        deadline = asyncio.get_running_loop().time() + 5.0
        while asyncio.get_running_loop().time() < deadline:
            if not await records(client) and not files_containing(all_files(data_dir),
                                                                  [marker[1:]]):
                break
            await asyncio.sleep(0.2)
        assert await records(client) == []
        assert files_containing(all_files(data_dir), [marker[1:]]) == {}
        assert files_containing(all_files(data_dir), ["198.51.100.77"]) == {}
    finally:
        await client.close()


async def test_mixed_batch_keeps_good_records(tmp_path: Path) -> None:
    client = await start(tmp_path)
    now = datetime.now().astimezone().isoformat()
    good = {"time": now, "remote_addr": "203.0.113.9", "request": "GET /ok HTTP/1.1",
            "status": "200", "http_user_agent": "curl/8.0"}
    lines = [
        orjson.dumps(good),
        b'{"time": "' + now.encode() + b'", "client": "203.0.113.10", ',  # broken JSON
        orjson.dumps({**good, "remote_addr": "999.1.2.3"}),  # bad IP
        orjson.dumps({k: v for k, v in good.items() if k != "time"}),  # missing time
        orjson.dumps({**good, "source.ip": None, "remote_addr": "2001:db8:abcd:12::7"}),
        b"[1, 2]",  # not an object
    ]
    try:
        resp = await client.post("/v1/logs", data=b"\n".join(lines),
                                 headers={"Content-Type": "application/x-ndjson"})
        assert resp.status == 200
        body = await resp.json()
        assert body["accepted"] == 2
        assert body["rejected"] == 4
        errors = {e["line"]: e["error"] for e in body["errors"]}
        assert set(errors) == {2, 3, 4, 6}
        assert "JSON" in errors[2]
        assert "timestamp" in errors[4]
        assert "999.1.2.3" not in errors[3] and errors[3]
        got = await records(client)
        assert sorted(r["ip"] for r in got) == ["2001:db8:abcd::", "203.0.113.0"]
    finally:
        await client.close()


async def test_future_timestamp_rejected_and_moves_nothing(tmp_path: Path) -> None:
    client = await start(tmp_path)
    try:
        rec = {"time": "2099-01-01T00:00:00Z", "client": "192.0.2.1", "target": "/",
               "status": 200}
        resp = await client.post("/v1/logs", json=[rec])
        body = await resp.json()
        assert body["accepted"] == 0 and body["rejected"] == 1
        assert "future" in body["errors"][0]["error"]
        assert await records(client) == []
    finally:
        await client.close()


async def test_json_array_gzip_and_shipper_names(tmp_path: Path) -> None:
    client = await start(tmp_path)
    now = datetime.now().astimezone().isoformat()
    batch = [
        {"@timestamp": now, "source": {"ip": "192.0.2.44"}, "url": {"original": "/a?token=s3cr3t"},
         "http": {"request": {"method": "POST"}, "response": {"status_code": 201}},
         "user_agent": {"original": "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) "
                        "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 "
                        "Safari/604.1"}},
        {"timestamp": now, "client": "192.0.2.45", "request": "GET /b HTTP/1.1", "status": 404,
         "agent": "Googlebot/2.1 (+http://www.google.com/bot.html)",
         "referer": "https://user:pw@example.com/search?q=secret#frag"},
    ]
    try:
        resp = await client.post("/v1/logs", data=gzip.compress(orjson.dumps(batch)),
                                 headers={"Content-Type": "application/json",
                                          "Content-Encoding": "gzip"})
        body = await resp.json()
        assert body == {"accepted": 2, "rejected": 0, "dropped": 0, "errors": []}
        got = {r["path"]: r for r in await records(client)}
        assert got["/a"]["method"] == "POST" and got["/a"]["status"] == 201
        assert "s3cr3t" not in (got["/a"]["query"] or "")
        assert got["/a"]["device_type"] == "mobile"
        assert got["/b"]["is_bot"] is True and got["/b"]["device_type"] == "bot"
        assert got["/b"]["referrer"] == "https://example.com/search"
    finally:
        await client.close()


async def test_gzip_bomb_and_bad_type_refused(tmp_path: Path) -> None:
    client = await start(tmp_path, **{"ingest.max_body_size": "1MiB"})
    try:
        bomb = gzip.compress(b"\n" * (50 * 1024 * 1024))
        resp = await client.post("/v1/logs", data=bomb, headers={
            "Content-Type": "text/plain", "Content-Encoding": "gzip"})
        assert resp.status == 413
        resp = await client.post("/v1/logs", data=b"x", headers={"Content-Type": "image/png"})
        assert resp.status == 415
        resp = await client.post("/v1/logs", data=b"[", headers={
            "Content-Type": "application/json"})
        assert resp.status == 400
        assert "invalid JSON" in (await resp.json())["error"]
    finally:
        await client.close()


async def test_healthz_and_metrics(tmp_path: Path) -> None:
    client = await start(tmp_path)
    try:
        health = await (await client.get("/healthz")).json()
        assert health["status"] == "ok"
        assert health["store"]["backend"] == "SQLiteStore"
        text = await (await client.get("/metrics")).text()
        for name in ("lethelog_records_accepted_total", "lethelog_records_rejected_total",
                     "lethelog_sessions_live", "lethelog_sessions_ended_total",
                     "lethelog_records_deleted_total", "lethelog_queue_depth",
                     "lethelog_ingest_seconds_bucket"):
            assert name in text
    finally:
        await client.close()
