"""One contract, two backends: the same input gives the same answers on SQLite and on Redis.

The real sample log (plus DNT/GPC requests, which are counted and never kept) goes through
``POST /v1/logs`` into one collector on the embedded store and one on a real Redis Cluster
(three primaries, three replicas); both are swept and their aggregates maintained (rollup of
the old minutes into hours). Then every read — queries over records and over aggregates, every
aggregate breakdown, the dashboard's summary, the admin listing — must answer the same on both,
apart from the random public session ids.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from collector.appkeys import STORE
from tests.backends import Backend
from tests.conftest import log_fixture
from tests.querytools import ELASTIC, client_for
from tests.service import make_settings

DIMS = ("country", "asn", "isp", "network", "path_template", "method", "browser", "os",
        "device_type", "source")
QUERIES = (
    "| count",
    "status >= 400 | count by status",
    "| p95 bytes by method",
    "since 2015-05-18 until 2015-05-19 | count by path_template | sort count desc | limit 20",
    'status = 404 | sort time desc | limit 5',
    "| distinct browser, os",
    'ip ^= "83." or country in ("DE", "FR") | count by country, device_type',
    "since 2015-05-17T10:00:00Z until 2015-05-20T00:00:00Z | count by country",
    "since 2015-05-17 | count by browser",
)
VALUES = {"sessions.idle_timeout": "30m", "masking.consent": "aggregate",
          "detect.enabled": "false"}


def dnt_lines() -> bytes:
    """Requests that carry DNT: 1 / Sec-GPC: 1 in the log's own time span (NDJSON)."""
    out = []
    for i in range(40):
        out.append({"time": 1431932400 + 37 * i, "client": f"198.51.{i % 7}.9",
                    "method": "GET", "target": f"/private/{i % 3}", "status": 200,
                    "bytes": 10 + i, "user_agent": f"Agent/{i % 6}",
                    **({"dnt": True} if i % 2 else {"gpc": True})})
    return b"\n".join(orjson.dumps(r) for r in out)


@pytest.fixture(scope="module")
def redis_backend(redis_cluster: Any) -> Backend:
    return Backend("redis", redis_cluster)


@pytest.fixture
async def pair(tmp_path: Path, redis_backend: Backend
               ) -> AsyncIterator[tuple[TestClient[Any, Any], TestClient[Any, Any]]]:
    lite = await client_for(make_settings(tmp_path / "lite", **VALUES))
    red_dir = tmp_path / "red"
    red = await client_for(make_settings(red_dir, **redis_backend.values(red_dir), **VALUES))
    try:
        body = log_fixture(ELASTIC).read_bytes()
        for client in (lite, red):
            resp = await client.post("/v1/logs", data=body,
                                     headers={"Content-Type": "text/plain"})
            assert (await resp.json())["accepted"] == 9999
            resp = await client.post("/v1/logs", data=dnt_lines(),
                                     headers={"Content-Type": "application/x-ndjson"})
            assert (await resp.json())["accepted"] == 40
        # maintenance (rollup of minutes more than a day older than the newest) due on both now
        lite.server.app[STORE].aggregates._next_maintain = 0.0
        red.server.app[STORE].agg._next_maintain = 0.0
        for client in (lite, red):
            await client.server.app[STORE].sweep(time.time())
        yield lite, red
    finally:
        await lite.close()
        await red.close()


async def answer(client: TestClient[Any, Any], url: str, **params: str) -> Any:
    resp = await client.get(url, params=params)
    assert resp.status == 200, (url, params, await resp.text())
    return await resp.json()


async def both(pair: tuple[TestClient[Any, Any], TestClient[Any, Any]], url: str,
               **params: str) -> tuple[Any, Any]:
    return await answer(pair[0], url, **params), await answer(pair[1], url, **params)


async def test_same_answers_on_both_backends(
        pair: tuple[TestClient[Any, Any], TestClient[Any, Any]]) -> None:
    red = pair[1]

    def hours(conn: Any) -> int:
        return int(conn.execute("SELECT count(*) FROM agg WHERE res = 3600").fetchone()[0])

    rolled = [await c.server.app[STORE].read(hours) for c in pair]
    assert rolled[0] == rolled[1] > 0, "the old minutes were rolled up into hours on both"
    for q in QUERIES:
        a, b = await both(pair, "/v1/query", q=q, format="json")
        if a["columns"][-1:] == ["session"] or "session" in a["columns"]:
            for rows in (a["data"], b["data"]):
                for r in rows:
                    r.pop("session", None)
        # rows with equal sort keys may come in another order (the row ids differ)
        assert (a["source"], a["columns"], sorted(map(orjson.dumps, a["data"]))) == (
            b["source"], b["columns"], sorted(map(orjson.dumps, b["data"]))), q
        assert a["data"], f"{q}: an empty answer proves nothing"
    sources = set()
    for q in ("since 2015-05-17 until 2015-05-18 | count by country",
              "since 2015-05-17 until 2015-05-22 | count"):
        a, b = await both(pair, "/v1/query", q=q, format="json", source="aggregates")
        assert a == {**b, "elapsed_ms": a["elapsed_ms"]}, q
        sources.add(a["source"])
    assert sources == {"aggregates"}
    whole = await answer(red, "/v1/query", q="since 2015-05-17 until 2015-05-22 | count",
                         format="json", source="aggregates")
    assert whole["data"][0]["count"] == 9999 + 40, "DNT/GPC requests are counted on redis too"
    ranged = ("", "country", "network", "path_template")  # a range: only the hours it touches
    for by, rng in [*((by, {}) for by in ("", "site", *DIMS, "site,browser")),
                    *((by, {"start": "2015-05-18T00:00:00Z", "end": "2015-05-19T12:00:00Z"})
                      for by in ranged)]:
        a, b = await both(pair, "/v1/aggregates", by=by, **rng)
        assert a == b, (by, rng)
        assert a["rows"], (by, rng)
    a, b = await both(pair, "/dashboard/api/summary")
    assert a.pop("anomalies") == b.pop("anomalies") == []
    assert a == b
    a, b = await both(pair, "/v1/admin/sessions", limit="1000")

    def shape(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((r["site"], r["first"], r["last"], r["records"]) for r in rows)

    assert len(a["sessions"]) > 10 and shape(a["sessions"]) == shape(b["sessions"])
