"""Aggregates: counted at ingest in the write transaction, k-anonymous, outliving sessions."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from collector.aggregates import AggregateQueryError, aggregate_counts, aggregate_series
from collector.aggregates.counter import Aggregator
from collector.aggregates.maintain import maintain
from collector.aggregates.schema import SCHEMA
from tests.aggtools import COUNTRY_NETS, db_rows, rec, ship, start, wait_for
from tests.service import all_files, files_containing

T0 = 1_700_000_000.0  # a minute boundary + 20 s


def traffic(t0: float) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """CN 8 sessions x 3, US 6 x 3, PH 3 x 2, BT 2 x 2 (the last two below k = 5)."""
    plan = {"CN": (8, 3), "US": (6, 3), "PH": (3, 2), "BT": (2, 2)}
    out, expected = [], {}
    for cc, (sessions, each) in plan.items():
        for s in range(sessions):
            for i in range(each):
                out.append(rec(f"{COUNTRY_NETS[cc]}.{10 + s}", t0 + s * 0.01 + i * 0.1,
                               path=f"/page-{cc.lower()}{chr(97 + s)}{chr(97 + i)}",
                               status=500 if cc == "US" and i == 0 else 200,
                               request_time=0.02 * (i + 1)))
        expected[cc] = sessions * each
    return out, expected


async def test_counts_outlive_sessions_and_stay_k_anonymous(tmp_path: Path) -> None:
    data = tmp_path / "data"
    now = time.time()
    client = await start(data, **{"sessions.idle_timeout": "2s",
                               "sessions.sweep_interval": "50ms"})
    try:
        records, expected = traffic(now - 30)
        await ship(client, records)
        live = await (await client.get("/v1/records?limit=1000")).text()
        session_ids = {line.split('"session":"')[1].split('"')[0]
                       for line in live.splitlines() if '"session":"' in line}
        assert len(session_ids) == 19

        async def all_ended() -> bool:
            return db_rows(data, "SELECT count(*) FROM records")[0][0] == 0
        await wait_for(all_ended)
        assert db_rows(data, "SELECT count(*) FROM sessions")[0][0] == 0

        resp = await client.get("/v1/aggregates?by=country")
        assert resp.status == 200
        body = await resp.json()
        rows = {r["country"]: r for r in body["rows"]}
        assert rows["CN"]["requests"] == expected["CN"] == 24
        assert rows["CN"]["sessions"] == 8
        assert rows["US"]["requests"] == 18 and rows["US"]["status_5xx"] == 6
        assert "PH" not in rows and "BT" not in rows, "groups below k must be folded"
        assert rows["other"]["requests"] == expected["PH"] + expected["BT"] == 10
        assert rows["other"]["sessions"] == 5
        assert all(r["sessions"] >= 5 for r in body["rows"])
        assert body["k"] == 5

        # Every path was used by one session only: none is ever written under its name (it
        # would outlive the session); they are all counted, at rest, as "other".
        paths = (await (await client.get("/v1/aggregates?by=path_template")).json())["rows"]
        assert [(p["path_template"], p["requests"]) for p in paths] == [("other", 52)]
        assert db_rows(data, "SELECT DISTINCT value FROM agg WHERE dim = 'path_template'") == [
            ("other",)]

        total = (await (await client.get("/v1/aggregates")).json())["rows"]
        assert total[0]["requests"] == 52 and total[0]["sessions"] == 19
        assert total[0]["request_time"]["count"] == 52

        # Nothing of a session or a record is kept: no session id, no address, no path.
        files = all_files(data)
        assert files_containing(files, session_ids) == {}
        full_ips = {r["client"] for r in records}
        assert files_containing(files, full_ips) == {}
        cols = [r[1] for r in db_rows(data, "PRAGMA table_info(agg)")]
        assert not {"sid", "session", "session_key", "ip", "key"} & set(cols)
        api_text = (await (await client.get("/v1/aggregates?by=network")).text())
        for sid in session_ids:
            assert sid not in api_text
        for ip in full_ips:
            assert ip not in api_text
    finally:
        await client.close()


async def test_aggregates_require_security_role_and_scope_sites(tmp_path: Path) -> None:
    from collector.auth import new_token
    sec, sec_hash = new_token()
    ship_tok, ship_hash = new_token()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[[tokens]]\nname = "sec"\nroles = ["security"]\nsha256 = "{sec_hash}"\n'
        f'sites = ["b"]\n'
        f'[[tokens]]\nname = "ship"\nroles = ["shipper"]\nsha256 = "{ship_hash}"\n'
        'operator = true\n[[sites]]\nname = "a"\nhosts = ["a.example"]\n'
        '[[sites]]\nname = "b"\nhosts = ["b.example"]\n')
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from collector.app import create_app
    from collector.settings import load_settings
    from tests.aggtools import CITY
    from tests.service import REPLAY
    settings = load_settings(cfg, env={}, overrides={"server.data_dir": str(tmp_path / "d"),
                                                     "enrich.city_db": CITY, **REPLAY})
    app: web.Application = create_app(settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        now = time.time() - 20
        recs = [rec(f"175.16.199.{i}", now, host="a.example") for i in range(10)]
        recs += [rec(f"149.101.100.{i}", now, host="b.example") for i in range(6)]
        await ship(client, recs, {"Authorization": f"Bearer {ship_tok}"})
        assert (await client.get("/v1/aggregates?by=country")).status == 401
        resp = await client.get("/v1/aggregates?by=country",
                                headers={"Authorization": f"Bearer {ship_tok}"})
        assert resp.status == 403
        resp = await client.get("/v1/aggregates?by=site,country",
                                headers={"Authorization": f"Bearer {sec}"})
        assert resp.status == 200
        rows = (await resp.json())["rows"]
        assert [(r["site"], r["country"], r["requests"]) for r in rows] == [("b", "US", 6)]
        bad = await client.get("/v1/aggregates?by=country,asn",
                               headers={"Authorization": f"Bearer {sec}"})
        assert bad.status == 400 and "single dimension" in (await bad.json())["error"]
        bad = await client.get("/v1/aggregates?by=country&start=yesterday",
                               headers={"Authorization": f"Bearer {sec}"})
        assert bad.status == 400 and "start" in (await bad.json())["error"]
    finally:
        await client.close()


def _conn() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE records (rid INTEGER PRIMARY KEY, sid INTEGER, time REAL, "
                 "site TEXT, status INTEGER, ip TEXT, country TEXT, asn INTEGER, isp TEXT, "
                 "path_template TEXT, method TEXT, browser TEXT, os TEXT, device_type TEXT, "
                 "source TEXT)")
    for stmt in SCHEMA:
        conn.execute(stmt)
    return conn


def stored(**kw: Any) -> dict[str, Any]:
    base = {"time": T0, "site": "s", "status": 200, "ip": "10.0.0.0", "country": "DE",
            "asn": 3320, "path_template": "/", "method": "GET", "source": "local", "bytes": 10}
    return {**base, **kw}


def test_distinct_sessions_over_ranges_are_lower_bounds() -> None:
    conn, agg = _conn(), Aggregator()
    # 6 sessions active in three consecutive minutes each (one request a minute).
    for m in range(3):
        agg.add([stored(time=T0 + 60 * m) for _ in range(6)], list(range(1, 7)))
    agg.flush(conn, T0)
    rows = aggregate_counts(conn, ["country"], None, None, None, 5)
    assert rows[0]["requests"] == 18 and rows[0]["sessions"] == 6  # not 18
    # The last minute alone: sessions began earlier, but 6 were active in that minute.
    last = aggregate_counts(conn, ["country"], T0 - 20 + 120, None, None, 5)
    assert last[0]["sessions"] == 6
    assert aggregate_counts(conn, ["country"], None, None, None, 7) == []
    series = aggregate_series(conn, T0 - 20, T0 + 200, 60, None, 5)
    assert [s["requests"] for s in series] == [6, 6, 6]
    with pytest.raises(AggregateQueryError, match="unknown dimension"):
        aggregate_counts(conn, ["ip"], None, None, None, 5)


def test_rollup_to_hours_then_deletion() -> None:
    conn, agg = _conn(), Aggregator()
    day = 86400.0
    old = T0 - 3 * day
    agg.add([stored(time=old + 60 * i) for i in range(10)], [1] * 10)
    agg.add([stored(time=T0)], [2])
    agg.flush(conn, T0)
    conn.execute("BEGIN")
    res = maintain(conn, T0, minute_retention=day, retention=30 * day)
    conn.execute("COMMIT")
    assert res.rolled_up > 0
    hours = conn.execute("SELECT t, requests FROM agg WHERE res = 3600 AND dim = ''").fetchall()
    assert sum(r[1] for r in hours) == 10
    assert all(t % 3600 == 0 for t, _ in hours)
    assert conn.execute("SELECT count(*) FROM agg WHERE res = 60 AND t < ?",
                        (T0 - day,)).fetchone()[0] == 0
    total = aggregate_counts(conn, [], None, None, None, 1)
    assert total[0]["requests"] == 11 and total[0]["sessions"] == 2
    conn.execute("BEGIN")
    maintain(conn, T0, minute_retention=day, retention=2 * day)
    conn.execute("COMMIT")
    assert aggregate_counts(conn, [], None, None, None, 1)[0]["requests"] == 1
    # Wall-clock retention: rows last written long ago go even if the log clock is old.
    conn.execute("BEGIN")
    maintain(conn, T0 + 40 * day, minute_retention=day, retention=30 * day)
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM agg").fetchone()[0] == 0


def test_a_path_is_named_only_once_k_sessions_used_it() -> None:
    conn, agg = _conn(), Aggregator(k=3)
    agg.add([stored(path_template="/secret-reset-link")], [1])
    agg.add([stored(path_template="/pricing") for _ in range(6)], [1, 2, 3, 4, 5, 6])
    agg.flush(conn, T0)
    stored_paths = {v for (v,) in conn.execute(
        "SELECT value FROM agg WHERE dim = 'path_template'")}
    assert stored_paths == {"other", "/pricing"}
    rows = aggregate_counts(conn, ["path_template"], None, None, None, 3)
    # the first two /pricing requests were counted before the path was known to be common;
    # "other" (the secret link and those two) holds 2 sessions < k: not shown at all
    assert [(r["path_template"], r["requests"], r["sessions"]) for r in rows] == [
        ("/pricing", 4, 4)]
    # after a restart the writer knows /pricing is safe from the table itself
    agg2 = Aggregator(k=3)
    agg2.rebuild(conn)
    assert ("s", "/pricing") in agg2.safe_paths


def test_a_site_shipped_behind_another_keeps_its_active_sessions_and_4xx_paths() -> None:
    """Each site has its own recent window: site b, shipped 10 minutes behind site a, still gets
    the per-minute distinct sessions and distinct 4xx paths that scan detection reads."""
    conn, agg = _conn(), Aggregator(k=1)
    agg.add([stored(site="a", time=T0 + 60 * m) for m in range(12)], [1] * 12)
    scan = [stored(site="b", time=T0 + 60, status=404, ip="198.51.100.0",
                   path_template=f"/probe{i}") for i in range(20)]
    agg.add(scan, [2] * 20)
    agg.flush(conn, T0)
    row = conn.execute(
        "SELECT paths_4xx, sessions_active, requests FROM agg WHERE site = 'b' AND dim = 'network'"
    ).fetchone()
    assert row == (20, 1, 20)
