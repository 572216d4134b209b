"""`lethelog ship` against a real `lethelog serve`: kill -9 either side, nothing acknowledged lost.

Duplicates: the shipper is at-least-once. A batch the service committed but whose 2xx (or whose
checkpoint write) did not happen before a crash is sent again, so each crash may duplicate at
most one batch; the tests count the duplicates and check that bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

import tests.service as service_mod
from tests.service import ROOT, ServiceProcess, free_port

BATCH = 250


def write_log(path: Path, n: int, tag: str = "s", start: int = 0) -> None:
    now = time.time()
    with open(path, "a") as f:
        for i in range(start, start + n):
            t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now - 120 + i * 0.001))
            f.write(f'85.181.{i // 250 % 250}.{i % 250 + 1} - - [{t}] "GET /{tag}/{i:07d} '
                    f'HTTP/1.1" 200 5 "-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"\n')


def ship(*args: str, stdin: Any = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "collector", "ship", *args,
                             "--progress", "never", "--max-backoff", "0.3s"],
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)


def checkpoint(state: Path) -> dict[str, Any]:
    for p in state.glob("*.json"):
        try:
            return dict(json.loads(p.read_bytes()))
        except ValueError:
            pass
    return {"lines": 0, "offset": 0}


def wait_for_lines(state: Path, at_least: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while checkpoint(state)["lines"] < at_least:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "ship made no progress"
        time.sleep(0.005)


def stored_paths(db: Path, tag: str = "s") -> Counter[str]:
    with sqlite3.connect(db) as conn:
        return Counter(p for (p,) in conn.execute(
            "SELECT path FROM records WHERE path LIKE ?", (f"/{tag}/%",)))


def snapshot(data_dir: Path, into: Path) -> Path:
    """Copy the SQLite file and its WAL as a crash left them; opening the copy recovers it."""
    into.mkdir()
    for name in ("lethelog.db", "lethelog.db-wal", "lethelog.db-shm"):
        if (data_dir / name).exists():
            shutil.copy2(data_dir / name, into / name)
    return into / "lethelog.db"


@pytest.fixture
def fixed_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """ServiceProcess picks its port with free_port(): pin it so a restart reuses the URL."""
    port = free_port()
    monkeypatch.setattr(service_mod, "free_port", lambda: port)
    return port


ENV = {"LETHELOG_SESSIONS_IDLE_TIMEOUT": "1d"}


def test_kill9_service_mid_ship_restart_loses_nothing_acknowledged(
        tmp_path: Path, fixed_port: int) -> None:
    total = 20_000
    log, state, data = tmp_path / "big.log", tmp_path / "state", tmp_path / "lethelog-data"
    write_log(log, total)
    svc = ServiceProcess(data, tmp_path / "service1.log", env=ENV)
    shipper = ship(str(log), "--url", svc.url, "--state-dir", str(state),
                   "--batch-lines", str(BATCH))
    try:
        wait_for_lines(state, 8 * BATCH, shipper)
        svc.proc.send_signal(signal.SIGKILL)
        svc.proc.wait()
        acked = checkpoint(state)["lines"]  # the service is dead: this can't move now
        crashed = stored_paths(snapshot(data, tmp_path / "snap"))
        assert acked < total, "the kill came mid-ship"
        missing = [i for i in range(acked) if f"/s/{i:07d}" not in crashed]
        assert missing == [], f"{len(missing)} acknowledged records lost in the crash"
        time.sleep(0.5)  # the shipper retries against a dead port meanwhile
        svc = ServiceProcess(data, tmp_path / "service2.log", env=ENV)
        _, err = shipper.communicate(timeout=120)
        assert shipper.returncode == 0, err.decode()
        assert b"retrying" in err, "the shipper saw the outage and retried"
    finally:
        if shipper.poll() is None:
            shipper.kill()
        assert svc.stop() == 0
    paths = stored_paths(data / "lethelog.db")
    assert {f"/s/{i:07d}" for i in range(total)} == set(paths), "the rest was shipped"
    duplicates = sum(n - 1 for n in paths.values())
    assert duplicates <= BATCH, f"{duplicates} duplicates: more than the one batch in flight"
    assert checkpoint(state)["lines"] == total
    print(f"\nkill -9 service: acknowledged before kill {acked}, stored {sum(paths.values())}, "
          f"duplicates {duplicates}")


def test_kill9_shipper_resumes_after_last_acknowledged_batch(tmp_path: Path) -> None:
    total = 12_000
    log, state, data = tmp_path / "big.log", tmp_path / "state", tmp_path / "lethelog-data"
    write_log(log, total)
    svc = ServiceProcess(data, tmp_path / "service.log", env=ENV)
    try:
        first = ship(str(log), "--url", svc.url, "--state-dir", str(state),
                     "--batch-lines", str(BATCH))
        wait_for_lines(state, 6 * BATCH, first)
        first.send_signal(signal.SIGKILL)
        first.wait()
        acked = checkpoint(state)["lines"]
        assert 0 < acked < total
        second = ship(str(log), "--url", svc.url, "--state-dir", str(state),
                      "--batch-lines", str(BATCH))
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err.decode()
        assert f"resuming after line {acked}".encode() in err
        summary = err.decode().strip().splitlines()[-1]
        assert f"{total - acked:,} lines" in summary, summary
    finally:
        assert svc.stop() == 0
    paths = stored_paths(data / "lethelog.db")
    assert {f"/s/{i:07d}" for i in range(total)} == set(paths)
    duplicates = sum(n - 1 for n in paths.values())
    assert duplicates <= BATCH
    print(f"\nkill -9 shipper: resumed after {acked}, duplicates {duplicates}")


# --------------------------------------------------------------------------- retry behaviour


class Flaky:
    """A fault-injecting proxy in front of the real service: scripted answers, then forward."""

    def __init__(self, upstream: str, script: list[tuple[int, dict[str, str]]]) -> None:
        self.upstream = upstream
        self.script = list(script)
        self.seen: list[tuple[float, str | None, str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp has inflated a gzip body already
        self.seen.append((time.monotonic(), request.headers.get("Authorization"),
                          request.headers.get("Content-Encoding")))
        if self.script:
            status, headers = self.script.pop(0)
            return web.json_response({"error": f"injected {status}"}, status=status,
                                     headers=headers)
        async with ClientSession() as s, s.post(
                f"{self.upstream}{request.path_qs}", data=body,
                headers={"Content-Type": request.headers["Content-Type"]}) as resp:
            return web.Response(body=await resp.read(), status=resp.status,
                                content_type="application/json")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(tmp_path / "lethelog-data", tmp_path / "service.log", env=ENV)
    yield svc
    assert svc.stop() == 0


async def run_ship_through(flaky: Flaky, *args: str) -> tuple[int, str]:
    app = web.Application()
    app.router.add_post("/v1/logs", flaky.handle)
    server = TestServer(app, port=free_port())
    await server.start_server()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector", "ship", *args, "--url",
            str(server.make_url("/")), "--progress", "never", "--max-backoff", "0.3s",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")},
                 "PYTHONPATH": str(ROOT)})
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, err.decode()
    finally:
        await server.close()


def test_ship_honours_retry_after_and_splits_on_413(tmp_path: Path,
                                                    served: ServiceProcess) -> None:
    log = tmp_path / "a.log"
    write_log(log, 1000, tag="r")
    token = tmp_path / "token"
    token.write_text("lethelog_secret-for-test\n")
    flaky = Flaky(served.url, [(503, {"Retry-After": "1"}), (502, {}), (413, {})])
    code, err = asyncio.run(run_ship_through(
        flaky, str(log), "--state-dir", str(tmp_path / "st"), "--batch-lines", "400",
        "--token-file", str(token)))
    assert code == 0, err
    times = [t for t, _, _ in flaky.seen]
    assert times[1] - times[0] >= 0.95, "Retry-After: 1 was honoured"
    assert "HTTP 503; retrying in 1.0s" in err and "HTTP 502" in err
    assert "413 from the service: batches of 200 lines now" in err
    assert {auth for _, auth, _ in flaky.seen} == {"Bearer lethelog_secret-for-test"}
    assert {enc for _, _, enc in flaky.seen} == {"gzip"}
    paths = stored_paths(tmp_path / "lethelog-data" / "lethelog.db", "r")
    assert set(paths) == {f"/r/{i:07d}" for i in range(1000)}
    assert max(paths.values()) == 1, "the refused batches were not stored, nothing twice"


def test_ship_stops_on_refused_token(tmp_path: Path, served: ServiceProcess) -> None:
    log = tmp_path / "a.log"
    write_log(log, 10, tag="t")
    flaky = Flaky(served.url, [(401, {"WWW-Authenticate": "Bearer"})])
    code, err = asyncio.run(run_ship_through(flaky, str(log), "--state-dir",
                                             str(tmp_path / "st")))
    assert code == 1 and "HTTP 401: injected 401" in err
    assert len(flaky.seen) == 1, "a refused token is not retried"
    assert checkpoint(tmp_path / "st")["lines"] == 0


def test_ship_stdin_and_follow(tmp_path: Path, served: ServiceProcess) -> None:
    log = tmp_path / "in.log"
    write_log(log, 300, tag="i")
    with open(log, "rb") as fh:
        proc = ship("-", "--url", served.url, stdin=fh)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert "300 lines" in err.decode()

    grow = tmp_path / "grow.log"
    write_log(grow, 100, tag="f")
    follower = ship(str(grow), "--url", served.url, "--state-dir", str(tmp_path / "st"),
                    "--follow", "--poll-interval", "0.05s")
    db = tmp_path / "lethelog-data" / "lethelog.db"
    try:
        def wait(n: int) -> None:
            deadline = time.monotonic() + 20
            while len(stored_paths(db, "f")) < n:
                assert follower.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)

        wait(100)
        write_log(grow, 50, tag="f", start=100)
        wait(150)
        grow.rename(tmp_path / "grow.log.1")  # rotation: rename, then a new file
        write_log(tmp_path / "grow.log.1", 10, tag="f", start=150)  # late lines in the old one
        write_log(grow, 40, tag="f", start=160)
        wait(200)
    finally:
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=20)
    paths = stored_paths(db, "f")
    assert set(paths) == {f"/f/{i:07d}" for i in range(200)} and max(paths.values()) == 1
    assert len(stored_paths(db, "i")) == 300
