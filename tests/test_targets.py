"""Distinct 4xx targets per network and ASN at ingest (collector/aggregates/targets.py)."""

from __future__ import annotations

import sqlite3

from collector.aggregates.counter import Aggregator
from collector.aggregates.schema import SCHEMA, migrate
from collector.aggregates.targets import TargetCounter

T = 1_780_272_000


def test_counts_distinct_4xx_targets_per_network_and_asn_only() -> None:
    tc = TargetCounter()
    rows = [(T, "a", "198.51.100.0/24", "64500", f"/wp-admin/{i % 300}", 404) for i in range(900)]
    rows += [(T, "a", "198.51.100.0/24", "64500", "/ok", 200)] * 50  # not a 4xx
    rows += [(T, "a", "10.0.0.0/24", "", "/x", 403), (T, "b", "10.0.0.0/24", "", "/x", 403)]
    tc.add_rows(rows)
    got = tc.drain()
    assert 0.85 * 300 <= got[(T, "a", "network", "198.51.100.0/24")] <= 1.15 * 300
    assert got[(T, "a", "asn", "64500")] == got[(T, "a", "network", "198.51.100.0/24")]
    assert got[(T, "a", "network", "10.0.0.0/24")] == got[(T, "b", "network", "10.0.0.0/24")] == 1
    assert (T, "a", "asn", "") not in got  # unknown values are not counted
    # increments: a second batch adds only what is new
    tc.add_rows([(T, "a", "10.0.0.0/24", "", "/x", 404), (T, "a", "10.0.0.0/24", "", "/y", 404)])
    assert tc.drain() == {(T, "a", "network", "10.0.0.0/24"): 1}
    # never more targets than 4xx requests (the sketch's error is capped)
    tc.add_rows([(T + 60, "a", "1.2.3.0/24", "", f"/p{i}", 404) for i in range(60)])
    assert tc.drain()[(T + 60, "a", "network", "1.2.3.0/24")] <= 60
    # a site's minutes older than its window are forgotten
    tc.add_rows([(T + 600, "a", "1.2.3.0/24", "", "/late", 404)])
    tc.drain()
    assert all(k[0] >= T + 600 - 180 for k in tc.sketches if k[1] == "a")


def test_the_writer_stores_targets_and_an_old_table_is_migrated() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE agg (t INTEGER NOT NULL, res INTEGER NOT NULL, site TEXT NOT NULL,"
                 " dim TEXT NOT NULL, value TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0,"
                 " updated REAL NOT NULL, PRIMARY KEY (dim, t, res, site, value)) WITHOUT ROWID")
    migrate(conn)
    for stmt in SCHEMA:
        conn.execute(stmt)
    agg = Aggregator()
    recs = [{"time": T + i * 0.1, "site": "s", "ip": "198.51.100.0", "asn": 64500,
             "path": f"/.env/{i}", "path_template": "/.env/:id", "status": 404}
            for i in range(480)]
    agg.add(recs, [None] * len(recs))
    agg.flush(conn, 0.0)
    (n, p), = conn.execute("SELECT targets_4xx, paths_4xx FROM agg WHERE dim = 'network'")
    assert 0.85 * 480 <= n <= 480 and p == 1
    row = conn.execute("SELECT * FROM agg WHERE dim = 'network'").fetchone()
    assert "/.env" not in repr(row) and "198.51.100.0/24" in row  # no path is stored
