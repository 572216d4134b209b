"""Issue 16, reproduction 2: a full, read-only or lost disk costs no data and no restart.

A real 20 MiB tmpfs, mounted by the test (root needed; skipped with the reason otherwise), holds
the data directory of a real `lethelog serve`. Before the fix a full disk made writes answer a
bare 500, left half a line at the end of ``audit.log``, kept every read at 500 after space was
freed, and the service did not start again (``JSONDecodeError`` reading the audit log).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.audit import verify
from collector.faults import append_all_or_nothing, disk_fault
from collector.keys import KeyRing
from tests.service import ServiceProcess


def call(url: str, path: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "text/plain"} if data is not None else {}
    req = urllib.request.Request(url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def batch(marker: str, n: int) -> bytes:
    t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    pad = "x" * 150
    return "".join(f'198.51.100.{i % 200 + 1} - - [{t}] "GET /{marker}/{i}?p={pad} HTTP/1.1" '
                   f'200 5 "-" "agent-{i % 50}"\n' for i in range(n)).encode()


def markers(url: str) -> dict[str, int]:
    status, _, body = call(url, "/v1/records?limit=1000000")
    assert status == 200, body[:200]
    out: dict[str, int] = {}
    for line in body.splitlines():
        path = json.loads(line)["path"] or ""
        parts = path.split("/")
        if len(parts) > 2:
            out[parts[1]] = out.get(parts[1], 0) + 1
    return out


def fill(path: Path) -> None:
    """Take every free byte of the file system holding ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    if os.write(fd, b"\0" * size) < size:
                        break
    finally:
        os.close(fd)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test (needs root/CAP_SYS_ADMIN): "
                    f"{r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_costs_no_data_and_no_restart(disk: Path, tmp_path: Path) -> None:
    data = disk / "lethelog-data"
    env = {"LETHELOG_SESSIONS_IDLE_TIMEOUT": "1d", "LETHELOG_INGEST_MAX_RECORDS_PER_REQUEST":
           "100000"}
    svc = ServiceProcess(data, tmp_path / "service.log", env=env)
    try:
        status, _, body = call(svc.url, "/v1/logs", batch("before", 200))
        assert status == 200, body
        assert markers(svc.url) == {"before": 200}
        fill(disk / "filler")
        acked: dict[str, int] = {"before": 200}
        refused = []
        for i in range(40):  # until the store runs out of space
            status, headers, body = call(svc.url, "/v1/logs", batch(f"full{i}", 2000))
            assert status in (200, 507), (status, body[:300])
            if status == 200:
                acked[f"full{i}"] = 2000
                continue
            refused.append(f"full{i}")
            assert int(headers["Retry-After"]) >= 1
            assert b"nothing of the request was stored" in body
            break
        assert refused, "the disk never filled up"
        status, _, body = call(svc.url, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "degraded"
        assert "store_write" in health["faults"]
        # reads: answered, or 503 when the audit line cannot be written; never 500, never half
        # a line at the end of the audit log
        statuses = set()
        for _ in range(200):
            status, _, _ = call(svc.url, "/v1/records?limit=1")
            statuses.add(status)
            assert status in (200, 503)
            if status == 503:
                break
        assert 503 in statuses, "the audit log never filled up"
        assert verify(data / "audit.log").ok
        # space returns: writes and reads work again, without a restart
        (disk / "filler").unlink()
        status, _, body = call(svc.url, "/v1/logs", batch("after", 300))
        assert status == 200, body
        acked["after"] = 300
        got = markers(svc.url)
        assert got == acked, (got, acked)  # every acknowledged record, nothing of a refused one
        health = json.loads(call(svc.url, "/healthz")[2])
        assert health["status"] == "ok" and "faults" not in health
    finally:
        svc.stop()
    assert verify(data / "audit.log").ok


def test_append_is_all_or_nothing_on_a_full_disk(disk: Path) -> None:
    log = disk / "audit.log"
    append_all_or_nothing(log, b"first line\n")
    fill(disk / "filler")
    big = b"x" * 200_000 + b"\n"  # more than any space left
    with pytest.raises(OSError) as err:
        append_all_or_nothing(log, big)
    assert disk_fault(err.value) == "ENOSPC"
    assert log.read_bytes() == b"first line\n"  # nothing partial
    (disk / "filler").unlink()
    append_all_or_nothing(log, big)
    assert log.read_bytes() == b"first line\n" + big


def test_key_rotation_is_all_or_nothing_on_a_full_disk(disk: Path) -> None:
    ring = KeyRing(disk / "session-keys.json", rotation=3600, retention=7200)
    first = ring.current(now=0.0)
    saved = (disk / "session-keys.json").read_bytes()
    fill(disk / "filler")
    with pytest.raises(OSError) as err:
        ring.current(now=3600.0)  # a new period: a new key must be saved first
    assert disk_fault(err.value) == "ENOSPC"
    assert (disk / "session-keys.json").read_bytes() == saved
    assert not (disk / "session-keys.tmp").exists()
    assert ring.current(now=0.0) == first and ring.recent(now=0.0) == [first]
    (disk / "filler").unlink()
    second = ring.current(now=3600.0)
    assert KeyRing(disk / "session-keys.json", 3600, 7200).current(now=3600.0) == second


@pytest.mark.parametrize(("exc", "fault"), [
    (OSError(errno.ENOSPC, "x"), "ENOSPC"), (OSError(errno.EROFS, "x"), "EROFS"),
    (OSError(errno.ENOENT, "x"), "ENOENT"), (OSError(errno.EDQUOT, "x"), "EDQUOT"),
    (sqlite3.OperationalError("database or disk is full"), "sqlite: disk is full"),
    (sqlite3.OperationalError("attempt to write a readonly database"),
     "sqlite: readonly database"),
    (sqlite3.OperationalError("disk I/O error"), "sqlite: disk i/o error"),
    (ValueError("x"), None), (sqlite3.OperationalError("database is locked"), None),
])
def test_disk_faults_are_recognised(exc: Exception, fault: str | None) -> None:
    """Read-only and lost disks answer 507 like a full one (a remount read-only is refused by
    Linux while the service holds its files open for writing, so it is checked here)."""
    assert disk_fault(exc) == fault


def test_lost_data_directory_is_not_acknowledged(disk: Path, tmp_path: Path) -> None:
    data = disk / "lethelog-data"
    svc = ServiceProcess(data, tmp_path / "service.log",
                         env={"LETHELOG_SESSIONS_IDLE_TIMEOUT": "1d"})
    try:
        assert call(svc.url, "/v1/logs", batch("here", 20))[0] == 200
        subprocess.run(["rm", "-rf", str(data)], check=True)
        status, headers, body = call(svc.url, "/v1/logs", batch("lost", 20))
        assert status == 507 and int(headers["Retry-After"]) >= 1, body
        assert b"data directory" in body
    finally:
        svc.stop()


def test_torn_audit_tail_never_stops_start_up(disk: Path, tmp_path: Path) -> None:
    data = disk / "lethelog-data"
    svc = ServiceProcess(data, tmp_path / "service.log")
    call(svc.url, "/v1/records?limit=1")
    call(svc.url, "/v1/records?limit=2")
    svc.stop()
    log = data / "audit.log"
    whole = log.read_bytes()
    torn = b'{"seq":3,"time":"2026-12-02T10:00:00.000Z","token":"lo'
    log.write_bytes(whole + torn)  # what a crash or full disk mid-append leaves
    svc = ServiceProcess(data, tmp_path / "service2.log")
    try:
        status, _, body = call(svc.url, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "degraded", health
        fault = health["faults"]["audit_torn_tail"]
        assert fault["bytes"] == len(torn) and fault["line"] == 3
        assert (data / fault["file"]).read_bytes() == torn  # kept as evidence
        assert log.read_bytes() == whole
        assert call(svc.url, "/v1/records?limit=1")[0] == 200  # reads work and are audited
        assert verify(log).ok
        events = [json.loads(x) for x in (tmp_path / "service2.log").read_text().splitlines()
                  if x.startswith("{")]
        assert any(e.get("event") == "audit_torn_tail" for e in events)
    finally:
        svc.stop()
    assert os.path.exists(data / fault["file"])
