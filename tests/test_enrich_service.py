"""Enrichment end to end through ``POST /v1/logs`` with the MaxMind test databases configured."""

from __future__ import annotations

import os
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.appkeys import GEO
from tests.conftest import DATA
from tests.service import make_settings

MMDB = DATA / "mmdb"
ALL_DBS = {
    "enrich.city_db": str(MMDB / "GeoIP2-City-Test.mmdb"),
    "enrich.asn_db": str(MMDB / "GeoLite2-ASN-Test.mmdb"),
    "enrich.isp_db": str(MMDB / "GeoIP2-ISP-Test.mmdb"),
    "enrich.anonymous_ip_db": str(MMDB / "GeoIP2-Anonymous-IP-Test.mmdb"),
    "enrich.connection_type_db": str(MMDB / "GeoIP2-Connection-Type-Test.mmdb"),
}
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")


async def start(tmp_path: Path, **values: Any) -> TestClient[Any, Any]:
    settings = make_settings(tmp_path / "data", **{"sessions.idle_timeout": "3650d", **values})
    app: web.Application = create_app(settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


def combined(ip: str, when: datetime, ua: str = CHROME, path: str = "/") -> str:
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S %z")
    return f'{ip} - - [{stamp}] "GET {path} HTTP/1.1" 200 123 "-" "{ua}"'


async def records(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    resp = await client.get("/v1/records?limit=1000000")
    assert resp.status == 200
    return [orjson.loads(line) for line in (await resp.read()).splitlines() if line]


async def post(client: TestClient[Any, Any], lines: list[str]) -> dict[str, Any]:
    resp = await client.post("/v1/logs", data="\n".join(lines).encode(),
                             headers={"Content-Type": "text/plain"})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_acceptance_answers_full_mode(tmp_path: Path) -> None:
    client = await start(tmp_path, **ALL_DBS, **{"enrich.geo_from": "full"})
    now = datetime.now(UTC) - timedelta(minutes=5)
    ips = ["81.2.69.142", "216.160.83.56", "89.160.20.128", "1.128.3.4", "2a02:cf40::1"]
    try:
        body = await post(client, [combined(ip, now, path=f"/{i}") for i, ip in enumerate(ips)])
        assert body["accepted"] == 5
        by_path = {r["path"]: r for r in await records(client)}
        london, milton, linkoping, telstra, norway = (by_path[f"/{i}"] for i in range(5))
        assert (london["country"], london["region"], london["city"]) == ("GB", "England",
                                                                          "London")
        assert london["is_anonymous_proxy"] and london["is_vpn"] and london["is_tor"]
        assert london["is_hosting"]
        assert london["ip"] == "81.2.69.0"  # the full address was used, not stored
        assert (milton["country"], milton["region"], milton["city"]) == ("US", "Washington",
                                                                          "Milton")
        assert (milton["asn"], milton["isp"]) == (209, "Century Link")
        assert (linkoping["country"], linkoping["city"]) == ("SE", "Linköping")
        assert (linkoping["asn"], linkoping["isp"]) == (29518, "Bredband2 AB")
        assert (telstra["asn"], telstra["isp"], telstra["city"]) == (1221, "Telstra Internet",
                                                                     None)
        assert norway["country"] == "NO"
        assert london["browser"] == "Chrome" and london["device_type"] == "desktop"
        health = await (await client.get("/healthz")).json()
        roles = {d["role"] for d in health["databases"]}
        assert roles == {"city", "asn", "isp", "anonymous_ip", "connection_type"}
        assert all(d["build_date"] == "2026-02-04" for d in health["databases"])
    finally:
        await client.close()


async def test_masked_mode_default(tmp_path: Path) -> None:
    client = await start(tmp_path, **ALL_DBS)
    now = datetime.now(UTC) - timedelta(minutes=5)
    try:
        await post(client, [combined("1.128.3.4", now), combined("81.2.69.142", now, path="/x")])
        by_path = {r["path"]: r for r in await records(client)}
        assert by_path["/"]["asn"] == 1221  # /11 network contains the truncated address
        assert by_path["/x"]["city"] is None  # London's /31 does not
        assert by_path["/x"]["is_tor"] is True  # the anonymizer /24 does
    finally:
        await client.close()


def _patched_city(src: Path, dst: Path) -> None:
    raw = src.read_bytes()
    for old, new in (("London", "LONDON"), ("Milton", "MILTON")):
        raw = raw.replace(old.encode(), new.encode())
    dst.write_bytes(raw)


async def test_city_db_replaced_while_10000_records_are_ingested(tmp_path: Path) -> None:
    a = tmp_path / "a.mmdb"
    b = tmp_path / "b.mmdb"
    live = tmp_path / "City.mmdb"
    shutil.copyfile(MMDB / "GeoIP2-City-Test.mmdb", a)
    _patched_city(a, b)
    shutil.copyfile(a, live)
    client = await start(tmp_path, **{"enrich.city_db": str(live), "enrich.geo_from": "full",
                                      "enrich.geo_cache_size": "0",
                                      "enrich.reload_interval": "0s"})
    geo = client.app[GEO]
    base = datetime.now(UTC) - timedelta(hours=2)
    ips = ["81.2.69.142", "216.160.83.56"]
    lines = [combined(ips[i % 2], base + timedelta(milliseconds=i), path=f"/{i}")
             for i in range(10_000)]
    stop = threading.Event()
    swaps: list[list[str]] = []

    def updater() -> None:
        n = 0
        while not stop.is_set():
            tmp = live.with_name("City.mmdb.tmp")
            shutil.copyfile(b if n % 2 == 0 else a, tmp)
            os.replace(tmp, live)  # what geoipupdate does
            swaps.append(geo.reload())
            n += 1
            stop.wait(0.001)

    thread = threading.Thread(target=updater)
    thread.start()
    try:
        body = await post(client, lines)
    finally:
        stop.set()
        thread.join(30)
    try:
        assert body["accepted"] == 10_000 and body["rejected"] == 0
        assert len(swaps) >= 2 and all(s == ["city"] for s in swaps)
        got = await records(client)
        assert len(got) == 10_000
        seen = set()
        for r in got:
            key = (r["country"], r["region"], r["city"])
            assert key in {("GB", "England", "London"), ("GB", "England", "LONDON"),
                           ("US", "Washington", "Milton"), ("US", "Washington", "MILTON")}, r
            seen.add(r["city"])
        # Both databases served records (the updater swaps every millisecond or so).
        assert {"London", "Milton"} & seen and {"LONDON", "MILTON"} & seen
    finally:
        await client.close()
