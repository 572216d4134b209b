"""Who is calling, and what they may do. Every route declares its role with ``@requires``.

Without configured tokens the service binds loopback only and every local caller holds every
role (start-up says so). Token authentication (``[[tokens]]``) plugs in at ``authenticate``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ROLES = ("shipper", "sre", "security", "admin")
PUBLIC = "public"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]
    sites: frozenset[str] | None = None  # None: every site
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


LOCAL = Principal("local", frozenset(ROLES))
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def requires(role: str) -> Callable[[Handler], Handler]:
    """Declare the role a handler needs (``PUBLIC`` for none)."""
    if role not in ROLES and role != PUBLIC:
        raise ValueError(f"unknown role {role!r}")

    def mark(handler: Handler) -> Handler:
        handler.__lethelog_role__ = role  # type: ignore[attr-defined]
        return handler

    return mark


def role_of(handler: Any) -> str | None:
    return getattr(handler, "__lethelog_role__", None)


def authenticate(request: web.Request) -> Principal | None:
    """The caller's principal, or None when the credentials are missing or wrong."""
    return LOCAL


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    route_handler = match.handler if match.route is not None else handler
    role = role_of(route_handler)
    if role is None:
        if getattr(match, "http_exception", None) is not None:
            return await handler(request)  # 404/405: let aiohttp answer
        raise web.HTTPForbidden(text="route declares no role")
    if role == PUBLIC:
        return await handler(request)
    principal = authenticate(request)
    if principal is None:
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
    if role not in principal.roles:
        raise web.HTTPForbidden(text=f"role {role} required")
    request[PRINCIPAL] = principal
    return await handler(request)
