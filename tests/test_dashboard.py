"""The dashboard in real headless Chromium (DevTools protocol), against the API's numbers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.auth import new_token
from collector.settings import load_settings
from tests.aggtools import CITY, rec, ship, wait_for
from tests.cdp import CHROMIUM, Browser
from tests.service import REPLAY
from tests.test_detect_service import T0, replay

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
                                reason="chromium not installed (tests/run.sh installs it)")


async def service(tmp_path: Path) -> tuple[TestClient[Any, Any], dict[str, str]]:
    tokens = {name: new_token() for name in ("sec", "sre", "ship")}
    roles = {"sec": ["security"], "sre": ["sre"], "ship": ["shipper", "sre"]}
    cfg = tmp_path / "lethelog.toml"
    cfg.write_text("".join(
        f'[[tokens]]\nname = "{n}"\nroles = {orjson.dumps(roles[n]).decode()}\n'
        f'sha256 = "{h}"\n' for n, (_, h) in tokens.items()))
    settings = load_settings(cfg, env={}, overrides={
        "server.data_dir": str(tmp_path / "data"), "enrich.city_db": CITY,
        "detect.interval": "100ms", "sessions.idle_timeout": "10m", **REPLAY})
    app: web.Application = create_app(settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, {n: t for n, (t, _) in tokens.items()}


async def api(client: TestClient[Any, Any], token: str, path: str) -> Any:
    resp = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_dashboard_shows_what_the_api_says(tmp_path: Path) -> None:
    client, tok = await service(tmp_path)
    browser = Browser()
    try:
        records = replay()
        await ship(client, records, {"Authorization": f"Bearer {tok['ship']}"})

        async def scan_closed() -> bool:
            body = await api(client, tok["sec"], "/v1/anomalies")
            return any(a["kind"] == "scan" and a["end"] for a in body["anomalies"])
        await wait_for(scan_closed, timeout=15)

        total = (await api(client, tok["sec"], "/v1/aggregates"))["rows"][0]["requests"]
        countries = (await api(client, tok["sec"], "/v1/aggregates?by=country"))["rows"]
        top_country = next(r["country"] for r in countries if r["country"] != "other")
        anomaly_ids = [a["id"] for a in (await api(client, tok["sec"], "/v1/anomalies"))[
            "anomalies"]]
        assert total == len(records) and anomaly_ids

        base = str(client.make_url("")).rstrip("/")
        await browser.start(tmp_path / "chromium-profile")
        page = await browser.page()
        await page.goto(base + "/dashboard")
        assert await page.eval("location.pathname") == "/dashboard/login"
        typed = orjson.dumps(tok["sec"]).decode()
        await page.eval(f"document.getElementById('token').value = {typed};"
                        "document.querySelector('form').submit(); true")
        await page.wait("location.pathname === '/dashboard' "
                        "&& document.body.dataset.loaded === '1'")
        assert await page.eval("document.cookie") == "", "the login cookie is HttpOnly"
        shown = await page.eval("document.getElementById('kpi-requests').dataset.value")
        assert int(shown) == total
        shown_top = await page.eval(
            "document.querySelector('#top-country td.v').dataset.value")
        assert shown_top == top_country
        shown_ids = await page.eval(
            "[...document.querySelectorAll('#anomalies li[data-id]')].map(li => li.dataset.id)")
        assert shown_ids == anomaly_ids
        assert "scan" in await page.eval("document.getElementById('anomalies').textContent")
        assert "198.51.100.0/24" in await page.eval(
            "document.getElementById('anomalies').textContent")
        await page.wait("document.getElementById('live').classList.contains('on')")
        await page.screenshot(ARTIFACTS / "dashboard-laptop.png")

        # Findings people can read: a sentence with the numbers, not JSON (issue 14).
        listed = (await api(client, tok["sec"], "/v1/anomalies"))["anomalies"]
        scan = next(a for a in listed if a["kind"] == "scan" and "network" in a["dimensions"])
        sentence = await page.eval(
            f"document.querySelector('#anomalies li[data-id=\"{scan['id']}\"] .ev').textContent")
        peak = scan["peak"]
        assert sentence.startswith(
            f"{peak['requests']} requests from 198.51.100.0/24 in {peak['window_minutes']} min, "
            f"100 % 404, {peak['distinct_4xx_targets']} distinct targets"), sentence
        assert "{" not in await page.eval("document.getElementById('anomalies').textContent")
        # Clicking it narrows the charts and top lists to its minutes (5 minutes either side).
        await page.eval(
            f"document.querySelector('#anomalies li[data-id=\"{scan['id']}\"]').click(); true")
        lo, hi = scan["start_epoch"] - 300, scan["end_epoch"] + 300
        narrowed = (await api(client, tok["sec"], f"/v1/aggregates?start={lo}&end={hi}"))[
            "rows"][0]["requests"]
        assert narrowed < total
        await page.wait("Number(document.getElementById('kpi-requests').dataset.value) === "
                        f"{narrowed}")
        assert await page.eval("document.querySelectorAll('#chart rect.band').length") == 1
        assert await page.eval("document.getElementById('preset').value") == "custom"
        widths = await page.eval(
            "[...document.querySelectorAll('#top-country .bar')].map(b => b.style.width)")
        assert widths[0] == "100%" and len(widths) >= 2, "bars are scaled to the largest row"
        await page.screenshot(ARTIFACTS / "dashboard-anomaly.png")
        await page.eval("const p = document.getElementById('preset'); p.value = 'all';"
                        "p.dispatchEvent(new Event('change')); true")
        await page.wait("Number(document.getElementById('kpi-requests').dataset.value) === "
                        f"{total}")

        # Live: a new minute of traffic shows up without reloading the page.
        more = [rec(f"175.16.199.{i}", T0 + 21 * 60 + i, path="/") for i in range(25)]
        await ship(client, more, {"Authorization": f"Bearer {tok['ship']}"})
        await page.eval("window.__marker = 1; true")
        await page.wait("Number(document.getElementById('kpi-requests').dataset.value) === "
                        f"{total + 25}", timeout=15)
        assert await page.eval("window.__marker") == 1, "updated in place, not reloaded"

        phone = await browser.page(390, 844, mobile=True)
        await phone.goto(base + "/dashboard")  # the cookie is shared by the browser profile
        await phone.wait("document.body.dataset.loaded === '1'")
        assert await phone.eval("document.documentElement.scrollWidth <= window.innerWidth + 1")
        await phone.screenshot(ARTIFACTS / "dashboard-phone.png")
        assert page.errors() == [] and phone.errors() == []
    finally:
        await browser.close()
        await client.close()


async def test_dashboard_refuses_the_unauthenticated(tmp_path: Path) -> None:
    client, tok = await service(tmp_path)
    try:
        resp = await client.get("/dashboard", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/dashboard/login"
        for path in ("/dashboard/api/summary", "/dashboard/api/stream",
                     "/dashboard/static/app.js"):
            assert (await client.get(path)).status == 401, path
        assert (await client.get("/v1/anomalies")).status == 401
        bad = await client.post("/dashboard/login", data={"token": "lethelog_wrong"},
                                allow_redirects=False)
        assert bad.status == 401 and "Set-Cookie" not in bad.headers
        sre = await client.post("/dashboard/login", data={"token": tok["sre"]},
                                allow_redirects=False)
        assert sre.status == 403 and "Set-Cookie" not in sre.headers
        assert (await client.get("/dashboard/api/summary",
                                 headers={"Authorization": f"Bearer {tok['sre']}"})).status == 403
        # a forged cookie is no login
        forged = await client.get("/dashboard/api/summary",
                                  headers={"Cookie": "lethelog_dashboard=forged"})
        assert forged.status == 401
        ok = await client.post("/dashboard/login", data={"token": tok["sec"]},
                               allow_redirects=False)
        assert ok.status == 303
        cookie = ok.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
        assert tok["sec"] not in cookie
        page = await client.get("/dashboard")
        assert page.status == 200 and "default-src 'self'" in page.headers[
            "Content-Security-Policy"]
        html = await page.text()
        assert "http://" not in html and "https://" not in html, "no external assets"
        out = await client.post("/dashboard/logout", allow_redirects=False)
        assert out.status == 303
        client.session.cookie_jar.clear()
        assert (await client.get("/dashboard/api/summary")).status == 401
    finally:
        await client.close()


async def test_dashboard_responses_hold_no_session_or_small_group(tmp_path: Path) -> None:
    client, tok = await service(tmp_path)
    try:
        records = replay()
        await ship(client, records, {"Authorization": f"Bearer {tok['ship']}"})
        live = await client.get("/v1/records?limit=100000",
                                headers={"Authorization": f"Bearer {tok['ship']}"})
        sessions = {orjson.loads(line)["session"] for line in (await live.read()).splitlines()}
        assert len(sessions) > 10
        body = await api(client, tok["sec"], "/dashboard/api/summary")
        text = orjson.dumps(body).decode()
        for sid in sessions:
            assert sid not in text
        for r in records:
            assert r["client"] not in text
        assert '"session"' not in text and "session_key" not in text
        k = body["k"]
        for rows in body["top"].values():
            assert all(r["sessions"] >= k for r in rows)
        assert all(s.get("suppressed") or s["sessions"] >= k for s in body["series"])
        # the audit log records every dashboard read, never its contents
        audit = (tmp_path / "data" / "audit.log").read_text()
        assert "/dashboard/api/summary" in audit
        for sid in sessions:
            assert sid not in audit
    finally:
        await client.close()
