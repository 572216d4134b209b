"""Every route declares its role, and each role reaches exactly the routes its list names.

The table is data-driven: the routes are read from ``create_app(...).router`` and each route's
allowed roles from its handler's declaration (``collector.auth.roles_of``); the routes this
project knows are also pinned in ``EXPECTED`` (so a declaration cannot drift silently). A route
without a declaration fails the test. Each route is then called with one token per role, with a
token unknown to the service, and with none.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientTimeout, web

from collector.app import create_app
from collector.auth import PUBLIC, roles_of
from collector.settings import ROLES
from tests.querytools import auth, client_for, settings_with_tokens

pytestmark = pytest.mark.usefixtures("backend")  # on SQLite and on a Redis Cluster

# (method, path) -> roles that may call it. Roles, per the issue: shipper writes; sre queries,
# lists records, reads metrics; security queries and reads aggregates, anomalies, dashboard;
# admin lists sessions, exports, erases, reads the audit log.
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/logs"): frozenset({"shipper"}),
    ("GET", "/v1/records"): frozenset({"sre"}),
    ("GET", "/metrics"): frozenset({"sre"}),
    ("GET", "/v1/query"): frozenset({"sre", "security"}),
    ("GET", "/v1/aggregates"): frozenset({"security"}),
    ("GET", "/v1/admin/sessions"): frozenset({"admin"}),
    ("POST", "/v1/admin/export"): frozenset({"admin"}),
    ("POST", "/v1/admin/erase"): frozenset({"admin"}),
    ("GET", "/v1/admin/audit"): frozenset({"admin"}),
    ("GET", "/healthz"): frozenset({PUBLIC}),
}
# Areas whose role is fixed by the issue, for routes added later by other modules.
AREAS: list[tuple[str, frozenset[str]]] = [
    ("/v1/admin/", frozenset({"admin"})),
    ("/v1/anomal", frozenset({"security"})),
    ("/v1/aggregates", frozenset({"security"})),
    ("/v1/dashboard", frozenset({"security"})),
]
# Public: /healthz (the one exception) and the dashboard's login form and its
# stylesheet, which show no data; the form only turns a security token into a login cookie
# (``collector.dashboard``).
PUBLIC_PATHS = {"/healthz"}
PUBLIC_PREFIX = "/dashboard/login"


def routes(app: web.Application) -> list[tuple[str, str, Any]]:
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix") or "?"
        if route.method == "HEAD":
            continue  # the GET handler answers HEAD
        out.append((route.method, path, route.handler))
    return out


# What a permitted caller gets from each route when it sends no parameters and an empty body:
# 200 unless listed. A 400 is the handler itself refusing the empty request (so the role check
# let it through); a route answering anything else for a permitted caller fails the test.
ANSWER: dict[tuple[str, str], int] = {
    ("GET", "/v1/query"): 400,  # no q
    ("POST", "/v1/admin/export"): 400,  # no session or hint
    ("POST", "/v1/admin/erase"): 400,
    ("POST", "/dashboard/login"): 401,  # the form again: no token was typed
    ("POST", "/dashboard/logout"): 303,  # back to the form
}
PLACEHOLDERS = {"name": "app.js"}  # /dashboard/static/{name}: a real asset


def concrete(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: PLACEHOLDERS.get(m.group(1), "x"), path)


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    return settings_with_tokens(tmp_path / "data", {r: ([r], None) for r in ROLES})


def test_every_route_declares_a_role(settings: Any) -> None:
    app = create_app(settings[0])
    seen = routes(app)
    assert len(seen) >= len(EXPECTED)
    undeclared = [(m, p) for m, p, h in seen if roles_of(h) is None]
    assert undeclared == [], f"routes without @requires: {undeclared}"
    public = {p for m, p, h in seen if PUBLIC in (roles_of(h) or ())}
    wrong = {p for p in public if p not in PUBLIC_PATHS and not p.startswith(PUBLIC_PREFIX)}
    assert wrong == set(), f"only /healthz (and the dashboard login form) may be public: {wrong}"
    for method, path, handler in seen:
        declared = roles_of(handler)
        if (method, path) in EXPECTED:
            assert declared == EXPECTED[(method, path)], (method, path, declared)
        for prefix, roles in AREAS:
            if path.startswith(prefix):
                assert declared == roles, (method, path, declared)
    missing = set(EXPECTED) - {(m, p) for m, p, _ in seen}
    assert missing == set(), f"expected routes not registered: {missing}"


async def test_every_route_with_every_role_and_none(settings: Any) -> None:
    config, tokens = settings
    client = await client_for(config)
    try:
        for method, path, handler in routes(client.server.app):
            declared = roles_of(handler) or frozenset()
            url = concrete(path)
            callers: dict[str, dict[str, str]] = {r: auth(tokens[r]) for r in ROLES}
            callers["none"] = {}
            callers["unknown-token"] = auth("lethelog_" + "x" * 43)
            reached = set()
            for who, headers in callers.items():
                resp = await client.request(method, url, headers=headers, data=b"",
                                            allow_redirects=False,
                                            timeout=ClientTimeout(total=20))
                resp.close()  # the status is the answer; an event stream never ends
                answer = ANSWER.get((method, path), 200)
                if PUBLIC in declared:
                    assert resp.status == answer, (method, path, who, resp.status)
                    reached.add(who)
                    continue
                to_login = resp.headers.get("Location", "").endswith("/dashboard/login")
                if resp.status in (301, 302, 303, 307) and to_login and who == "none":
                    continue  # the dashboard page sends a caller without a login to its form
                if resp.status in (401, 403):
                    if who in ("none", "unknown-token"):
                        assert resp.status == 401, (method, path, who)
                    else:
                        assert resp.status == 403, (method, path, who)
                else:
                    assert resp.status == answer, (method, path, who, resp.status)
                    reached.add(who)
            if PUBLIC in declared:
                assert reached == set(callers), (method, path)
            else:
                assert reached == set(declared), (method, path, reached, declared)
    finally:
        await client.close()
