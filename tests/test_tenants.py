"""Tenants, the read side: every read route with every token shows only the token's sites.

Two sites, ``alphashop`` (GB visitors, paths under ``/alpha-marker``) and ``bravonews`` (US,
``/bravo-marker``), each with a scan of its own, and one scanner (SE) that touches both sites too
lightly for either: only the all-sites view (site ``"*"``) reports it. Tokens: every role for
each site and every role for all sites. The test reads the dashboard's live stream while the
traffic arrives, then calls every route of ``create_app(...)`` (the routes are enumerated: a GET
route missing from the table fails the test) with every token, and searches each answer for
the other site's markers — site name, host, paths, network, country, city, anomaly ids — and for
all-sites anomalies; permitted data must appear (so the search can fail). Every answered read is
in the audit log with the token's site scope.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp import ClientTimeout, web
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.auth import PUBLIC, new_token, roles_of
from collector.settings import ROLES, load_settings
from tests.aggtools import CITY, wait_for
from tests.backends import values_for
from tests.service import REPLAY, all_files, files_containing

T0 = 1_748_772_000.0  # 2025-06-01T10:00:00Z: a replay, judged on its own timestamps
MINUTES = 12
SCAN = range(4, 7)  # minutes with scans
ALL = "all"


@dataclass
class Site:
    name: str
    host: str
    ip: str  # its visitors' (full) address: geolocated in memory, stored masked
    net: str  # the stored (masked) network
    country: str
    city: str
    path: str
    probe: str
    anomalies: set[str] = field(default_factory=set)

    def markers(self) -> list[str | re.Pattern[str]]:
        return [self.name, self.host, self.net, self.city, self.path, self.probe,
                re.compile(rf"(?<![A-Za-z-]){self.country}(?![A-Za-z-])"), *self.anomalies]


SITES = {
    "alphashop": Site("alphashop", "alphashop.example", "81.2.69.142", "81.2.69.0", "GB",
                      "London", "alpha-marker", "alpha-probe"),
    "bravonews": Site("bravonews", "bravonews.example", "216.160.83.56", "216.160.83.0", "US",
                      "Milton", "bravo-marker", "bravo-probe"),
}
SPREAD_IP = "89.160.20.128"  # SE: scans both sites, each too lightly to be reported alone
SCOPES: dict[str, tuple[str, ...] | None] = {"1": ("alphashop",), "2": ("bravonews",),
                                             ALL: None}


def token_name(role: str, scope: str) -> str:
    return f"{role}-{scope}"  # no site name in it: answers that echo a token name stay clean


# ------------------------------------------------------------------------------ the service

def config(tmp_path: Path, idle: str = "3650d", site_idle: dict[str, str] | None = None,
           **more: Any) -> tuple[Any, dict[str, str]]:
    secrets: dict[str, str] = {}
    text = ""
    for site in SITES.values():
        text += f'[[sites]]\nname = "{site.name}"\nhosts = ["{site.host}"]\n'
        if site.name in (site_idle or {}):
            text += f'idle_timeout = "{(site_idle or {})[site.name]}"\n'
    for role in ROLES:
        for scope, sites in SCOPES.items():
            token, digest = new_token()
            name = token_name(role, scope)
            secrets[name] = token
            text += f'[[tokens]]\nname = "{name}"\nroles = ["{role}"]\nsha256 = "{digest}"\n'
            if sites is not None:
                text += "sites = [" + ", ".join(f'"{s}"' for s in sites) + "]\n"
            else:
                text += "operator = true\n"
    cfg = tmp_path / "lethelog.toml"
    cfg.write_text(text)
    settings = load_settings(cfg, env={}, overrides={
        "server.data_dir": str(tmp_path / "data"), "enrich.city_db": CITY,
        "enrich.geo_from": "full", "sessions.idle_timeout": idle,
        "aggregates.retention": "3650d", "detect.interval": "100ms",
        "tenancy.unknown_host": "reject", "audit.fsync": False, **REPLAY,
        **values_for(tmp_path / "data"), **more})
    return settings, secrets


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def traffic(site: Site, minute: int) -> list[dict[str, Any]]:
    """One minute of a site: 12 visits from 8 visitors, its own scan, the thin shared scan."""
    t = T0 + 60 * minute
    ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.{} Safari/537.36"
    out = [{"client": site.ip, "time": t + i * 4.5, "method": "GET", "host": site.host,
            "target": f"/{site.path}/page-{i % 4}", "status": 200, "bytes": 500,
            "user_agent": ua.format(i % 8)} for i in range(12)]
    if minute in SCAN:
        out += [{"client": site.ip, "time": t + i * 1.9 + 0.5, "method": "GET",
                 "host": site.host, "target": f"/{site.probe}-{minute}-{i}-{'abcdef'[i % 6]}x.php",
                 "status": 404, "bytes": 150, "user_agent": "zgrab/0.x"} for i in range(30)]
        out += [{"client": SPREAD_IP, "time": t + i * 9 + 1, "method": "GET", "host": site.host,
                 "target": f"/wide-{site.name[0]}-{minute}-{i}{'pqrst'[i]}.asp", "status": 404,
                 "bytes": 90, "user_agent": "masscan/1.3"} for i in range(5)]
    return sorted(out, key=lambda r: float(r["time"]))


async def ship(client: TestClient[Any, Any], token: str, records: list[dict[str, Any]]) -> None:
    resp = await client.post("/v1/logs", data=b"\n".join(orjson.dumps(r) for r in records),
                             headers={"Content-Type": "application/x-ndjson", **auth(token)})
    body = await resp.json()
    assert resp.status == 200 and body["rejected"] == 0, body


async def read_stream(client: TestClient[Any, Any], token: str, stop: asyncio.Event
                      ) -> tuple[int, bytes]:
    """The dashboard's live stream as seen by ``token`` until ``stop``."""
    resp = await client.get("/dashboard/api/stream", headers=auth(token),
                            timeout=ClientTimeout(total=None, sock_read=None))
    if resp.status != 200:
        return resp.status, await resp.read()
    buf = bytearray()
    try:
        while not stop.is_set():
            try:
                chunk = await asyncio.wait_for(resp.content.readany(), 0.2)
            except TimeoutError:
                continue
            if not chunk:
                break
            buf += chunk
    finally:
        resp.close()
    return 200, bytes(buf)


