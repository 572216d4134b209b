"""Running a compiled query: time limit, read-only authorizer, values shown as the API shows them.

Three fences keep a query inside the record store, besides parameter binding:

* the connection is read-only (``mode=ro``),
* an authorizer admits only ``SELECT``, reads of the ``records`` table and of the ``sid``/``id``
  columns of ``sessions`` (never the pseudonymous key), and a short list of functions,
* a progress handler interrupts the statement once ``timeout`` has passed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from collector.query.compiler import Compiled
from collector.query.errors import QueryTimeout
from collector.query.fields import BOOL, JSON, TIME
from collector.query.regex import regexp
from collector.timefmt import rfc3339

ALLOWED_FUNCTIONS = frozenset({"count", "coalesce", "substr", "regexp", "row_number", "glob"})
PROGRESS_STEPS = 1000  # SQLite VM instructions between two looks at the clock


@dataclass
class Result:
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool
    elapsed: float
    source: str = "records"


def _authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None,
                _trigger: str | None) -> int:
    if action == sqlite3.SQLITE_SELECT:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_READ:
        if arg1 == "records" or (arg1 == "sessions" and arg2 in ("sid", "id")):
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in ALLOWED_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _show(kind: str | None, value: Any) -> Any:
    if value is None or kind is None:
        return value
    if kind == TIME:
        return rfc3339(value)
    if kind == BOOL:
        return bool(value)
    if kind == JSON:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


@contextmanager
def time_limit(conn: sqlite3.Connection, timeout: float) -> Iterator[None]:
    """Interrupt whatever ``conn`` runs once ``timeout`` seconds have passed: QueryTimeout."""
    deadline = time.monotonic() + timeout
    conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, PROGRESS_STEPS)
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise QueryTimeout(timeout) from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


def execute(conn: sqlite3.Connection, compiled: Compiled, timeout: float) -> Result:
    """Run ``compiled`` on ``conn`` (read-only) within ``timeout`` seconds."""
    started = time.monotonic()
    conn.create_function("regexp", 2, regexp, deterministic=True)
    conn.set_authorizer(_authorizer)
    try:
        with time_limit(conn, timeout):
            raw = conn.execute(compiled.sql, compiled.params).fetchall()
    finally:
        conn.set_authorizer(None)
    truncated = len(raw) > compiled.limit
    if truncated:
        raw = raw[: compiled.limit]
    cols, kinds = compiled.columns, compiled.kinds
    shown = [(i, c, kinds.get(c)) for i, c in enumerate(cols)]
    rows = [{c: _show(k, row[i]) for i, c, k in shown} for row in raw]
    if time.monotonic() > started + 1.5 * timeout:  # conversion is bounded by max_rows
        raise QueryTimeout(timeout)
    return Result(cols, rows, truncated, time.monotonic() - started)
