"""Data-subject requests: export a session's records, erase them now; both audited."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.querytools import auth, client_for, query, settings_with_tokens
from tests.service import all_files, files_containing

pytestmark = pytest.mark.usefixtures("backend")  # on SQLite and on a Redis Cluster

HINT = "cookie-3f1c9a-subject"  # the session cookie value that identifies our subject
MARKER = "erasemarker7781"


def batch(now: float) -> bytes:
    recs = []
    for i in range(12):  # the subject: one cookie, two addresses (a phone moving networks)
        recs.append({"time": now - 600 + i, "client": f"85.181.{35 + i % 2}.98",
                     "method": "GET", "target": f"/account/orders?ref={MARKER}{i}",
                     "status": 200, "bytes": 100 + i, "user_agent": "Mozilla/5.0 (subject)",
                     "session_hint": HINT})
    for i in range(30):  # everyone else
        recs.append({"time": now - 500 + i, "client": f"10.{i}.0.7", "method": "GET",
                     "target": f"/shop/item/{i}", "status": 200, "bytes": 50,
                     "user_agent": f"Agent/{i}"})
    return b"\n".join(orjson.dumps(r) for r in recs)


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str], Path]]:
    data = tmp_path / "data"
    settings, tokens = settings_with_tokens(data, {
        "ship": (["shipper"], None), "sre": (["sre"], None), "dpo": (["admin"], None),
        "shop-admin": (["admin"], ["shop"]),
    }, **{"sessions.idle_timeout": "1h"})
    client = await client_for(settings)
    resp = await client.post("/v1/logs", data=batch(time.time()),
                             headers={"Content-Type": "application/x-ndjson",
                                      **auth(tokens["ship"])})
    assert resp.status == 200 and (await resp.json())["accepted"] == 42
    try:
        yield client, tokens, data
    finally:
        await client.close()


async def post(client: TestClient[Any, Any], path: str, body: Any, token: str
               ) -> tuple[int, Any]:
    resp = await client.post(path, data=orjson.dumps(body) if not isinstance(body, bytes)
                             else body, headers=auth(token))
    raw = await resp.read()
    return resp.status, orjson.loads(raw) if raw.startswith(b"{") else raw.decode()


async def subject_sessions(client: TestClient[Any, Any], token: str) -> list[str]:
    _, body, _ = await query(client, f'query ~ "*{MARKER}*" | distinct session', token)
    return [r["session"] for r in body["data"]]


async def test_export_by_hint_and_by_session_id(svc: Any) -> None:
    client, tokens, data = svc
    (sid,) = await subject_sessions(client, tokens["sre"])
    status, by_hint = await post(client, "/v1/admin/export", {"hint": HINT}, tokens["dpo"])
    assert status == 200 and by_hint["by"] == "hint"
    (session,) = by_hint["sessions"]
    assert session["id"] == sid and session["site"] == "default"
    recs = session["records"]
    assert len(recs) == 12 == by_hint["records"]
    assert [r["bytes"] for r in recs] == list(range(100, 112)), "every record, oldest first"
    assert {r["ip"] for r in recs} == {"85.181.35.0", "85.181.36.0"}, "stored form (masked)"
    assert all(r["session"] == sid and "session_key" not in r for r in recs)
    # the same records as the query API shows for that session
    _, shown, _ = await query(client, f'session = "{sid}" | sort time', tokens["sre"])
    assert shown["data"] == recs
    status, by_id = await post(client, "/v1/admin/export", {"session": sid}, tokens["dpo"])
    assert status == 200 and by_id["sessions"] == by_hint["sessions"]
    # unknown subjects: a clear "nothing held", not an error
    status, none = await post(client, "/v1/admin/export", {"hint": "never-seen"}, tokens["dpo"])
    assert status == 200 and none["sessions"] == [] and "nothing" in none["note"]
    entries = [orjson.loads(x) for x in (data / "audit.log").read_bytes().splitlines()]
    exports = [e for e in entries if e["endpoint"] == "/v1/admin/export"]
    assert [(e["token"], e["role"], e["rows"]) for e in exports] == [
        ("dpo", "admin", 12), ("dpo", "admin", 12), ("dpo", "admin", 0)]
    assert exports[0]["query"] == f"hint=[not recorded] -> sessions={sid}"
    assert exports[1]["query"] == f"session={sid}"
    assert HINT.encode() not in (data / "audit.log").read_bytes(), "the hint is never kept"


async def test_erase_by_hint_now(svc: Any) -> None:
    client, tokens, data = svc
    (sid,) = await subject_sessions(client, tokens["sre"])
    status, body = await post(client, "/v1/admin/erase", {"hint": HINT}, tokens["dpo"])
    assert status == 200
    assert body == {"by": "hint", "sessions": [sid], "sessions_ended": 1, "records_deleted": 12}
    _, left, _ = await query(client, "| count", tokens["sre"])
    assert left["data"] == [{"count": 30}], "everyone else is kept"
    assert await subject_sessions(client, tokens["sre"]) == []
    status, again = await post(client, "/v1/admin/export", {"session": sid}, tokens["dpo"])
    assert again["sessions"] == []
    # gone from every file of the data directory, not just unlinked
    audit_log = data / "audit.log"
    hits = files_containing([f for f in all_files(data) if f != audit_log], [MARKER, HINT])
    assert hits == {}, hits
    for line in audit_log.read_bytes().splitlines():  # only where an SRE typed it
        if MARKER.encode() in line:
            assert MARKER in orjson.loads(line)["query"]
    entries = [orjson.loads(x) for x in (data / "audit.log").read_bytes().splitlines()]
    (erase,) = [e for e in entries if e["endpoint"] == "/v1/admin/erase"]
    assert (erase["token"], erase["outcome"], erase["rows"]) == ("dpo", "erased", 12)
    assert sid in erase["query"]


async def test_erase_by_session_id_and_site_scope(svc: Any) -> None:
    client, tokens, _ = svc
    _, body, _ = await query(client, '| count by session | sort count desc | limit 2',
                             tokens["sre"])
    other = body["data"][1]["session"]
    # an admin limited to another site finds nothing to erase there
    status, scoped = await post(client, "/v1/admin/erase", {"session": other},
                                tokens["shop-admin"])
    assert status == 200 and scoped["sessions"] == [] and scoped["records_deleted"] == 0
    status, scoped = await post(client, "/v1/admin/export", {"hint": HINT, "site": "default"},
                                tokens["shop-admin"])
    assert status == 403
    status, done = await post(client, "/v1/admin/erase", {"session": other}, tokens["dpo"])
    assert done["sessions"] == [other] and done["records_deleted"] == 1
    _, left, _ = await query(client, f'session = "{other}" | count', tokens["sre"])
    assert left["data"] == [{"count": 0}]


@pytest.mark.parametrize("body", [b"not json", b"[1]", b"{}", b'{"session": "a", "hint": "b"}',
                                  b'{"session": 5}', b'{"hint": ""}'])
async def test_bad_requests_say_why(svc: Any, body: bytes) -> None:
    client, tokens, _ = svc
    for path in ("/v1/admin/export", "/v1/admin/erase"):
        status, answer = await post(client, path, body, tokens["dpo"])
        assert status == 400 and ("body" in answer or "session" in answer or "hint" in answer)
    _, left, _ = await query(client, "| count", tokens["sre"])
    assert left["data"] == [{"count": 42}]


async def test_session_listing(svc: Any) -> None:
    client, tokens, _ = svc
    resp = await client.get("/v1/admin/sessions?limit=100", headers=auth(tokens["dpo"]))
    body = await resp.json()
    assert len(body["sessions"]) == 31
    assert sum(s["records"] for s in body["sessions"]) == 42
    assert all(set(s) == {"id", "site", "source", "first", "last", "records"}
               for s in body["sessions"])
    resp = await client.get("/v1/admin/sessions", headers=auth(tokens["shop-admin"]))
    assert (await resp.json())["sessions"] == []
    resp = await client.get("/v1/admin/sessions?limit=0", headers=auth(tokens["dpo"]))
    assert resp.status == 400
