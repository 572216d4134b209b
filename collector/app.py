"""``create_app(settings)``: the service, its routes, and each resource's lifecycle in order.

Read the ``cleanup_ctx`` list top to bottom to see start-up, bottom to top to see shutdown:
keys → audit log → store → enrichment → pipeline → sweeper → syslog → detectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from collector.api import admin, aggregates, anomalies, ops, query, records
from collector.appkeys import (
    DETECTOR,
    GEO,
    KEYRING,
    METRICS,
    PIPELINE,
    SETTINGS,
    STARTED,
    STORE,
    UA,
)
from collector.audit import audit_ctx
from collector.auth import TOKENS, Handler, TokenBook, auth_middleware
from collector.browser import browser_guard
from collector.dashboard import add_routes as add_dashboard_routes
from collector.dashboard import cookie_middleware
from collector.detect import DetectorRunner
from collector.enrich.geo import GeoEnricher
from collector.enrich.ua import UAEnricher
from collector.faults import FAULTS, Faults
from collector.metrics import Metrics
from collector.pipeline import Pipeline, build_steps
from collector.settings import Settings
from collector.sources import http
from collector.sources.budget import BUDGET, MemoryBudget
from collector.sources.syslog import SYSLOG, SyslogReceiver
from collector.store import open_keyring, open_store
from masking.ip import weaker_than_default

log = structlog.get_logger("lethelog.app")


async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
    # <data_dir>/session-keys.json, or (store.backend = "redis") shared by every collector
    async with open_keyring(app[SETTINGS]) as ring:
        app[KEYRING] = ring
        yield


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = open_store(app[SETTINGS], app[METRICS])
    await store.start()
    app[STORE] = store
    yield
    await store.close()


async def enrich_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    geo = GeoEnricher(settings.enrich, settings.server.data_dir, background=True)
    app[GEO] = geo
    app[UA] = UAEnricher(settings.enrich.ua_cache_size)
    if not geo.configured:
        log.warning("geoip_disabled", reason="no GeoIP database configured; geo fields are null")
    for db in geo.info():
        log.info("geoip_database", **{k: v for k, v in db.items() if k != "path"})
    app[METRICS].gauge_series(
        "lethelog_geoip_database_age_days", "Age of each GeoIP database in use, by role.",
        lambda: {(("kind", i["role"]),): float(i["age_days"]) for i in geo.info()})
    watcher = asyncio.create_task(geo.watch(settings.enrich.reload_interval))
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    geo.close()


async def pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    steps = build_steps(settings, app[KEYRING], app[GEO], app[UA], source="local",
                        max_age=settings.sessions.max_age)
    app[PIPELINE] = Pipeline(steps)
    app[PIPELINE].warm()  # the columnar engine's one-time set-up, before the first request
    yield


async def sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    """Ends idle sessions on the wall clock, deletes their records, checkpoints the WAL."""
    store, interval = app[STORE], app[SETTINGS].sessions.sweep_interval
    keyring = app[KEYRING]

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                result = await store.sweep(time.time())
                keyring.prune()
            except Exception as exc:  # keep sweeping; the next tick retries
                log.error("sweep_failed", error=type(exc).__name__)
                continue
            if result.sessions_ended:
                log.info("sessions_forgotten", sessions=result.sessions_ended,
                         records=result.records_deleted, checkpointed=result.checkpointed)

    task = asyncio.create_task(sweep_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def syslog_ctx(app: web.Application) -> AsyncIterator[None]:
    """Syslog UDP/TCP listeners (off unless [syslog] udp or tcp is set); closing drains them."""
    settings = app[SETTINGS]
    if settings.syslog.udp is None and settings.syslog.tcp is None:
        yield
        return
    receiver = SyslogReceiver(settings, app[PIPELINE], app[STORE], app[METRICS])
    await receiver.start()
    app[SYSLOG] = receiver
    yield
    await receiver.close()


async def detector_ctx(app: web.Application) -> AsyncIterator[None]:
    """Anomaly detectors on the aggregates (log time), their anomalies.db and webhook."""
    runner = DetectorRunner(app[SETTINGS], app[STORE])
    await runner.start()
    app[DETECTOR] = runner
    yield
    await runner.close()


@web.middleware
async def payload_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A body that cannot be decoded as its Content-Encoding says is the client's error (400),
    on every route that reads one (aiohttp raises RequestPayloadError: was a 500)."""
    try:
        return await handler(request)
    except RequestPayloadError:
        return web.json_response({"error": "the body could not be decoded as its "
                                           "Content-Encoding says"}, status=400)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[payload_errors, browser_guard, cookie_middleware, auth_middleware],
        client_max_size=settings.ingest.max_body_size,
        # an idle keep-alive connection, or one whose request headers are not complete
        # within this, is closed (slow clients can't hold a connection open)
        handler_args={"keepalive_timeout": settings.ingest.keepalive_timeout},
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[FAULTS] = Faults()
    app[BUDGET] = MemoryBudget(settings.ingest.memory_budget)
    app[STARTED] = time.time()
    app[TOKENS] = TokenBook(settings.tokens)
    if app[TOKENS].open:
        log.warning("no_tokens_configured", listen=settings.server.listen,
                    detail="no [[tokens]]: loopback only, every local caller holds every role")
    app.cleanup_ctx.extend([keys_ctx, audit_ctx, store_ctx, enrich_ctx, pipeline_ctx, sweeper_ctx,
                            syslog_ctx, detector_ctx])
    app.router.add_post("/v1/logs", http.post_logs)
    app.router.add_get("/v1/records", records.get_records)
    app.router.add_get("/v1/query", query.get_query)
    app.router.add_get("/v1/admin/sessions", admin.list_sessions)
    app.router.add_post("/v1/admin/export", admin.export_session)
    app.router.add_post("/v1/admin/erase", admin.erase_session)
    app.router.add_get("/v1/admin/audit", admin.audit_log)
    app.router.add_get("/v1/aggregates", aggregates.get_aggregates)
    app.router.add_get("/v1/anomalies", anomalies.get_anomalies)
    add_dashboard_routes(app)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/metrics", ops.metrics)
    for warning in weaker_than_default(settings.masking.ipv4_keep_bits,
                                       settings.masking.ipv6_keep_bits):
        log.warning("masking_weaker_than_default", detail=warning)
    return app