# ------------------------------------------------------------------------------ the route table

@dataclass
class Call:
    method: str
    url: str
    expect: tuple[str, ...] = ()  # kinds of own-site markers a permitted answer must show
    body: dict[str, Any] | None = None


# Routes that serve stored data (each answered call writes one audit entry) and routes that
# serve none (a static page, its assets, health, process metrics): together, every route.
AUDITED = {"/v1/records", "/v1/query", "/v1/aggregates", "/v1/anomalies",
           "/dashboard/api/summary", "/dashboard/api/stream", "/v1/admin/sessions",
           "/v1/admin/export", "/v1/admin/erase", "/v1/admin/audit"}
NO_DATA = {"/healthz", "/metrics", "/dashboard", "/dashboard/", "/dashboard/static/{name}",
           "/dashboard/login", "/dashboard/logout", "/v1/logs"}


def q(text: str, **more: str) -> str:
    return "/v1/query?" + urlencode({"q": text, **more})


def table(session_ids: list[str]) -> dict[tuple[str, str], list[Call]]:
    exports = [Call("POST", "/v1/admin/export", ("site", "host"), {"session": s})
               for s in session_ids]
    return {
        ("GET", "/v1/records"): [Call("GET", "/v1/records?limit=10000",
                                      ("path", "site", "country", "city", "net", "host"))],
        ("GET", "/v1/query"): [
            Call("GET", q("| count by site"), ("site",)),
            Call("GET", q("| count by site", source="aggregates"), ("site",)),
            Call("GET", q("| count by country", source="aggregates", format="csv"),
                 ("country",)),
            Call("GET", q("| count by country, city", format="csv"), ("country", "city")),
            Call("GET", q("| distinct path"), ("path", "probe")),
            Call("GET", q("| distinct host, site", format="json"), ("host", "site")),
            Call("GET", q("status >= 400 | count by ip, site"), ("net",)),
            Call("GET", q("| p50 bytes by site"), ("site",)),
            Call("GET", q("status > 0 or site != \"zz\" or not (status = 0) | limit 2000"),
                 ("path", "site", "country")),
            Call("GET", q("session != \"x\" | count by site, session"), ("site",)),
        ],
        ("GET", "/v1/aggregates"): [
            Call("GET", "/v1/aggregates"),
            Call("GET", "/v1/aggregates?by=site", ("site",)),
            Call("GET", "/v1/aggregates?by=country", ("country",)),
            Call("GET", "/v1/aggregates?by=site,network", ("site", "net")),
            Call("GET", "/v1/aggregates?by=path_template&limit=100"),
            Call("GET", "/v1/aggregates?by=source"),
        ],
        ("GET", "/v1/anomalies"): [Call("GET", "/v1/anomalies", ("anomaly",)),
                                   Call("GET", "/v1/anomalies?status=closed", ("anomaly",))],
        ("GET", "/dashboard/api/summary"): [
            Call("GET", "/dashboard/api/summary", ("country", "anomaly", "net")),
            Call("GET", f"/dashboard/api/summary?start={T0:.0f}&end={T0 + 3600:.0f}",
                 ("country", "anomaly"))],
        ("GET", "/v1/admin/sessions"): [Call("GET", "/v1/admin/sessions?limit=1000", ("site",))],
        ("POST", "/v1/admin/export"): exports,
        ("GET", "/v1/admin/audit"): [Call("GET", "/v1/admin/audit?limit=10000")],
        ("GET", "/metrics"): [Call("GET", "/metrics")],
        ("GET", "/healthz"): [Call("GET", "/healthz")],
        ("GET", "/dashboard"): [Call("GET", "/dashboard")],
        ("GET", "/dashboard/"): [Call("GET", "/dashboard/")],
        ("GET", "/dashboard/login"): [Call("GET", "/dashboard/login"),
                                      Call("GET", "/dashboard/login?style")],
        ("GET", "/dashboard/static/{name}"): [Call("GET", "/dashboard/static/app.js"),
                                              Call("GET", "/dashboard/static/app.css")],
        # read while the traffic arrived (read_stream); listed so the table covers it
        ("GET", "/dashboard/api/stream"): [],
    }


