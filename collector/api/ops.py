"""Operations: ``/healthz`` (public) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from collector import __version__
from collector.appkeys import GEO, METRICS, STARTED, STORE
from collector.auth import PUBLIC, requires
from collector.faults import FAULTS


@requires(PUBLIC)
async def healthz(request: web.Request) -> web.Response:
    stats = await request.app[STORE].stats()
    geo = request.app[GEO]
    body = {
        "status": "ok",
        "version": __version__,
        "uptime_seconds": round(time.time() - request.app[STARTED], 3),
        "store": {"backend": type(request.app[STORE]).__name__, "records": stats.records,
                  "sessions": stats.sessions, "queue_depth": stats.queue_depth},
        "databases": geo.info(),
    }
    faults = request.app[FAULTS].public() if FAULTS in request.app else {}
    if faults:  # still alive (200), but say what is wrong: full disk, torn audit tail, ...
        body["status"] = "degraded"
        body["faults"] = faults
    return web.Response(body=orjson.dumps(body), content_type="application/json")


@requires("sre")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(), content_type="text/plain",
                        charset="utf-8", headers={"X-Content-Type-Options": "nosniff"})
