"""The writer's counter gives the rows an independent oracle computes from the documented rules.

``tests/agg_reference.py`` recomputes the whole table by brute force from every record it was
given (written from docs/aggregates.md and docs/masking.md, not from the counter): both count
the same randomized traffic — several sites, IPv4 and IPv6, bots, anonymizer flags, request
times, 4xx scans, records without a session, rare and common paths, minutes passing, forgotten
sessions, a rebuild — and must hold the same rows.
"""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import pytest

from collector.aggregates.counter import Aggregator, partial_counts
from collector.aggregates.schema import COUNTERS, SCHEMA
from tests.agg_reference import Aggregator as Reference
from tests.agg_reference import mismatches

T0 = 1_700_000_000.0


def _conn() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for stmt in SCHEMA:
        conn.execute(stmt)
    conn.execute("CREATE TABLE records (sid INTEGER, time REAL, site TEXT, status INTEGER, "
                 "country TEXT, asn INTEGER, isp TEXT, ip TEXT, path_template TEXT, "
                 "method TEXT, browser TEXT, os TEXT, device_type TEXT, source TEXT)")
    return conn


def _traffic(rng: random.Random, n: int, t0: float, ended: int = 0
             ) -> tuple[list[dict[str, Any]], list[int | None]]:
    """``n`` records of 59 visitors; ``ended``: visitors 30..59 are new sessions (ids + ended),
    as after their first sessions were forgotten (the store never reuses a session id)."""
    recs: list[dict[str, Any]] = []
    sids: list[int | None] = []
    t = t0
    for _ in range(n):
        t += rng.expovariate(1 / 1.5)
        visitor = rng.randrange(1, 60)
        sid = visitor + ended if visitor >= 30 else visitor
        v6 = visitor % 7 == 0
        rec: dict[str, Any] = {
            "time": t if visitor % 11 else int(t),
            "site": ["a", "b", None][visitor % 3],  # a session never spans sites
            "status": rng.choice([200, 200, 200, 301, 401, 403, 404, 404, 500, 101, 0, None]),
            "ip": f"2001:db8:{visitor}::" if v6 else f"10.0.{visitor}.0",
            "country": rng.choice(["DE", "US", None, ""]),
            "asn": rng.choice([3320, 15169, None]),
            "isp": rng.choice(["x", None]),
            "path_template": rng.choice([f"/p{rng.randrange(40)}", "/", None]),
            "path": rng.choice([f"/probe/{rng.randrange(400)}", "/", None]),
            "method": rng.choice(["GET", "POST"]),
            "browser": rng.choice(["Chrome", "Firefox", None]),
            "os": "Linux", "device_type": rng.choice(["desktop", "mobile"]),
            "source": rng.choice(["local", "import"]),
            "bytes": rng.choice([0, 10, 12345, None, -1]),
            "is_bot": rng.random() < 0.2,
            "is_vpn": rng.random() < 0.1, "is_tor": rng.random() < 0.05,
            "is_anonymous_proxy": rng.random() < 0.05, "is_hosting": rng.random() < 0.1,
            "request_time": rng.choice([None, 0.003, 0.07, 0.3, 1.2, 42.0, rng.random()]),
        }
        if rng.random() < 0.01:
            rec["time"] = None  # not counted by either
        recs.append(rec)
        sids.append(None if rng.random() < 0.05 else sid)
    return recs, sids


def _rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT t, res, site, dim, value, {', '.join(COUNTERS)} FROM agg "
                        "ORDER BY t, site, dim, value").fetchall()


@pytest.mark.parametrize("split", [False, True], ids=["writer-only", "partial-in-workers"])
def test_faster_counter_matches_the_reference_row_for_row(split: bool) -> None:
    rng = random.Random(8)
    fast, ref = Aggregator(k=3, site_k={"b": 2}), Reference(k=3, site_k={"b": 2})
    c_fast, c_ref = _conn(), _conn()
    t0 = T0
    for round_ in range(6):
        recs, sids = _traffic(rng, 700, t0, ended=1000 if round_ > 2 else 0)
        t0 = max(r["time"] or 0 for r in recs)
        for lo in range(0, len(recs), 97):  # batches of odd sizes, one flush per round
            partial = partial_counts(recs[lo:lo + 97], 24, 48) if split else None
            fast.add(recs[lo:lo + 97], sids[lo:lo + 97], partial)
            ref.add(recs[lo:lo + 97], sids[lo:lo + 97])
        assert fast.flush(c_fast, T0) == ref.flush(c_ref, T0) > 0
        if round_ == 2:  # sessions ended: both forget them
            live = set(range(1, 30))
            fast.forget(live)
            ref.forget(live)
    rows = _rows(c_fast)
    bad = mismatches(rows, _rows(c_ref))
    assert bad == [], "\n".join(bad[:20])
    assert len(rows) > 1000
    by_col = dict(zip(("t", "res", "site", "dim", "value", *COUNTERS), zip(*rows, strict=True),
                      strict=True))
    for col in ("sessions_new", "sessions_active", "paths_4xx", "targets_4xx", "rt_sum",
                "anon_tor", "bytes"):
        assert sum(by_col[col]) > 0, col  # every kind of counter was exercised
    assert "other" in by_col["value"] and any("/48" in v for v in by_col["value"])


@pytest.mark.parametrize("split", [False, True], ids=["writer-only", "partial-in-workers"])
def test_rebuild_then_counting_matches_the_reference(split: bool) -> None:
    rng = random.Random(3)
    traffic = [(r, s) for r, s in zip(*_traffic(rng, 400, T0), strict=True)
               if r["time"] is not None and s is not None]  # live records: each has a session
    recs, sids = [r for r, _ in traffic], [s for _, s in traffic]
    fast, ref = Aggregator(k=3), Reference(k=3)
    c_fast, c_ref = _conn(), _conn()
    for conn in (c_fast, c_ref):
        conn.executemany(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(sid, r["time"], r["site"], r["status"], r["country"], r["asn"], r["isp"],
              r["ip"], r["path_template"], r["method"], r["browser"], r["os"],
              r["device_type"], r["source"]) for r, sid in zip(recs, sids, strict=True)])
    fast.add(recs, sids)
    ref.add(recs, sids)
    fast.flush(c_fast, T0)
    ref.flush(c_ref, T0)
    fast.rebuild(c_fast)  # e.g. after a restart: the same sessions must not count twice
    ref.rebuild(c_ref)
    more, more_sids = _traffic(random.Random(4), 300, max(r["time"] for r in recs) - 100)
    fast.add(more, more_sids, partial_counts(more, 24, 48) if split else None)
    ref.add(more, more_sids)
    fast.flush(c_fast, T0)
    ref.flush(c_ref, T0)
    bad = mismatches(_rows(c_fast), _rows(c_ref), restarted=True)
    assert bad == [], "\n".join(bad[:20])
