"""Who is calling, and what they may do. Every route declares its role with ``@requires``.

Tokens (``[[tokens]]``) travel as ``Authorization: Bearer <token>``; only their SHA-256 is
configured, and a presented token is compared against every configured hash in constant time.
A token may be limited to networks (CIDR allowlist) and to sites. Without configured tokens the
service binds loopback only and every local caller holds every role (start-up says so loudly).
Failed attempts are logged with the caller's address masked, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from collector.log import masked_peer
from collector.settings import ROLES, TokenSpec

PUBLIC = "public"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("lethelog.auth")

TOKEN_PREFIX = "lethelog_"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]
    sites: frozenset[str] | None = None  # None: every site

    def can_see(self, site: str) -> bool:
        return self.sites is None or site in self.sites


LOCAL = Principal("local", frozenset(ROLES))
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def new_token() -> tuple[str, str]:
    """A fresh token and its SHA-256 (what goes into the configuration)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


class Networks:
    """A CIDR allowlist, shared by token ``networks`` (HTTP) and ``syslog.allowed_networks``.

    IPv4-mapped IPv6 peers (``::ffff:a.b.c.d``, a dual-stack socket) are checked as IPv4; a zone
    id is ignored; anything that is not an address is refused.
    """

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.nets = [ipaddress.ip_network(n, strict=False) for n in cidrs]

    def __bool__(self) -> bool:
        return bool(self.nets)

    def allows(self, peer: str | None) -> bool:
        try:
            addr = ipaddress.ip_address((peer or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in n for n in self.nets)


class TokenBook:
    """The configured tokens, ready for constant-time checks."""

    def __init__(self, specs: tuple[TokenSpec, ...]) -> None:
        self.specs = specs
        self._digests = [bytes.fromhex(t.sha256) for t in specs]
        self._nets = [Networks(t.networks) for t in specs]

    @property
    def open(self) -> bool:
        """No tokens configured: loopback-only service, every caller holds every role."""
        return not self.specs

    def check(self, token: str | None, peer: str | None) -> tuple[Principal | None, str]:
        """(principal, "") on success, else (None, reason)."""
        if self.open:
            return LOCAL, ""
        if not token:
            return None, "missing token"
        digest = hashlib.sha256(token.encode()).digest()
        match = -1
        for i, known in enumerate(self._digests):  # visit all: timing says nothing
            if hmac.compare_digest(digest, known):
                match = i
        if match < 0:
            return None, "unknown token"
        spec, nets = self.specs[match], self._nets[match]
        if nets and not nets.allows(peer):
            return None, f"token {spec.name}: caller network not allowed"
        sites = frozenset(spec.sites) if spec.sites is not None else None
        return Principal(spec.name, frozenset(spec.roles), sites), ""


TOKENS: web.AppKey[TokenBook] = web.AppKey("tokens", TokenBook)


def requires(role: str, *more: str) -> Callable[[Handler], Handler]:
    """Declare the role a handler needs (``PUBLIC`` for none); any one of several suffices."""
    roles = (role, *more)
    for r in roles:
        if r not in ROLES and r != PUBLIC:
            raise ValueError(f"unknown role {r!r}")
    if PUBLIC in roles and len(roles) > 1:
        raise ValueError("PUBLIC cannot be combined with roles")

    def mark(handler: Handler) -> Handler:
        handler.__lethelog_role__ = role  # type: ignore[attr-defined]
        handler.__lethelog_roles__ = frozenset(roles)  # type: ignore[attr-defined]
        return handler

    return mark


def role_of(handler: Any) -> str | None:
    """The (first) declared role of a handler, ``None`` when it declares none."""
    return getattr(handler, "__lethelog_role__", None)


def roles_of(handler: Any) -> frozenset[str] | None:
    """Every role that grants a handler (any one suffices), ``None`` when it declares none."""
    roles = getattr(handler, "__lethelog_roles__", None)
    if roles is not None:
        return frozenset(roles)
    role = role_of(handler)
    return None if role is None else frozenset({role})


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def authenticate(request: web.Request, token: str | None = None) -> tuple[Principal | None, str]:
    book = request.app[TOKENS]
    return book.check(token if token is not None else bearer(request), request.remote)


def _deny(request: web.Request, status: int, reason: str) -> web.Response:
    log.warning("auth_refused", path=request.rel_url.path, status=status, reason=reason,
                peer=masked_peer(request))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response({"error": reason}, status=status, headers=headers)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if getattr(match, "http_exception", None) is not None:
        return await handler(request)  # 404/405: let aiohttp answer
    roles = roles_of(match.handler)
    if roles is None:
        return _deny(request, 403, "route declares no role")
    if PUBLIC in roles:
        return await handler(request)
    principal, reason = authenticate(request)
    if principal is None:
        status = 403 if "network" in reason else 401
        return _deny(request, status, reason)
    if principal.roles.isdisjoint(roles):
        need = " or ".join(sorted(roles))
        return _deny(request, 403, f"token {principal.name}: role {need} required")
    request[PRINCIPAL] = principal
    return await handler(request)
