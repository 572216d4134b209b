"""No query reads outside the record store, runs past the time limit, or crosses its sites."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from collector.query import QueryTimeout, compile_query, execute, parse
from collector.query.compiler import Compiled
from collector.store.sqlite import connect
from tests.querytools import (
    LONG_IDLE,
    assert_all_audited,
    auth,
    build_elastic_store,
    client_for,
    copy_store,
    query,
    settings_with_tokens,
)

HOSTILE = [
    "' OR '1'='1",
    "x\" OR \"1\"=\"1",
    "'; DROP TABLE records; --",
    "\"; DROP TABLE records; --",
    "x') UNION SELECT key, key FROM sessions --",
    ") OR 1=1 UNION SELECT sql FROM sqlite_master --",
    "*/ SELECT * FROM sqlite_master /*",
    "%' ESCAPE '\\",
    "\\\" OR 1=1 --",
    "records r JOIN sessions s ON 1",
    "0x41; ATTACH DATABASE '/tmp/evil.db' AS evil; --",
    "\u0000\u2028\U0001f600",
    "A" * 1500,
]


def q_string(text: str) -> str:
    """A query string literal holding ``text`` exactly."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("sec") / "data"
    assert build_elastic_store(data)["accepted"] == 9999
    return data


@pytest.fixture
async def svc(store: Path, tmp_path: Path
              ) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str], Path]]:
    data = copy_store(store, tmp_path / "data")
    settings, tokens = settings_with_tokens(data, {
        "sre": (["sre"], None), "shop-sre": (["sre"], ["shop"]),
        "default-sre": (["sre"], ["default"]), "admin": (["admin"], None),
    }, **LONG_IDLE)
    client = await client_for(settings)
    try:
        yield client, tokens, data
    finally:
        await client.close()
    assert assert_all_audited(client, data) > 0, "every query of the test is in the audit log"


def fingerprint(data: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect(data / "lethelog.db")
    try:
        tables = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        counts = conn.execute("SELECT (SELECT count(*) FROM records), "
                              "(SELECT count(*) FROM sessions)").fetchone()
        keys = [k for (k,) in conn.execute("SELECT key FROM sessions")]
    finally:
        conn.close()
    return tuple(tables), counts, keys


async def test_hostile_strings_in_every_operand(svc: Any) -> None:
    client, tokens, data = svc
    before = fingerprint(data)
    conn = sqlite3.connect(data / "lethelog.db")
    paths = [p for (p,) in conn.execute("SELECT path FROM records") if p is not None]
    conn.close()
    secrets = [k.encode() for k in before[2]]
    forbidden = [b"CREATE TABLE", *secrets]  # schema text or any pseudonymous key
    templates = [
        "path = {s} | count", "path != {s} | count", "path < {s} | count",
        "path >= {s} | count", "path ~ {s} | count", "path ^= {s} | count",
        "path in ({s}, {s}) | count", "path not in ({s}) | count", "session = {s} | count",
        "country = {s} or browser = {s} | count by status",
        "since {s} | count", "until {s} | count", "status = {s} | count",
        "path ~ r{s} | count",
    ]
    answered = rejected = 0
    for hostile in HOSTILE:
        for template in templates:
            text = template.format(s=q_string(hostile))
            status, body, _ = await query(client, text, tokens["sre"])
            raw = orjson.dumps(body)
            assert not any(f in raw for f in forbidden), text
            if status == 200:
                answered += 1
                total = 9999 if "!=" in template or "not in" in template else 0
                if template.startswith("path <"):
                    total = sum(p < hostile for p in paths)
                elif template.startswith("path >="):
                    total = sum(p >= hostile for p in paths)
                # a grouped count of nothing has no rows; a plain count answers its zero
                want = [] if "count by" in template else [{"count": total}]
                assert body["data"] == want, (text, body["data"])
            else:
                rejected += 1
                assert status == 400, (text, status, body)
                assert 0 <= body["position"] <= len(text) and body["expected"], body
    assert answered > 100 and rejected > 10
    # hostile text where names and numbers go: field, stage column, sort, limit, time word
    for text in ["key = \"x\"", "sessions.key = \"x\"", "rid > 0", "sid = 1",
                 "status = 1; DROP TABLE records", "| count by key", "| count by sessions.key",
                 "| count by status | sort count; DROP TABLE records",
                 "| limit 1; SELECT key FROM sessions", "| distinct \"key\"",
                 "| p95 (SELECT 1)", "last 1h; DROP TABLE records", "status = 1 -- comment",
                 "status = 1 /* x */", "`records`", "status = 1 UNION SELECT 1"]:
        status, body, _ = await query(client, text, tokens["sre"])
        assert status == 400, (text, body)
        assert not any(f in orjson.dumps(body) for f in forbidden)
    for params in ({"format": "csv; DROP"}, {"source": "sessions"}):
        resp = await client.get("/v1/query", params={"q": "| count", **params},
                                headers=auth(tokens["sre"]))
        assert resp.status == 400
    assert fingerprint(data) == before, "nothing was changed"


def test_the_authorizer_refuses_whatever_the_compiler_might_emit(store: Path) -> None:
    """Even a statement that is not the compiler's cannot read the key or other tables."""
    conn = connect(store / "lethelog.db", readonly=True)
    try:
        for sql in ["SELECT key FROM sessions", "SELECT sql FROM sqlite_master",
                    "SELECT * FROM clocks", "SELECT r.path, s.key FROM records r "
                    "JOIN sessions s ON s.sid = r.sid", "SELECT load_extension('x')",
                    "SELECT readfile('/etc/passwd')", "PRAGMA table_info(sessions)"]:
            refused = r"not authorized|prohibited|no such function"
            with pytest.raises(sqlite3.DatabaseError, match=refused):
                execute(conn, Compiled(sql, [], ["x"], {}, 10), timeout=5)
        ok = execute(conn, compile_query(parse("| count"), sites=None, now=0, max_rows=5), 5)
        assert ok.rows == [{"count": 9999}]
        # the fence is lifted after each query: the store's own reads still work
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] > 0
    finally:
        conn.close()


