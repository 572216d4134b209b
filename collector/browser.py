"""Loopback without tokens stays safe from browsers (DNS rebinding, cross-site requests).

Without ``[[tokens]]`` every local caller holds every role, and a browser on the same machine is
a local caller: a page on another site could post records, erase sessions, or (after pointing its
own name at 127.0.0.1: DNS rebinding) read ``/v1/records``. So, in that mode only:

* only loopback ``Host`` names are served (``localhost``, ``*.localhost``, ``127.0.0.0/8``,
  ``[::1]``, with any port): a rebound name such as ``evil.example`` gets ``421``;
* a request whose ``Origin`` is not a loopback origin, or that a browser marks
  ``Sec-Fetch-Site: cross-site``/``same-site``, gets ``403``;
* a state-changing request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) with a CORS-"simple"
  content type (``text/plain``, form encodings, none) that a browser sent (it carries an
  ``Origin`` or ``Sec-Fetch-*`` header) gets ``403`` unless it also carries a bearer token:
  a page cannot send those without a CORS preflight, which lethelog never grants (no CORS
  headers). ``curl`` and shippers, which send neither header, are unaffected.

With tokens configured nothing here applies: every route needs a token a page does not have.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from collector.auth import TOKENS, Handler, bearer

log = structlog.get_logger("lethelog.auth")

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SIMPLE_TYPES = frozenset({"", "text/plain", "application/x-www-form-urlencoded",
                          "multipart/form-data"})


def loopback_name(host: str | None) -> bool:
    """``host`` (a Host header's or an origin's host, port allowed) names this machine."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8780
        name = host[1:host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    else:
        name = host
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


def loopback_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and loopback_name(parts.netloc)


def _refuse(request: web.Request, status: int, reason: str) -> web.Response:
    log.warning("browser_refused", path=request.rel_url.path, status=status, reason=reason)
    return web.json_response({"error": reason}, status=status)


@web.middleware
async def browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.app[TOKENS].open:
        return await handler(request)
    if not loopback_name(request.host):
        return _refuse(request, 421, "without tokens only loopback host names are served "
                                     "(Host is not localhost, 127.0.0.0/8 or [::1])")
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
    if origin is not None and not loopback_origin(origin):
        return _refuse(request, 403, "cross-site request refused (Origin is not loopback)")
    if fetch_site in ("cross-site", "same-site"):
        return _refuse(request, 403, "cross-site request refused (Sec-Fetch-Site)")
    from_browser = origin is not None or any(h.lower().startswith("sec-fetch-")
                                             for h in request.headers)
    if request.method in STATE_CHANGING and from_browser and bearer(request) is None:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype in SIMPLE_TYPES:
            return _refuse(request, 403, "a browser's state-changing request needs a "
                                         "non-simple Content-Type or a bearer token")
    return await handler(request)
