"""``GET /v1/anomalies``: anomalies found by the detectors (security role), newest first.

Query: ``status`` = open | closed | all (default), ``start``/``end`` (RFC 3339 or epoch, log
time: anomalies overlapping the range), ``limit`` (default 1000).
"""

from __future__ import annotations

import orjson
from aiohttp import web

from collector.api.timerange import bad_request, time_param
from collector.appkeys import DETECTOR
from collector.audit import audit
from collector.auth import PRINCIPAL, requires


@requires("security")
async def get_anomalies(request: web.Request) -> web.Response:
    status = request.query.get("status", "all")
    if status not in ("open", "closed", "all"):
        raise bad_request(f"status: expected open, closed or all, got {status[:20]!r}")
    raw = request.query.get("limit", "1000")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 10_000:
        raise bad_request(f"limit: expected an integer 1..10000, got {raw[:20]!r}")
    start, end = time_param(request, "start"), time_param(request, "end")
    rows = await request.app[DETECTOR].list(request[PRINCIPAL].sites, start, end, status,
                                            int(raw))
    audit(request, endpoint="/v1/anomalies",
          query={"status": status, "start": start, "end": end}, rows=len(rows))
    return web.Response(body=orjson.dumps({"anomalies": rows}), content_type="application/json")