def routes(app: web.Application) -> list[tuple[str, str, Any]]:
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or "?"
        if route.method != "HEAD":
            out.append((route.method, path, route.handler))
    return out


def held(scope: str) -> list[Site]:
    sites = SCOPES[scope]
    return list(SITES.values()) if sites is None else [SITES[s] for s in sites]


def own_markers(site: Site, kind: str) -> list[str | re.Pattern[str]]:
    if kind == "anomaly":
        return [*sorted(site.anomalies)] or ["(no anomaly of this site)"]
    if kind == "country":
        return [re.compile(rf"(?<![A-Za-z-]){site.country}(?![A-Za-z-])")]
    return [str(getattr(site, "name" if kind == "site" else kind))]


def leaks(text: str, scope: tuple[str, ...] | None, star: set[str]) -> list[str]:
    """Markers in ``text`` of sites outside ``scope`` (and all-sites anomalies for a scope)."""
    if scope is None:
        return []
    found: list[str] = []
    for name, site in SITES.items():
        if name in scope:
            continue
        for m in site.markers():
            if isinstance(m, re.Pattern):
                if m.search(text):
                    found.append(f"{name}:{m.pattern}")
            elif m in text:
                found.append(f"{name}:{m}")
    found += [f"*:{a}" for a in star if a in text]
    if re.search(r'"site":\s*"\*"', text):
        found.append('*:"site":"*"')
    return found


# ------------------------------------------------------------------------------ the test

