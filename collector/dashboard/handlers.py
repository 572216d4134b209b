"""``/dashboard``: the security team's live view (security role), served entirely by lethelog.

* ``GET/POST /dashboard/login`` (public: a form and, with ``?style``, its stylesheet; no data): a
  token with the security role opens a dashboard login (see ``collector.dashboard.sessions``);
  ``POST /dashboard/logout`` ends it.
* ``GET /dashboard`` and ``/dashboard/static/*``: the page and its assets.
* ``GET /dashboard/api/summary?start=&end=``: everything the page shows, k-anonymous, audited.
* ``GET /dashboard/api/stream``: server-sent events (a tick per detector pass, anomalies opened
  and closed) so the page refreshes without reload.

``cookie_middleware`` turns a dashboard login cookie into the ``Authorization`` header the auth
middleware checks, on ``/dashboard`` paths only; without a valid login or header, page requests
are redirected to the login form and API requests get ``401``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from collector.aggregates.read import aggregate_counts, aggregate_series, k_for, time_bounds
from collector.api.timerange import bad_request, time_param
from collector.appkeys import DETECTOR, GEO, SETTINGS, STORE
from collector.audit import audit
from collector.auth import PRINCIPAL, PUBLIC, TOKENS, Handler, authenticate, bearer, requires
from collector.dashboard.sessions import COOKIE, DashboardLogins
from collector.store.base import ReadScope

LOGINS: web.AppKey[DashboardLogins] = web.AppKey("dashboard_logins", DashboardLogins)
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
TOP = 10
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; script-src 'self'; connect-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _asset(name: str) -> bytes:
    return (resources.files("collector.dashboard") / "static" / name).read_bytes()


@web.middleware
async def cookie_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.rel_url.path
    if not path.startswith("/dashboard") or path.startswith("/dashboard/login"):
        return await handler(request)
    if request.app[TOKENS].open or bearer(request) is not None:
        return await handler(request)
    token = request.app[LOGINS].token(request.cookies.get(COOKIE))
    if token is None:
        if request.method == "GET" and path in ("/dashboard", "/dashboard/"):
            raise web.HTTPSeeOther("/dashboard/login")
        return await handler(request)  # the auth middleware answers 401
    headers = request.headers.copy()
    headers["Authorization"] = f"Bearer {token}"
    return await handler(request.clone(headers=headers))


def _page(name: str) -> web.Response:
    return web.Response(body=_asset(name), content_type="text/html", charset="utf-8",
                        headers=SECURITY_HEADERS)


@requires(PUBLIC)
async def login_form(request: web.Request) -> web.Response:
    """The sign-in form, or (``?style``) its stylesheet: the only public route of the dashboard."""
    if "style" in request.query:
        return web.Response(body=_asset("login.css"), content_type="text/css", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})
    return _page("login.html")


@requires(PUBLIC)
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = str(form.get("token", "")).strip()
    principal, reason = authenticate(request, token)
    if principal is None or "security" not in principal.roles:
        status = 401 if principal is None else 403
        why = reason if principal is None else "this token lacks the security role"
        body = _asset("login.html").replace(
            b"<!--error-->", b'<p class="error" role="alert">' + why.encode() + b"</p>")
        return web.Response(body=body, status=status, content_type="text/html", charset="utf-8",
                            headers=SECURITY_HEADERS)
    sid = request.app[LOGINS].create(token, principal.name)
    resp = web.Response(status=303, headers={"Location": "/dashboard", **SECURITY_HEADERS})
    resp.set_cookie(COOKIE, sid, path="/dashboard", httponly=True, samesite="Strict",
                    secure=request.secure)
    return resp


@requires("security")
async def logout(request: web.Request) -> web.StreamResponse:
    request.app[LOGINS].end(request.cookies.get(COOKIE))
    resp = web.Response(status=303, headers={"Location": "/dashboard/login"})
    resp.del_cookie(COOKIE, path="/dashboard")
    return resp


@requires("security")
async def page(request: web.Request) -> web.Response:
    return _page("index.html")


@requires("security")
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=_asset(name), content_type=STATIC[name], charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


def _step(start: float, end: float) -> int:
    span = max(60.0, end - start)
    for step in (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400):
        if span / step <= 180:
            return step
    return 86400


@requires("security")
async def summary(request: web.Request) -> web.Response:
    sites = request[PRINCIPAL].sites
    k = k_for(request.app[SETTINGS], sites)
    start, end = time_param(request, "start"), time_param(request, "end")
    if start is not None and end is not None and end <= start:
        raise bad_request("end: must be after start")

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        first, last = time_bounds(conn, sites)
        if first is None or last is None:
            return {"first": None, "last": None, "series": [], "total": None, "top": {}}
        s = start if start is not None else float(first)
        e = end if end is not None else float(last) + 60
        step = _step(s, e)
        out: dict[str, Any] = {"first": first, "last": last + 60, "start": s, "end": e,
                               "step": step}
        out["series"] = aggregate_series(conn, math.floor(s), math.ceil(e), step, sites, k)
        total = aggregate_counts(conn, [], s, e, sites, k)
        out["total"] = total[0] if total else None
        out["top"] = {d: aggregate_counts(conn, [d], s, e, sites, k)[:TOP]
                      for d in ("country", "asn", "network", "path_template")}
        return out

    data = await request.app[STORE].read(read, ReadScope(sites=sites, records=False))
    anomalies = await request.app[DETECTOR].list(sites, data.get("start"), data.get("end"),
                                                 "all", 200)
    data["anomalies"] = anomalies
    data["k"] = k
    data["databases"] = [{f: i[f] for f in ("role", "database_type", "build_date", "age_days",
                                             "stale")} for i in request.app[GEO].info()]
    rows = (len(data["series"]) + (1 if data["total"] else 0)
            + sum(len(v) for v in data["top"].values()) + len(anomalies))
    audit(request, endpoint="/dashboard/api/summary", query={"start": start, "end": end},
          rows=rows)
    return web.Response(body=orjson.dumps(data), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


@requires("security")
async def stream(request: web.Request) -> web.StreamResponse:
    runner = request.app[DETECTOR]
    sites = request[PRINCIPAL].sites
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    audit(request, endpoint="/dashboard/api/stream", query=None, rows=0)
    q = runner.subscribe(sites)
    try:
        await resp.write(b"retry: 3000\n\nevent: hello\ndata: {}\n\n")
        while True:
            try:
                msg = await asyncio.wait_for(q.get(), 15.0)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            anomaly = msg.get("anomaly")
            if anomaly is not None and sites is not None and anomaly.get("site") not in sites:
                continue
            await resp.write(b"event: " + msg["type"].encode() + b"\ndata: "
                             + orjson.dumps(msg) + b"\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        runner.unsubscribe(q)
    with contextlib.suppress(Exception):
        await resp.write_eof()
    return resp


def add_routes(app: web.Application) -> None:
    app[LOGINS] = DashboardLogins()
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/", page)
    app.router.add_get("/dashboard/login", login_form)
    app.router.add_post("/dashboard/login", login)
    app.router.add_post("/dashboard/logout", logout)
    app.router.add_get("/dashboard/static/{name}", static)
    app.router.add_get("/dashboard/api/summary", summary)
    app.router.add_get("/dashboard/api/stream", stream)
