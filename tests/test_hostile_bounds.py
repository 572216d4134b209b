"""Issue 16, reproductions 4 and 7: bounded work for any timestamp.

4. a first record stamped 0001-01-01 plus one stamped now made the detectors step through every
   minute since year 1 (~6 hours of CPU): ``serve`` now refuses records older than
   ``sessions.max_age`` (``import`` takes any age), and the detector cursors skip empty time;
7. a record stamped 290 s ahead (within the allowed skew) moved its shipper's log clock, so with
   a 5 s idle timeout every later record of that shipper was deleted at once.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import polars as pl

from collector.appkeys import DETECTOR
from collector.detect.runner import CHUNK, EMPTY_KEEP
from collector.sessions import SessionTable
from collector.settings import Settings
from collector.store.sessionize import assign
from tests.aggtools import rec, ship, start

YEAR_1 = "0001-01-01T00:00:00Z"
ROOT = Path(__file__).resolve().parents[1]


def test_default_max_age_is_a_few_days() -> None:
    assert 86400 <= Settings().sessions.max_age <= 7 * 86400


async def test_serve_refuses_records_older_than_max_age(tmp_path: Path) -> None:
    client = await start(tmp_path / "data", **{"sessions.max_age": "3d"})
    try:
        now = time.time()
        body = b"\n".join(orjson.dumps(r) for r in [
            rec("203.0.113.5", now), {**rec("203.0.113.6", 0), "time": YEAR_1},
            rec("203.0.113.7", now - 10 * 86400), rec("203.0.113.8", now - 86400)])
        resp = await client.post("/v1/logs", data=body,
                                 headers={"Content-Type": "application/x-ndjson"})
        assert resp.status == 200
        out = await resp.json()
        assert out["accepted"] == 2 and out["rejected"] == 2, out
        assert [e["line"] for e in out["errors"]] == [2, 3]
        first = out["errors"][0]["error"]
        assert "0001-01-01T00:00:00" in first and "older than sessions.max_age" in first
        assert "lethelog import" in first
        assert all("203.0.113" not in e["error"] for e in out["errors"])
    finally:
        await client.close()


def test_import_takes_any_age(tmp_path: Path) -> None:
    line = ('203.0.113.9 - - [01/Jan/0001:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "x"\n'
            '203.0.113.9 - - [01/Jan/1970:00:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "x"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-m", "collector", "import", "-", "--data-dir",
                        str(tmp_path / "d"), "--format", "combined"], input=line.encode(),
                       capture_output=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert re.search(r"^accepted\s+2$", r.stdout.decode(), re.M), r.stdout.decode()


async def test_detectors_skip_empty_time(tmp_path: Path) -> None:
    """Year 1 then now: the detectors evaluate about a day of minutes, not 2,000 years."""
    client = await start(tmp_path / "data", **{"sessions.max_age": "0s",
                                               "detect.interval": "1h"})
    try:
        now = time.time()
        await ship(client, [{**rec("203.0.113.5", 0), "time": YEAR_1}])
        await ship(client, [rec("203.0.113.6", now - 120), rec("203.0.113.6", now)])
        runner = client.server.app[DETECTOR]
        # before the fix this walked ~10⁹ minutes (hours); give it a minute at most
        done = await asyncio.wait_for(runner.tick(), 60)
        # per cursor: the minutes of the first chunk read, then EMPTY_KEEP of zeros before now
        minutes = CHUNK + EMPTY_KEEP // 60
        sites = len(runner.cursors)  # "default" and the all-sites view
        assert done <= sites * (minutes + 10), done
        assert runner.cursors["default"] >= now - 600
    finally:
        await client.close()


# ------------------------------------------------------------------ 7: future stamps


def test_future_record_never_moves_the_log_clock_past_the_wall() -> None:
    table = SessionTable(idle_timeout=5)
    wall = 1_800_000_000.0
    table.touch("ahead", wall + 290, wall, "edge", "default")
    assert table.clocks["edge"] <= wall
    later = table.touch("later", wall + 1, wall + 1, "edge", "default").session
    ended = table.expire(wall + 2)
    assert later not in ended and later.sid in table.by_sid


def test_future_record_in_a_columnar_batch_never_moves_the_log_clock() -> None:
    table = SessionTable(idle_timeout=5)
    wall = 1_800_000_000.0
    df = pl.DataFrame({"session_key": ["ahead", "later"], "time": [wall + 290, wall],
                       "source": ["edge", "edge"], "site": ["default", "default"],
                       "aggregate_only": [False, False]})
    assign(df, table, wall)
    assert table.clocks["edge"] <= wall
    assert table.expire(wall + 2) == []
    assert {s.key for s in table.by_sid.values()} == {"ahead", "later"}


async def test_future_record_does_not_end_its_shippers_sessions(tmp_path: Path) -> None:
    client = await start(tmp_path / "data", **{"sessions.idle_timeout": "5s",
                                               "sessions.sweep_interval": "100ms"})
    try:
        now = time.time()
        await ship(client, [rec("203.0.113.5", now + 290, path="/ahead")])
        await ship(client, [rec("198.51.100.6", time.time(), path="/later")])
        await asyncio.sleep(1.5)  # several sweeps
        resp = await client.get("/v1/records?limit=100")
        paths = {orjson.loads(x)["path"] for x in (await resp.read()).splitlines() if x}
        assert "/later" in paths, paths
    finally:
        await client.close()
