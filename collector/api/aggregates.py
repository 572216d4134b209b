"""``GET /v1/aggregates``: k-anonymous breakdowns of the aggregates (security role).

Query: ``by`` = comma-separated dimensions (``site`` plus at most one of country, asn, isp,
network, path_template, method, browser, os, device_type, source; empty: the total),
``start``/``end`` (RFC 3339 or epoch seconds, log time, end exclusive), ``limit`` (rows, 1000).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from collector.aggregates import AggregateQueryError, aggregate_counts, k_for
from collector.api.timerange import bad_request, time_param
from collector.appkeys import SETTINGS, STORE
from collector.audit import audit
from collector.auth import PRINCIPAL, requires
from collector.store.base import ReadScope

MAX_ROWS = 10_000


@requires("security")
async def get_aggregates(request: web.Request) -> web.Response:
    by = [d.strip() for d in request.query.get("by", "").split(",") if d.strip()]
    start, end = time_param(request, "start"), time_param(request, "end")
    raw_limit = request.query.get("limit", "1000")
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_ROWS:
        raise bad_request(f"limit: expected an integer 1..{MAX_ROWS}, got {raw_limit[:20]!r}")
    sites = request[PRINCIPAL].sites
    k = k_for(request.app[SETTINGS], sites)

    def run(conn: Any) -> list[dict[str, Any]]:
        return aggregate_counts(conn, by, start, end, sites, k)

    try:
        rows = await request.app[STORE].read(
            run, ReadScope(start=start, end=end, sites=sites, records=False))
    except AggregateQueryError as exc:
        raise bad_request(f"by: {exc}") from None
    rows = rows[: int(raw_limit)]
    audit(request, endpoint="/v1/aggregates",
          query={"by": by, "start": start, "end": end}, rows=len(rows))
    body = {"k": k, "by": by, "start": start, "end": end, "rows": rows}
    return web.Response(body=orjson.dumps(body), content_type="application/json")
