"""Detection in the running service: records through POST /v1/logs, the runner on log time,
GET /v1/anomalies, a structlog event per anomaly opened/closed, the webhook with retry."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from collector.log import configure_logging
from tests.aggtools import COUNTRY_NETS, rec, ship, start, wait_for

T0 = 1_748_772_000.0  # 2025-06-01T10:00:00Z: an old replay, judged on its own timestamps


def replay(scan_from: int = 12, scan_minutes: int = 3, total: int = 20) -> list[dict[str, Any]]:
    rng = random.Random(3)
    out: list[dict[str, Any]] = []
    nets = list(COUNTRY_NETS.values())
    for m in range(total):
        t = T0 + 60 * m
        for i in range(30):
            out.append(rec(f"{rng.choice(nets)}.{rng.randrange(1, 40)}", t + i * 1.9,
                           path=rng.choice(["/", "/shop", "/about", "/cart"])))
        if scan_from <= m < scan_from + scan_minutes:
            for i in range(30):
                out.append(rec("198.51.100.77", t + i * 1.9 + 0.5, status=404,
                               path=f"/probe-{m}-{i}-{rng.choice('abcdef')}x.php", ua="zgrab/0.x"))
    return out


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver that fails the first delivery (500), then accepts."""
    got: list[dict[str, Any]] = []
    calls = {"n": 0}

    async def receive(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return web.Response(status=500)
        got.append(orjson.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("/hook")), got
    await server.close()


@pytest.mark.usefixtures("backend")  # on SQLite and on a Redis Cluster (tests/backends.py)
async def test_scan_in_a_replay_is_reported_everywhere(
        tmp_path: Path, hook: tuple[str, list[dict[str, Any]]]) -> None:
    url, delivered = hook
    logfile = tmp_path / "service.log"
    with open(logfile, "w") as fh:
        configure_logging("info", fh)
        client = await start(tmp_path / "data", **{
            "detect.interval": "100ms", "detect.webhook_url": url,
            "sessions.idle_timeout": "10m"})
        try:
            await ship(client, replay())

            async def found() -> bool:
                body = await (await client.get("/v1/anomalies")).json()
                return any(a["kind"] == "scan" and a["status"] == "closed"
                           for a in body["anomalies"])
            await wait_for(found, timeout=15)
            body = await (await client.get("/v1/anomalies")).json()
            scans = [a for a in body["anomalies"] if a["kind"] == "scan"
                     and a["dimensions"] == {"network": "198.51.100.0/24"}]
            assert len(scans) == 1
            a = scans[0]
            assert a["start_epoch"] == T0 + 12 * 60
            assert a["end_epoch"] == T0 + 15 * 60
            assert orjson.loads(orjson.dumps(a["evidence"]))["distinct_4xx_paths"] >= 15
            # reported at the end of its first minute, on log time: within two minutes
            assert a["detected"] <= "2025-06-01T10:14:00Z"
            others = [x for x in body["anomalies"] if x["kind"] != "scan"]
            assert others == [], others
            opened = await (await client.get("/v1/anomalies?status=open")).json()
            assert opened["anomalies"] == []
            bad = await client.get("/v1/anomalies?status=maybe")
            assert bad.status == 400 and "status" in (await bad.json())["error"]

            async def hooked() -> bool:
                return {d["event"] for d in delivered} >= {"anomaly_opened", "anomaly_closed"}
            await wait_for(hooked, timeout=15)
            assert delivered[0]["anomaly"]["id"] in {x["anomaly"]["id"] for x in delivered}
            assert all(d["anomaly"]["kind"] == "scan" for d in delivered)
        finally:
            await client.close()
            configure_logging("info")
    events = [orjson.loads(line) for line in logfile.read_text().splitlines()
              if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "anomaly_opened" in names and "anomaly_closed" in names
    assert "webhook_attempt_failed" in names, "the first delivery failed and was retried"
    text = logfile.read_text()
    assert "198.51.100.77" not in text, "the scanner's full address never reaches the log"
    assert url not in text, "the webhook URL (may carry a secret) is not logged"