@pytest.mark.usefixtures("backend")  # on SQLite and on a Redis Cluster (tests/backends.py)
async def test_every_read_route_with_every_token_shows_only_its_sites(tmp_path: Path) -> None:
    for s in SITES.values():  # found anew on each backend
        s.anomalies.clear()
    settings, tok = config(tmp_path)
    app = create_app(settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        await _run(client, app, tok, tmp_path)
    finally:
        await client.close()


async def _run(client: TestClient[Any, Any], app: web.Application, tok: dict[str, str],
               tmp_path: Path) -> None:
    answered: Counter[tuple[str, str]] = Counter()  # (token, endpoint) -> answered reads

    # 1. the live stream, for every token, while the traffic of both sites arrives
    stop = asyncio.Event()
    streams = {name: asyncio.create_task(read_stream(client, token, stop))
               for name, token in tok.items()}
    await asyncio.sleep(0.3)
    for minute in range(MINUTES):  # minute by minute, so no site's minute is evaluated early
        for i, site in enumerate(SITES.values(), 1):
            await ship(client, tok[token_name("shipper", str(i))], traffic(site, minute))

    async def anomalies(scope: str) -> list[dict[str, Any]]:
        resp = await client.get("/v1/anomalies", headers=auth(tok[token_name("security",
                                                                            scope)]))
        assert resp.status == 200
        answered[(token_name("security", scope), "/v1/anomalies")] += 1
        got: list[dict[str, Any]] = (await resp.json())["anomalies"]
        return got

    async def all_closed() -> bool:
        got = await anomalies(ALL)
        return {a["site"] for a in got if a["status"] == "closed" and a["kind"] == "scan"} == {
            "alphashop", "bravonews", "*"}
    await wait_for(all_closed, timeout=20, step=0.2)
    found = await anomalies(ALL)
    for x in found:
        if x["site"] in SITES:
            SITES[x["site"]].anomalies.add(x["id"])
    star = {x["id"] for x in found if x["site"] == "*"}
    for name, site in SITES.items():
        scans = [x["dimensions"] for x in found if x["site"] == name and x["kind"] == "scan"]
        # by network, and by the network's AS where the GeoIP default answers AS numbers
        assert [d for d in scans if "asn" not in d] == [{"network": site.net + "/24"}], found
        assert all(set(d) == {"asn"} for d in scans if "asn" in d), found
    star_dims = [x["dimensions"] for x in found if x["site"] == "*"]
    assert [d for d in star_dims if "asn" not in d] == [{"network": "89.160.20.0/24"}], \
        "the thin shared scan: all-sites view only"
    assert all(set(d) == {"asn"} for d in star_dims if "asn" in d), found
    assert {x["site"] for x in found} == {"alphashop", "bravonews", "*"}, found
    await asyncio.sleep(0.5)
    stop.set()
    seen_streams = {name: await task for name, task in streams.items()}

    problems: list[str] = []
    for name, (status, body) in seen_streams.items():
        role, scope = name.rsplit("-", 1)
        text = body.decode()
        if role != "security":
            if status not in (401, 403):
                problems.append(f"{name} stream: status {status}")
            continue
        answered[(name, "/dashboard/api/stream")] += 1
        problems += [f"{name} /dashboard/api/stream leaks {m}"
                     for m in leaks(text, SCOPES[scope], star)]
        for site in held(scope):
            for a in site.anomalies:
                if f"event: anomaly_opened\ndata: {{\"type\":\"anomaly_opened\"," \
                   f"\"anomaly\":{{\"id\":\"{a}\"" not in text:
                    problems.append(f"{name} stream: own anomaly {a} not announced")
        if SCOPES[scope] is None and not all(a in text for a in star):
            problems.append(f"{name} stream: all-sites anomaly not announced")

    # 2. every route, every token
    admin_all = tok[token_name("admin", ALL)]
    resp = await client.get("/v1/admin/sessions?limit=1000", headers=auth(admin_all))
    sessions = (await resp.json())["sessions"]
    answered[(token_name("admin", ALL), "/v1/admin/sessions")] += 1
    assert {s["site"] for s in sessions} == set(SITES)
    calls = table([s["id"] for s in sessions])
    declared = routes(app)
    uncovered = [(m, p) for m, p, _ in declared if m == "GET" and (m, p) not in calls]
    assert uncovered == [], f"GET routes missing from the read table: {uncovered}"
    unclassified = [p for _, p, _ in declared if p not in AUDITED | NO_DATA]
    assert unclassified == [], f"routes neither audited nor data-free: {unclassified}"
    not_in_table = [(m, p) for m, p, _ in declared if m == "POST"
                    and p in AUDITED and (m, p) not in calls and p != "/v1/admin/erase"]
    assert not_in_table == [], not_in_table
    handlers = {(m, p): h for m, p, h in declared}

    shown: Counter[tuple[str, str, str]] = Counter()  # (url, token, marker) seen
    for (method, path), variants in calls.items():
        allowed = roles_of(handlers[(method, path)]) or frozenset()
        for call in variants:
            for name, token in tok.items():
                role, scope = name.rsplit("-", 1)
                kw: dict[str, Any] = {"headers": auth(token), "allow_redirects": False}
                if call.body is not None:
                    kw["data"] = orjson.dumps(call.body)
                resp = await client.request(method, call.url, **kw)
                text = (await resp.read()).decode("utf-8", "replace")
                permitted = PUBLIC in allowed or role in allowed
                where = f"{name} {method} {call.url}"
                if not permitted:
                    if resp.status not in (401, 403):
                        problems.append(f"{where}: {resp.status} for a role not allowed")
                elif resp.status != 200:
                    problems.append(f"{where}: {resp.status} {text[:200]}")
                elif path in AUDITED:
                    answered[(name, path)] += 1
                problems += [f"{where} leaks {m}" for m in leaks(text, SCOPES[scope], star)]
                if not permitted or resp.status != 200:
                    continue
                mine = held(scope)
                if path == "/v1/admin/export":  # only the sessions of the token's own sites
                    sid = (call.body or {}).get("session")
                    site_of = next(s["site"] for s in sessions if s["id"] == sid)
                    mine = [x for x in mine if x.name == site_of]
                    if not mine and orjson.loads(text)["sessions"] != []:
                        problems.append(f"{where}: exported another site's session")
                for site in mine:
                    for kind in call.expect:
                        if not any(m.search(text) if isinstance(m, re.Pattern) else m in text
                                   for m in own_markers(site, kind)):
                            problems.append(f"{where}: own {kind} of {site.name} missing")
                        else:
                            shown[(call.url, name, kind)] += 1
                if scope == ALL and "anomaly" in call.expect and not all(a in text for a in star):
                    problems.append(f"{where}: all-sites anomaly missing for an all-sites token")

    # 3. erasure is scoped too: a site's admin cannot erase another site's session
    for s in sessions:
        for scope in ("1", "2"):
            if s["site"] in (SCOPES[scope] or ()):
                continue
            name = token_name("admin", scope)
            resp = await client.post("/v1/admin/erase", data=orjson.dumps({"session": s["id"]}),
                                      headers=auth(tok[name]))
            body = await resp.json()
            answered[(name, "/v1/admin/erase")] += 1
            assert resp.status == 200 and body["records_deleted"] == 0 and body[
                "sessions"] == [], body
    resp = await client.get("/v1/admin/sessions?limit=1000", headers=auth(admin_all))
    answered[(token_name("admin", ALL), "/v1/admin/sessions")] += 1
    assert len((await resp.json())["sessions"]) == len(sessions), "nothing was erased"

    assert problems == [], "\n".join(problems[:60])
    assert len(shown) >= 100, "permitted data appeared in the answers"

    # 4. the audit log: one entry per answered read, carrying the token's site scope
    lines = (tmp_path / "data" / "audit.log").read_text().splitlines()
    entries = [orjson.loads(x) for x in lines]
    logged: Counter[tuple[str, str]] = Counter()
    for e in entries:
        role, scope = e["token"].rsplit("-", 1)
        sites = SCOPES[scope]
        assert e["sites"] == (sorted(sites) if sites is not None else None), e
        logged[(e["token"], e["endpoint"])] += 1
    assert logged == answered, (logged - answered, answered - logged)
    assert {e["endpoint"] for e in entries} == AUDITED, "every kind of read was audited"


async def test_site_a_forgets_after_its_5s_idle_timeout_site_b_keeps_its_hour(
        tmp_path: Path) -> None:
    settings, tok = config(tmp_path, idle="1h", site_idle={"alphashop": "5s"},
                           **{"sessions.sweep_interval": "200ms"})
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        now = time.time()
        for i, site in enumerate(SITES.values(), 1):
            await ship(client, tok[token_name("shipper", str(i))], [
                {"client": site.ip, "time": now, "method": "GET", "host": site.host,
                 "target": f"/{site.path}/idle", "status": 200, "bytes": 1,
                 "user_agent": "curl/8"}])

        async def live() -> list[tuple[str, str]]:
            resp = await client.get("/v1/records?limit=100", headers=auth(tok["sre-all"]))
            rows = [orjson.loads(x) for x in (await resp.read()).splitlines() if x]
            return sorted((r["site"], r["path"]) for r in rows)

        both = [("alphashop", "/alpha-marker/idle"), ("bravonews", "/bravo-marker/idle")]
        assert await live() == both
        await asyncio.sleep(max(0.0, now + 3.5 - time.time()))
        assert await live() == both, "not before its 5 s"

        async def a_gone() -> bool:
            return await live() == [("bravonews", "/bravo-marker/idle")]
        await wait_for(a_gone, timeout=4.0, step=0.1)
        assert time.time() - now >= 5.0
        data = all_files(tmp_path / "data")
        assert files_containing(data, ["alpha-marker"]) == {}, "A's record left no trace"
        assert files_containing(data, ["bravo-marker"]) != {}
    finally:
        await client.close()