HEAVY = ('path ~ /(a|b|c).*(d|e|f).*(g|h|i)$/ or referrer ~ /(x|y|z).*[0-9]{3}/ or '
         'query ~ /=.*&.*=/ or browser ~ /.*o.*o.*/ or os ~ /.*n.*x/ '
         '| count by path, referrer, ip, browser, os, query | sort count, path')


async def test_time_limit_stops_long_queries(store: Path, tmp_path: Path) -> None:
    conn = connect(store / "lethelog.db", readonly=True)
    try:
        compiled = compile_query(parse(HEAVY), sites=None, now=0, max_rows=100_000)
        full = execute(conn, compiled, timeout=60)
        assert full.elapsed > 0.08, f"the heavy query really is heavy ({full.elapsed:.3f} s)"
        with pytest.raises(QueryTimeout, match=r"query.timeout"):
            execute(conn, compiled, timeout=0.002)
    finally:
        conn.close()
    data = copy_store(store, tmp_path / "data")
    conn = sqlite3.connect(data / "lethelog.db")
    start = datetime(2015, 5, 19, 10, 5, tzinfo=UTC).timestamp()
    (in_window,) = conn.execute("SELECT count(*) FROM records WHERE time >= ? AND time < ?",
                                (start, start + 30)).fetchone()
    conn.close()
    # a limit well under the heavy query's own time, yet roomy for a cheap indexed one even on
    # a loaded machine
    limit_ms = int(max(20.0, full.elapsed * 1000 / 4))
    settings, tokens = settings_with_tokens(data, {"sre": (["sre"], None)}, **LONG_IDLE,
                                            **{"query.timeout": f"{limit_ms}ms"})
    client = await client_for(settings)
    try:
        status, body, _ = await query(client, HEAVY, tokens["sre"])
        assert status == 503
        assert "query.timeout" in body["error"]
        assert body["timeout_seconds"] == pytest.approx(limit_ms / 1000)
        cheap = "since 2015-05-19T10:05:00Z until 2015-05-19T10:05:30Z | count"  # time index
        status, body, _ = await query(client, cheap, tokens["sre"])
        assert status == 200, "cheap queries still run"
        assert body["data"] == [{"count": in_window}] and in_window > 0
    finally:
        await client.close()
    entries = [orjson.loads(x) for x in (data / "audit.log").read_bytes().splitlines()]
    assert [e["outcome"] for e in entries] == ["timeout", "ok"]


async def test_site_scope(svc: Any) -> None:
    client, tokens, _ = svc
    for name, want in (("sre", 9999), ("default-sre", 9999), ("shop-sre", 0)):
        status, body, _ = await query(client, "| count", tokens[name])
        assert status == 200 and body["data"] == [{"count": want}], name
        status, body, _ = await query(client, "| count by site", tokens[name])
        assert body["data"] == ([{"site": "default", "count": 9999}] if want else [])
        resp = await client.get("/v1/records?limit=20000", headers=auth(tokens[name]))
        assert len((await resp.read()).splitlines()) == want, name
