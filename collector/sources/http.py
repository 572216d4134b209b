"""HTTP source: ``POST /v1/logs``. The answer comes after the accepted records are committed."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from collector.appkeys import METRICS, PIPELINE, SETTINGS, STORE
from collector.auth import PRINCIPAL, requires
from collector.faults import FAULTS, RETRY_AFTER, disk_fault
from collector.sources.body import BodyError
from collector.sources.budget import BUDGET, MemoryBudget, estimate
from collector.sources.offloop import ParseTimeout, run
from collector.store import StoreBusy

log = structlog.get_logger("lethelog.ingest")

MAX_ERRORS = 100


def _json_response(payload: dict[str, Any], status: int = 200,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status,
                        content_type="application/json", headers=headers)


def refuse(status: int, error: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json_response({"accepted": 0, "rejected": 0, "errors": [], "error": error}, status,
                          headers)


class _Held:
    """What one request holds of the memory budget."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget, self.n = budget, 0

    def resize(self, n: int) -> bool:
        if n > self.n:
            if not self.budget.take(n - self.n):
                return False
        else:
            self.budget.give(self.n - n)
        self.n = n
        return True


def _over_budget(request: web.Request, what: str) -> web.Response:
    request.app[METRICS].inc("lethelog_requests_refused_total", reason="memory_budget")
    budget = request.app[BUDGET]
    resp = refuse(503, f"{what} does not fit in ingest.memory_budget ({budget.limit} bytes) "
                       "beside the requests in flight: nothing stored, retry later",
                  {"Retry-After": "2"})
    resp.force_close()  # an unread body is not read
    return resp


@requires("shipper")
async def post_logs(request: web.Request) -> web.Response:
    held = _Held(request.app[BUDGET])
    try:
        return await _post_logs(request, held)
    finally:
        held.resize(0)


