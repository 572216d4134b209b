"""Where anomalies are kept: ``anomalies.db`` in the data directory, one writer (the runner).

Separate from the store's database so the detector never competes with ingest for SQLite's
write lock. Rows hold the anomaly's public JSON; no record and no session id ever goes in.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from collector.detect.model import Anomaly

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS anomalies (id TEXT PRIMARY KEY, site TEXT NOT NULL, "
    "kind TEXT NOT NULL, start REAL NOT NULL, end REAL, updated REAL NOT NULL, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS anomalies_start ON anomalies(start)",
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value REAL NOT NULL)",
]
CURSOR = "cursor:"  # state key prefix of a site's cursor ("cursor:*": the all-sites view)


class AnomalyBook:
    """Synchronous; the runner calls it from its single worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA secure_delete=ON")
        for stmt in SCHEMA:
            conn.execute(stmt)
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _c(self) -> sqlite3.Connection:
        assert self.conn is not None, "anomaly book not open"
        return self.conn

    def save(self, anomalies: list[Anomaly], wall: float,
             cursors: dict[str, int] | None) -> None:
        """Anomalies opened, grown or closed, and (in the same transaction) the next minute to
        evaluate of each site and of the all-sites view."""
        c = self._c()
        c.execute("BEGIN")
        c.executemany(
            "INSERT INTO anomalies (id, site, kind, start, end, updated, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET end=excluded.end, "
            "updated=excluded.updated, body=excluded.body",
            [(a.id, a.site, a.kind, a.start, a.end, wall, orjson.dumps(a.public()).decode())
             for a in anomalies])
        if cursors:
            c.executemany("INSERT INTO state (key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                          [(CURSOR + site, t) for site, t in cursors.items()])
            c.execute("DELETE FROM state WHERE key = 'cursor'")  # an older book's single cursor
        c.execute("COMMIT")

    def cursors(self) -> tuple[dict[str, int], int | None]:
        """(next minute per site and ``"*"``, the single cursor of an older book or None)."""
        out: dict[str, int] = {}
        legacy: int | None = None
        for key, value in self._c().execute("SELECT key, value FROM state WHERE key LIKE "
                                            "'cursor%'"):
            if key == "cursor":
                legacy = int(value)
            elif key.startswith(CURSOR):
                out[key[len(CURSOR):]] = int(value)
        return out, legacy

    def open_anomalies(self) -> list[Anomaly]:
        out = []
        for (body,) in self._c().execute("SELECT body FROM anomalies WHERE end IS NULL"):
            d = orjson.loads(body)
            a = Anomaly(d["kind"], d["site"], d["dimensions"], d["start_epoch"], d["evidence"],
                        d["severity"], d["start_epoch"] + 60, id=d["id"])
            a.minutes, a.peak = d["minutes"], d.get("peak") or {}
            a.last_seen = d["start_epoch"] + 60 * (d["minutes"] - 1)
            out.append(a)
        return out

    def list(self, sites: frozenset[str] | None, start: float | None, end: float | None,
             status: str, limit: int) -> list[dict[str, Any]]:
        where: list[str] = ["1"]
        args: list[Any] = []
        if sites is not None:
            where.append(f"site IN ({', '.join('?' * len(sites))})" if sites else "0")
            args.extend(sorted(sites))
        if start is not None:  # overlapping the range
            where.append("(end IS NULL OR end > ?)")
            args.append(start)
        if end is not None:
            where.append("start < ?")
            args.append(end)
        if status == "open":
            where.append("end IS NULL")
        elif status == "closed":
            where.append("end IS NOT NULL")
        sql = (f"SELECT body FROM anomalies WHERE {' AND '.join(where)} "
               "ORDER BY start DESC, id LIMIT ?")
        return [orjson.loads(b) for (b,) in self._c().execute(sql, (*args, limit))]

    def prune(self, before_wall: float) -> int:
        return self._c().execute(
            "DELETE FROM anomalies WHERE end IS NOT NULL AND updated < ?", (before_wall,)
        ).rowcount
