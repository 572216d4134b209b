"""Helpers for the aggregates/detector/dashboard tests: start the app, ship records, read the DB."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from tests.service import make_settings

MMDB = Path(__file__).resolve().parent / "data" / "mmdb"
CITY = str(MMDB / "GeoIP2-City-Test.mmdb")
# Networks of the GeoIP2 City test database that resolve when looked up masked (/24).
COUNTRY_NETS = {"CN": "175.16.199", "US": "149.101.100", "BT": "67.43.156",
                "PH": "202.196.224", "GB": "2.2.3"}
UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
      "Safari/537.36")


async def start(data_dir: Path, **values: Any) -> TestClient[Any, Any]:
    settings = make_settings(data_dir, **{"enrich.city_db": CITY, **values})
    app: web.Application = create_app(settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


def rec(ip: str, t: float, path: str = "/", status: int = 200, ua: str = UA,
        **more: Any) -> dict[str, Any]:
    return {"client": ip, "time": t, "method": more.pop("method", "GET"), "target": path,
            "status": status, "bytes": more.pop("bytes", 100), "user_agent": ua, **more}


async def ship(client: TestClient[Any, Any], records: Iterable[dict[str, Any]],
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = b"\n".join(orjson.dumps(r) for r in records)
    resp = await client.post("/v1/logs", data=body, headers={
        "Content-Type": "application/x-ndjson", **(headers or {})})
    assert resp.status == 200, await resp.text()
    out: dict[str, Any] = await resp.json()
    assert out["rejected"] == 0, out
    return out


def db_rows(data_dir: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{data_dir / 'lethelog.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def wait_for(predicate: Any, timeout: float = 10.0, step: float = 0.05) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)