async def _post_logs(request: web.Request, held: _Held) -> web.Response:
    started = time.perf_counter()
    settings = request.app[SETTINGS]
    metrics = request.app[METRICS]
    principal = request[PRINCIPAL]
    # the body's bytes are reserved before it is read (its length when known and not
    # compressed, else the largest body), then its records' estimated cost once read
    length = request.content_length
    if length is None or request.headers.get("Content-Encoding"):
        length = settings.ingest.max_body_size
    if not held.resize(min(length, settings.ingest.max_body_size)):
        return _over_budget(request, "the body")
    # aiohttp inflates gzip/deflate bodies as it reads them and stops with 413 once the
    # inflated size passes client_max_size (= ingest.max_body_size): no bomb gets through.
    # The whole body must arrive within ingest.body_timeout: a client trickling bytes is cut
    # off (the header stage is bounded by ingest.keepalive_timeout, see create_app).
    try:
        async with asyncio.timeout(settings.ingest.body_timeout):
            data = await request.read()
    except RequestPayloadError:  # e.g. "Content-Encoding: gzip" on a body that is not gzip
        metrics.inc("lethelog_requests_refused_total", reason="body")
        return refuse(400, "the body could not be decoded as its Content-Encoding says")
    except web.HTTPRequestEntityTooLarge:
        metrics.inc("lethelog_requests_refused_total", reason="too_large")
        return refuse(413, f"body exceeds {settings.ingest.max_body_size} bytes "
                           "(ingest.max_body_size, after decompression)")
    except TimeoutError:
        metrics.inc("lethelog_requests_refused_total", reason="slow_body")
        resp = refuse(408, f"body did not arrive within {settings.ingest.body_timeout:g}s "
                           "(ingest.body_timeout)")
        resp.force_close()
        # answer, then hang up at once: no lingering read of the rest of a trickling body
        await resp.prepare(request)
        await resp.write_eof()
        request.protocol.force_close()
        return resp
    cost = estimate(data, settings.ingest.max_records_per_request)
    if cost > held.budget.limit:
        metrics.inc("lethelog_requests_refused_total", reason="memory_budget")
        return refuse(413, f"the body's records would need ~{cost >> 20} MiB, more than "
                           f"ingest.memory_budget ({held.budget.limit >> 20} MiB): send smaller "
                           "batches")
    if not held.resize(cost):
        return _over_budget(request, "the body's records")
    fmt = request.query.get("format") or None
    if fmt in ("auto", "detect"):
        fmt = None
    pipeline = request.app[PIPELINE]
    # the whole body is one columnar batch (bounded by ingest.max_body_size and the memory
    # budget), parsed and run through the chain off the event loop, within ingest.parse_timeout
    deadline = asyncio.get_running_loop().time() + settings.ingest.parse_timeout
    ctype = request.headers.get("Content-Type", "text/plain")
    try:
        result = await run(lambda: pipeline.process_body(
            data, ctype, fmt, settings.ingest.max_line_length, source=principal.name,
            sites=principal.sites), deadline)
        limit = settings.ingest.max_records_per_request
        if result.accepted + len(result.errors) > limit:
            metrics.inc("lethelog_requests_refused_total", reason="too_many_records")
            return refuse(413, f"more than {limit} records in one request "
                               "(ingest.max_records_per_request)")
    except BodyError as exc:
        metrics.inc("lethelog_requests_refused_total", reason="body")
        return refuse(exc.status, str(exc))
    except ParseTimeout:
        metrics.inc("lethelog_requests_refused_total", reason="parse_timeout")
        return refuse(503, f"body not parsed within {settings.ingest.parse_timeout:g}s "
                           "(ingest.parse_timeout; service busy): nothing stored, retry later",
                      {"Retry-After": "5"})
    except OSError as exc:  # e.g. the session keys cannot be rotated on a full disk
        if disk_fault(exc) is None:
            raise
        return store_failed(request, exc)
    try:
        await request.app[STORE].write(result.frame)
    except StoreBusy as exc:
        metrics.inc("lethelog_requests_refused_total", reason="queue_full")
        return refuse(503, "store queue is full, retry later",
                      {"Retry-After": str(max(1, int(exc.retry_after)))})
    except Exception as exc:  # the store rolled the batch back: nothing of it is kept
        return store_failed(request, exc)
    if store_lost(request.app[STORE]):
        # the data directory was removed under the service: what was "committed" went into an
        # unlinked file, so it is not acknowledged (the shipper retries once it is restored)
        request.app[FAULTS].report("store_write", error="data directory lost")
        metrics.inc("lethelog_requests_refused_total", reason="disk")
        return refuse(507, "the data directory is gone (lethelog.db missing): nothing of the "
                           "request is kept; restore it and restart", {"Retry-After": "60"})
    request.app[FAULTS].clear("store_write")
    metrics.inc("lethelog_records_accepted_total", result.accepted)
    for _, reason in result.errors:
        metrics.inc("lethelog_records_rejected_total", reason=reason_class(reason))
    metrics.observe("lethelog_ingest_seconds", time.perf_counter() - started)
    if result.errors:
        log.info("records_rejected", source=principal.name, rejected=len(result.errors),
                 accepted=result.accepted, first_line=result.errors[0][0])
    return _json_response({
        "accepted": result.accepted,
        "rejected": len(result.errors),
        "dropped": result.dropped,
        "errors": [{"line": line, "error": err} for line, err in result.errors[:MAX_ERRORS]],
    })


def store_lost(store: Any) -> bool:
    """The store's file (embedded backend) no longer exists on disk: one stat."""
    path = getattr(store, "path", None)
    return path is not None and not os.path.exists(path)


def store_failed(request: web.Request, exc: Exception) -> web.Response:
    """A write the store could not commit: ``507`` for a disk fault (full, read-only, gone),
    else ``503``; both with ``Retry-After`` and nothing of the request stored."""
    fault = disk_fault(exc)
    metrics = request.app[METRICS]
    metrics.inc("lethelog_requests_refused_total", reason="disk" if fault else "store_error")
    if fault is not None:
        request.app[FAULTS].report("store_write", error=fault)
        log.error("store_write_refused", error=fault)
        return refuse(507, f"the store cannot write ({fault}): nothing of the request was "
                           "stored, retry later", {"Retry-After": str(RETRY_AFTER)})
    log.error("store_write_refused", error=type(exc).__name__)
    return refuse(503, f"the store could not commit ({type(exc).__name__}): nothing of the "
                       "request was stored, retry later", {"Retry-After": "5"})


def reason_class(reason: str) -> str:
    """A closed vocabulary for the metric label (the reason text itself is free-form)."""
    r = reason.lower()
    for key in ("json", "timestamp", "future", "address", "format", "longer", "internal"):
        if key in r:
            return key
    return "other"
