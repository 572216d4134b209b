"""The aggregate table: per-minute (and, once rolled up, per-hour) counters by one dimension.

One row per ``(t, res, site, dim, value)``: bucket start ``t`` (epoch seconds, log time), its
resolution ``res`` (60 or 3600 s), the site, the dimension name (``""`` for the site's total)
and the dimension's value (``""`` when unknown). Rows hold counts only: no session id, no
record, no raw address (the ``network`` dimension is the already-masked address plus its prefix
length).
"""

from __future__ import annotations

import sqlite3

# Breakdown dimensions: name -> record field it is read from ("network" is derived from "ip").
DIMS: dict[str, str] = {
    "country": "country",
    "asn": "asn",
    "isp": "isp",
    "network": "ip",
    "path_template": "path_template",
    "method": "method",
    "browser": "browser",
    "os": "os",
    "device_type": "device_type",
    "source": "source",
}
# A session has one value of these for its whole life (same address, same User-Agent, same
# shipper): their groups partition sessions, so session counts of folded groups may be summed.
PARTITIONING = frozenset(
    {"country", "asn", "isp", "network", "browser", "os", "device_type", "source", "site"}
)
# Dimensions whose per-minute rows also count distinct 4xx path templates (scan detection).
PATH_DIMS = frozenset({"network", "asn"})

# ``targets_4xx``: distinct 4xx request paths (HyperLogLog estimate, aggregates/targets.py)
# of these dimensions' rows; ``paths_4xx``: distinct 4xx path templates.

# Request-time histogram upper edges in seconds (the last bucket is everything above).
RT_EDGES: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RT_COLS: tuple[str, ...] = tuple(f"rt_{i}" for i in range(len(RT_EDGES) + 1))

# Counter columns in a fixed order; every one is summed when minutes merge into hours, except
# sessions_active (the most distinct sessions seen in one minute), which takes the maximum.
COUNTERS: tuple[str, ...] = (
    "requests", "bytes", "s1xx", "s2xx", "s3xx", "s4xx", "s5xx", "s401", "s403", "s404",
    "bots", "sessions_new", "sessions_active", "paths_4xx", "targets_4xx",
    "anon_vpn", "anon_tor", "anon_proxy", "anon_hosting",
    "rt_count", "rt_sum", *RT_COLS,
)
MAX_COUNTERS = frozenset({"sessions_active"})
IDX = {c: i for i, c in enumerate(COUNTERS)}

SCHEMA: list[str] = [
    "CREATE TABLE IF NOT EXISTS agg (t INTEGER NOT NULL, res INTEGER NOT NULL, "
    "site TEXT NOT NULL, dim TEXT NOT NULL, value TEXT NOT NULL, "
    + ", ".join(f"{c} {'REAL' if c == 'rt_sum' else 'INTEGER'} NOT NULL DEFAULT 0"
                for c in COUNTERS)
    + ", updated REAL NOT NULL, PRIMARY KEY (dim, t, res, site, value)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS agg_t ON agg(t)",
]

_cols = ", ".join(COUNTERS)
# Writer's upsert of one minute: within a minute every counter is additive (sessions_active
# counts each session once per minute because the writer remembers who it already counted).
UPSERT = (
    f"INSERT INTO agg (t, res, site, dim, value, {_cols}, updated) "
    f"VALUES ({', '.join('?' * (len(COUNTERS) + 6))}) "
    "ON CONFLICT(dim, t, res, site, value) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTERS)
    + ", updated = excluded.updated"
)


def migrate(conn: sqlite3.Connection) -> None:
    """Add the counter columns a table made by an older version lacks (they start at 0)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(agg)")}
    for c in COUNTERS:
        if have and c not in have:
            conn.execute(f"ALTER TABLE agg ADD COLUMN {c} INTEGER NOT NULL DEFAULT 0")
