"""``GET /v1/query?q=EXPR[&format=ndjson|csv|json][&source=auto|records|aggregates]``.

Roles ``sre`` and ``security``. Answers NDJSON (one row a line) by default, CSV (header line) or
JSON (``{"source", "rows", "truncated", "elapsed_ms", "columns", "data"}``). Headers on every
answer: ``X-Lethelog-Source`` (``records`` or ``aggregates``), ``X-Lethelog-Rows``,
``X-Lethelog-Truncated``. A query that cannot be parsed answers 400 with the position and what
was expected; one that runs past ``query.timeout`` answers 503. Every query, answered or not,
is written to the audit log before the answer is sent.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import orjson
import structlog
from aiohttp import web

from collector.appkeys import SETTINGS, STORE
from collector.audit import audit
from collector.auth import PRINCIPAL, requires
from collector.query import QueryError, QueryTimeout, parse
from collector.query.output import CONTENT_TYPES, FORMATS, render
from collector.query.run import Result
from collector.query.service import SOURCES, aggregate_dims, run_query
from collector.store.base import ReadScope

ENDPOINT = "/v1/query"
log = structlog.get_logger("lethelog.query")


def _k(request: web.Request) -> int:
    try:
        from collector.aggregates.read import k_for
    except ImportError:  # pragma: no cover
        return 5
    return int(k_for(request.app[SETTINGS], request[PRINCIPAL].sites))


def _bad(body: dict[str, Any], status: int = 400) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


@requires("sre", "security")
async def get_query(request: web.Request) -> web.Response:
    text = request.query.get("q")
    if text is None:
        return _bad({"error": "q: missing query, e.g. /v1/query?q=status%20%3E%3D%20500"})
    fmt = request.query.get("format", "ndjson")
    if fmt not in FORMATS:
        return _bad({"error": f"format: expected one of {', '.join(FORMATS)}, got {fmt[:20]!r}"})
    source = request.query.get("source", "auto")
    if source not in SOURCES:
        return _bad({"error": f"source: expected one of {', '.join(SOURCES)}, "
                              f"got {source[:20]!r}"})
    settings = request.app[SETTINGS].query
    sites = request[PRINCIPAL].sites
    try:
        parsed = parse(text)
    except QueryError as exc:
        audit(request, endpoint=ENDPOINT, query=text, rows=0, outcome="rejected")
        return _bad(exc.to_json(text))
    except (ValueError, OverflowError, RecursionError) as exc:  # a parser slip: still a 400
        audit(request, endpoint=ENDPOINT, query=text, rows=0, outcome="rejected")
        log.warning("query_unparsed", error=type(exc).__name__)
        return _bad({"error": f"query could not be read ({type(exc).__name__})"})
    k = _k(request)
    store = request.app[STORE]

    def run(conn: sqlite3.Connection) -> Result:
        return run_query(conn, parsed, sites=sites, timeout=settings.timeout,
                         max_rows=settings.max_rows, source=source, k=k)

    # what a shared store must fetch: the range and sites asked (bounds a little wider than
    # run_query's own, which are taken later), the aggregates only if they could answer
    start, end = parsed.bounds(time.time() - 1.0)
    scope = ReadScope(start=start, end=end, sites=sites, records=source != "aggregates",
                      aggregates=(source == "aggregates" or (
                          source == "auto" and start is not None
                          and aggregate_dims(parsed) is not None)),
                      timeout=settings.timeout)
    try:
        result: Result = await store.read(run, scope)
    except QueryError as exc:
        audit(request, endpoint=ENDPOINT, query=text, rows=0, outcome="rejected")
        return _bad(exc.to_json(text))
    except QueryTimeout as exc:
        audit(request, endpoint=ENDPOINT, query=text, rows=0, outcome="timeout")
        return _bad({"error": str(exc), "timeout_seconds": exc.timeout}, 503)
    except (OverflowError, RecursionError) as exc:  # a value SQLite cannot bind, deep nesting
        audit(request, endpoint=ENDPOINT, query=text, rows=0, outcome="rejected")
        return _bad({"error": f"query could not run ({type(exc).__name__})"})
    except sqlite3.Error as exc:  # e.g. a limit of SQLite's; its messages hold no data
        audit(request, endpoint=ENDPOINT, query=text, rows=0, outcome="error")
        log.warning("query_failed", error=type(exc).__name__, detail=str(exc)[:200])
        return _bad({"error": f"query could not run: {str(exc)[:200]}"}, 400)
    audit(request, endpoint=ENDPOINT, query=text, rows=len(result.rows))
    headers = {
        "X-Lethelog-Source": result.source,
        "X-Lethelog-Rows": str(len(result.rows)),
        "X-Lethelog-Truncated": "true" if result.truncated else "false",
    }
    return web.Response(body=render(result, fmt), headers=headers,
                        content_type=CONTENT_TYPES[fmt])
