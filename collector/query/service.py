"""Answering a parsed query on one read-only connection: from the records, or from the
anonymous aggregates when the records of the range are gone.

Which source answers (``source="auto"``, the default): the aggregates answer a query that is
only ``[time range] | count [by DIM[, DIM]]`` (then optionally ``sort``/``limit``) over
dimensions the aggregates keep, when no live record in the caller's sites reaches back to the
start of the range (the sessions of that time have ended and their records are forgotten).
Everything else, and every query whose range is still covered by records, is answered from the
records. ``source="records"`` or ``"aggregates"`` forces one (400 when the aggregates cannot
answer). The answer says which source answered.
"""

from __future__ import annotations

import importlib
import sqlite3
import time
from typing import Any

from collector.query import ast
from collector.query.compiler import compile_query
from collector.query.errors import QueryError
from collector.query.run import Result, execute, time_limit

SOURCES = ("auto", "records", "aggregates")


def _aggregates_reader() -> Any | None:
    try:
        return importlib.import_module("collector.aggregates.read")
    except ImportError:  # pragma: no cover - the aggregates are part of the service
        return None


def aggregate_dims(q: ast.Query) -> list[str] | None:
    """The dimensions when the aggregates could answer ``q``, else ``None``."""
    reader = _aggregates_reader()
    if reader is None or q.filter is not None or not q.stages:
        return None
    first = q.stages[0].stage
    if not isinstance(first, ast.Count):
        return None
    if any(not isinstance(s.stage, ast.Sort | ast.Limit) for s in q.stages[1:]):
        return None
    dims = [n.name for n in first.by]
    try:
        reader.check_dims(dims)
    except ValueError:
        return None
    return dims


def _has_aggregates(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agg'"
                       ).fetchone()
    return row is not None


def _records_reach(conn: sqlite3.Connection, start: float, sites: frozenset[str] | None
                   ) -> bool:
    sql, args = "SELECT 1 FROM records WHERE time <= ?", list[Any]([start])
    if sites is not None:
        sql += f" AND site IN ({', '.join('?' * len(sites))})" if sites else " AND 0"
        args.extend(sorted(sites))
    return conn.execute(sql + " LIMIT 1", args).fetchone() is not None


def run_query(conn: sqlite3.Connection, q: ast.Query, *, sites: frozenset[str] | None,
              timeout: float, max_rows: int, source: str = "auto", k: int = 5,
              now: float | None = None) -> Result:
    """Answer ``q`` for a caller limited to ``sites``; raises QueryError / QueryTimeout."""
    now = time.time() if now is None else now
    if source not in SOURCES:
        raise QueryError(0, "unknown source", "auto, records or aggregates", source)
    dims = aggregate_dims(q) if source != "records" else None
    start, end = q.bounds(now)
    if source == "aggregates":
        if dims is None:
            raise QueryError(0, "the aggregates cannot answer this query",
                             "a query of the form [time range] | count [by DIM] with DIM one "
                             "of the aggregate dimensions")
        if not _has_aggregates(conn):
            raise QueryError(0, "no aggregates are kept in this store")
        return _from_aggregates(conn, q, dims, start, end, sites, timeout, max_rows, k)
    if (source == "auto" and dims is not None and start is not None and _has_aggregates(conn)
            and not _records_reach(conn, start, sites)):
        return _from_aggregates(conn, q, dims, start, end, sites, timeout, max_rows, k)
    compiled = compile_query(q, sites=sites, now=now, max_rows=max_rows)
    return execute(conn, compiled, timeout)


def _from_aggregates(conn: sqlite3.Connection, q: ast.Query, dims: list[str],
                     start: float | None, end: float | None, sites: frozenset[str] | None,
                     timeout: float, max_rows: int, k: int) -> Result:
    reader = _aggregates_reader()
    assert reader is not None
    started = time.monotonic()
    with time_limit(conn, timeout):
        raw = reader.aggregate_counts(conn, dims, start, end, sites, k)
    columns = [*dims, "count", "sessions"]
    rows = [{**{d: r.get(d) for d in dims}, "count": r["requests"], "sessions": r["sessions"]}
            for r in raw]
    limit = max_rows
    for at in q.stages[1:]:
        st = at.stage
        if isinstance(st, ast.Sort):
            for key in reversed(st.keys):
                if key.column not in columns:
                    raise QueryError(key.pos, "unknown column", "one of " + ", ".join(columns),
                                     key.column)
                column = key.column
                rows.sort(key=lambda r: _sortable(r[column]), reverse=key.descending)
        elif isinstance(st, ast.Limit):
            limit = min(limit, st.n)
            rows = rows[: st.n]
    truncated = len(rows) > max_rows
    return Result(columns, rows[:limit], truncated, time.monotonic() - started, "aggregates")


def _sortable(v: Any) -> tuple[int, float, str]:
    if v is None:
        return (2, 0.0, "")
    if isinstance(v, int | float):
        return (0, float(v), "")
    return (1, 0.0, str(v))
