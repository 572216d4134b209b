"""Detection cursors per site: a lagging shipper's minutes wait for its own records.

Two sites go through ``POST /v1/logs`` into the real store; the detector runner of the running
app is ticked by hand (its own task sleeps for an hour). Site A's shipper sends each minute as it
happens, site B's ten minutes later: B's credential stuffing, in its lagging stretch, must still
be reported for B (the runner before per-site cursors missed it: B's minutes were evaluated on A's
clock). A site that falls silent holds the all-sites view back for the live window at most, and
never holds back the other site. The cursors survive a restart.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.appkeys import DETECTOR
from collector.detect import runner as runner_mod
from collector.detect.book import AnomalyBook
from collector.detect.minute import SiteClock
from collector.detect.runner import LIVE_WINDOW, QUIET, DetectorRunner
from collector.settings import load_settings
from tests.aggtools import CITY, COUNTRY_NETS, rec, ship
from tests.service import REPLAY, make_settings

T0 = 1_748_772_000.0  # 2025-06-01T10:00:00Z: log time of a replay (not live)
A, B = "alpha", "bravo"
HOSTS = {A: "alpha.example", B: "bravo.example"}
LAG = 10  # minutes site B's shipper is behind
STUFFING = range(14, 17)  # site B's credential stuffing, minutes after T0
WINDOW = 3.0  # the live window of the silence test (seconds of wall clock)


def minute(site: str, m: int, stuffing: bool = False) -> list[dict[str, Any]]:
    """30 visits; with ``stuffing``, 40 failed logins from one network (many clients)."""
    rng = random.Random(f"{site}{m}")
    nets = list(COUNTRY_NETS.values())
    t = T0 + 60 * m
    out = [rec(f"{rng.choice(nets)}.{rng.randrange(1, 40)}", t + i * 1.9, host=HOSTS[site],
               path=rng.choice(["/", "/shop", "/about", "/cart"])) for i in range(30)]
    if stuffing:
        out += [rec(f"203.0.113.{i + 1}", t + i * 1.4 + 0.5, status=401, host=HOSTS[site],
                    path="/login", method="POST", ua=f"stuffer/{m}.{i}") for i in range(40)]
    return sorted(out, key=lambda r: float(r["time"]))


async def serve(tmp_path: Path) -> TestClient[Any, Any]:
    cfg = tmp_path / "lethelog.toml"
    cfg.write_text("".join(f'[[sites]]\nname = "{s}"\nhosts = ["{h}"]\n'
                           for s, h in HOSTS.items()))
    settings = load_settings(cfg, env={}, overrides={
        "server.data_dir": str(tmp_path / "data"), "enrich.city_db": CITY,
        "sessions.idle_timeout": "10m", "detect.interval": "1h",
        "tenancy.unknown_host": "reject", **REPLAY})
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    c = await serve(tmp_path)
    yield c
    await c.close()


def runner(client: TestClient[Any, Any]) -> DetectorRunner:
    return client.server.app[DETECTOR]


async def test_a_lagging_sites_incident_is_reported_for_that_site(
        client: TestClient[Any, Any], tmp_path: Path) -> None:
    det = runner(client)
    total = 25
    for m in range(total + LAG):
        if m < total:
            await ship(client, minute(A, m))
        if m >= LAG:  # B's shipper sends minute m - LAG only now
            await ship(client, minute(B, m - LAG, stuffing=m - LAG in STUFFING))
        await det.tick()
        if m == 20:  # A is at minute 20, B at 10: B's incident minutes are not evaluated yet
            assert det.cursors[A] >= T0 + 18 * 60
            assert det.cursors[B] <= T0 + 10 * 60 < T0 + STUFFING[0] * 60
            assert det.cursor is not None and det.cursor <= det.cursors[B]

    found = await det.list(None, status="all")
    auth = [(a["site"], a["dimensions"]) for a in found if a["kind"] == "auth_failures"]
    assert auth == [(B, {"path_template": "/login"})], found
    a = next(a for a in found if a["kind"] == "auth_failures")
    assert a["start_epoch"] == T0 + STUFFING[0] * 60
    assert a["evidence"]["failures"] >= 20
    assert a["evidence"]["top_networks"][0]["value"] == "203.0.113.0/24"
    assert a["status"] == "closed" and a["end_epoch"] == T0 + (STUFFING[-1] + 1) * 60
    assert {x["kind"] for x in found} == {"auth_failures"}, found

    # the cursors are kept in anomalies.db: a restart resumes there and reports nothing twice
    before = dict(det.cursors)
    await client.close()
    again = await serve(tmp_path)
    try:
        det2 = runner(again)
        assert det2.cursors == before
        await det2.tick()
        assert det2.cursors == before
        assert sorted(x["id"] for x in await det2.list(None)) == sorted(x["id"] for x in found)
        assert det2.engine.detectors.keys() == {A, B}, "baselines re-learnt for both sites"
        assert det2.engine.summed is not None
    finally:
        await again.close()


async def test_a_silent_site_holds_back_the_all_sites_view_only_for_the_live_window(
        client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "LIVE_WINDOW", WINDOW)
    det = runner(client)
    for m in range(5):
        await ship(client, minute(A, m) + minute(B, m))
    await det.tick()
    b_end = det.cursors[B]
    assert T0 + 3 * 60 <= b_end <= T0 + 4 * 60  # B's newest minute is 4

    for m in range(5, 16):  # B falls silent, A carries on
        await ship(client, minute(A, m))
    await det.tick()
    assert det.cursors[A] >= T0 + 14 * 60, "A is not held back by the silent site"
    assert det.cursor == b_end, "the all-sites view waits for B within the live window"

    await asyncio.sleep(WINDOW + 0.1)  # B has sent nothing for longer than the live window
    for m in (16, 17):
        await ship(client, minute(A, m))
    await det.tick()
    assert det.cursors[A] >= T0 + 16 * 60
    assert det.cursor == det.cursors[A], "B no longer holds the all-sites view back"
    assert det.cursors[B] == b_end, "B's own minutes still wait for B's records (old log time)"


def test_a_live_site_gone_quiet_runs_on_the_wall_clock_a_lagging_one_waits(
        tmp_path: Path) -> None:
    wall = 29_666_667 * 60.0  # a minute's start, in 2026
    det = DetectorRunner(make_settings(tmp_path / "data"), object(), clock=lambda: wall)
    try:
        ends = det.site_ends({
            # live, in real time, shipping: its newest minute ends the evaluation
            "rt": SiteClock(int(wall - 3600), int(wall - 60), wall - 1, ()),
            # live, 10 minutes behind, still shipping: waits for its own records
            "lag": SiteClock(int(wall - 3600), int(wall - 600), wall - 1, ()),
            # live, silent for longer than QUIET (an outage): runs on with the wall clock
            "out": SiteClock(int(wall - 3600), int(wall - 600), wall - 540, ()),
            # an old replay that stopped an hour ago: judged on its own timestamps only, and
            # no longer active (it does not hold the all-sites view back)
            "old": SiteClock(int(T0), int(T0 + 600), wall - LIVE_WINDOW - 1, ()),
        })
    finally:
        det._pool.shutdown()
    assert QUIET < 540 < LIVE_WINDOW
    # known to the minute (no shipper clock): the minute before the newest one waits for grace
    assert ends["rt"] == wall - 120
    assert ends["lag"] == wall - 660
    assert ends["out"] == wall - 120  # wall clock: the silence is seen as minutes of zero
    assert ends["old"] == T0 + 600 - 60
    assert ends["*"] == wall - 660, "the all-sites view waits for the slowest active site"
    assert det.site_clock(SiteClock(0, 600, 0.0, ("edge",)), {"edge": 632.5}) == 632.5
    assert det.site_clock(SiteClock(0, 600, 0.0, ("edge",)), {"edge": 900.0}) < 660


def test_an_older_books_single_cursor_is_read_back(tmp_path: Path) -> None:
    book = AnomalyBook(tmp_path / "anomalies.db")
    book.open()
    try:
        book.conn.execute("INSERT INTO state (key, value) VALUES ('cursor', ?)",  # type: ignore
                          (T0,))
        assert book.cursors() == ({}, int(T0))
        book.save([], T0, {A: int(T0) + 60, "*": int(T0)})
        assert book.cursors() == ({A: int(T0) + 60, "*": int(T0)}, None)
    finally:
        book.close()


def test_quiet_is_a_setting(tmp_path: Path) -> None:
    """``detect.quiet`` replaces the built-in two minutes: with 10 minutes, a site silent for 9
    is still waited for; silent for 11, its outage runs on with the wall clock."""
    assert make_settings(tmp_path / "a").detect.quiet == QUIET == 120.0
    wall = 29_666_667 * 60.0
    det = DetectorRunner(make_settings(tmp_path / "b", **{"detect.quiet": "10m"}), object(),
                         clock=lambda: wall)
    try:
        ends = det.site_ends({
            "nine": SiteClock(int(wall - 3600), int(wall - 600), wall - 540, ()),
            "eleven": SiteClock(int(wall - 3600), int(wall - 600), wall - 660, ()),
        })
    finally:
        det._pool.shutdown()
    assert ends["nine"] == wall - 660  # still waiting for its own records
    assert ends["eleven"] >= wall - 120  # gone quiet: its silence counts as minutes of zero
