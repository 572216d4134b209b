"""Reads on the Redis Cluster: fetch what a read needs into an in-memory SQLite snapshot.

Every SQL feature — the query language (``collector.query``), the aggregates' k-anonymous
reads, the dashboard, the detectors, the admin listings — is written once, against a SQLite
connection. On the redis backend, :func:`snapshot` fetches from the cluster only what the read's
:class:`~collector.store.base.ReadScope` needs (the records of its log-time range and sites, from
every bucket, one ``scan`` script call per bucket, pipelined per node; the aggregate hours the
range touches) into a private in-memory database with the embedded store's schema, and the same
function runs on it with the same fences (read-only authorizer, time limit, row cap). One
evaluator, both backends.

Cost: a read moves the records it scans over the network and inserts them into SQLite; that is
what bounds a query on this backend (``docs/scale-out.md`` has the measured records/s). The
fetch is bounded by the scope's ``timeout`` (``query.timeout`` for queries): past it the read
fails with :class:`~collector.query.errors.QueryTimeout` (503).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import orjson

from collector.aggregates.schema import COUNTERS
from collector.aggregates.schema import SCHEMA as AGG_SCHEMA
from collector.store.base import ReadScope
from collector.store.redis_agg import hour_overlaps, hours_between, parse_rows, sid_of
from collector.store.sqlite import _INSERT, _UPSERT_SESSION, COLUMNS, SCHEMA

if TYPE_CHECKING:
    from collector.store.redis import RedisStore

_AGG_INSERT = (f"INSERT INTO agg (t, res, site, dim, value, {', '.join(COUNTERS)}, updated) "
               f"VALUES ({', '.join('?' * (len(COUNTERS) + 6))})")


_LANGUAGES = COLUMNS.index("languages") + 1  # positions in a row, after sid


def _row(sid: int, rec: dict[str, Any]) -> list[Any]:
    """The ``records`` INSERT parameters of one stored record (its JSON as Redis keeps it:
    booleans are JSON booleans, which sqlite3 stores as 1/0)."""
    row = [sid, *map(rec.get, COLUMNS)]
    langs = row[_LANGUAGES]
    if langs is not None:
        row[_LANGUAGES] = orjson.dumps(langs).decode()
    return row


def _bound(x: float | None, default: str, exclusive: bool = False) -> str:
    if x is None or math.isinf(x):
        return default
    return ("(" if exclusive else "") + repr(float(x))


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


async def fetch_records(store: RedisStore, scope: ReadScope
                        ) -> tuple[list[tuple[Any, ...]], list[list[Any]]]:
    """(session rows, record rows) of the scope, in the SQLite store's table layout."""
    if scope.sites is not None and not scope.sites:
        return [], []
    wanted = sorted(scope.sites) if scope.sites is not None else []
    lo = _bound(scope.start, "-inf")
    hi = _bound(scope.end, "+inf", exclusive=True)
    calls = [(b, [store.bucket(b), lo, hi, 1, len(wanted), *wanted])
             for b in range(store.nbuckets)]
    sessions: list[tuple[Any, ...]] = []
    rows: list[list[Any]] = []
    for flat in await store._calls("scan", calls):
        j = 0
        while j < len(flat):
            key, sid_hex, src, site = (_s(x) for x in flat[j:j + 4])
            first, last, wall, n = (float(x) for x in flat[j + 4:j + 8])
            count = int(flat[j + 8])
            sid = sid_of(sid_hex)
            sessions.append((sid, sid_hex, key, src, site, first, last, wall, int(n)))
            for raw in flat[j + 9:j + 9 + count]:
                rows.append(_row(sid, orjson.loads(raw)))
            j += 9 + count
    return sessions, rows


async def fetch_aggregates(store: RedisStore, scope: ReadScope) -> list[tuple[Any, ...]]:
    """The ``agg`` rows of every hour the scope's range touches, of its sites."""
    assert store.client is not None
    agg = store.agg
    sites = [_s(s) for s in await store.client.smembers(agg.sites_key)]
    if scope.sites is not None:
        sites = [s for s in sites if s in scope.sites]
    lo, hi = hours_between(scope.start, scope.end)
    keys: list[tuple[str, str]] = []
    async with store.client.pipeline(transaction=False) as pipe:
        for site in sites:
            pipe.zrangebyscore(agg.index_key(site), lo, hi)
        for site, hours in zip(sites, await pipe.execute(), strict=True):
            keys += [(site, agg.data_key(site, int(h))) for h in hours
                     if hour_overlaps(int(h), scope.start, scope.end)]
    out: list[tuple[Any, ...]] = []
    async with store.client.pipeline(transaction=False) as pipe:
        for _, key in keys:
            pipe.hgetall(key)
        for (site, _), flat in zip(keys, await pipe.execute(), strict=True):
            out.extend(parse_rows(site, flat))
    return out


def build(sessions: list[tuple[Any, ...]], rows: list[list[Any]],
          agg: list[tuple[Any, ...]]) -> sqlite3.Connection:
    """A private in-memory database with the embedded store's tables, filled, then read-only."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA temp_store=MEMORY")
    for stmt in (*SCHEMA, *AGG_SCHEMA):
        conn.execute(stmt)
    conn.execute("BEGIN")
    conn.executemany(_UPSERT_SESSION, sessions)
    conn.executemany(_INSERT, rows)
    conn.executemany(_AGG_INSERT, agg)
    conn.execute("COMMIT")
    conn.execute("PRAGMA query_only=ON")
    return conn


async def snapshot(store: RedisStore, scope: ReadScope) -> sqlite3.Connection:
    """Fetch the scope (bounded by its timeout) and build the snapshot in a thread."""
    from collector.query.errors import QueryTimeout

    started = time.monotonic()

    async def gather() -> tuple[Any, Any]:
        recs = await fetch_records(store, scope) if scope.records else ([], [])
        agg = await fetch_aggregates(store, scope) if scope.aggregates else []
        return recs, agg

    try:
        (sessions, rows), agg = await asyncio.wait_for(gather(), scope.timeout)
    except TimeoutError:
        raise QueryTimeout(scope.timeout or 0.0) from None
    conn = await asyncio.to_thread(build, sessions, rows, agg)
    store.metrics.inc("lethelog_redis_read_records_total", len(rows))
    store.last_read = (len(rows), len(agg), time.monotonic() - started)
    return conn
