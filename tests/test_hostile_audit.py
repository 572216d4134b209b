"""Issue 16, reproduction 3: forged audit anchors fail `lethelog audit verify`.

Before: replacing the 40 oldest entries (minutes old, well inside the 400-day retention) with a
hand-made anchor verified, and so did a nonsense anchor (``pruned: 0``, time 1970). Anchors now
carry an HMAC keyed with a secret outside the data directory and must agree with the retention
and the entries after them (``collector/audit_anchor.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector import audit_anchor
from collector.audit import AuditLog, entry_hash, verify
from collector.timefmt import rfc3339

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400.0
RETENTION = 400 * DAY


def fill(book: AuditLog, n: int, start: float, step: float) -> None:
    for i in range(n):
        book.append(token="alice", role="sre", sites=None, peer="10.1.2.0",
                    endpoint="/v1/query", query=f"status >= {500 + i}", rows=i,
                    now=start + i * step)


def cli_verify(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "collector", "audit", "verify", "--data-dir",
                           str(data_dir), *extra], capture_output=True, text=True, env=env,
                          timeout=60)


def forge(book: AuditLog, anchor: dict[str, Any], keep_from: int) -> None:
    """Replace entries 1..keep_from-1 by ``anchor`` (hash recomputed, as a forger would)."""
    rows = book.path.read_bytes().splitlines()
    anchor["hash"] = entry_hash(anchor)
    book.path.write_bytes(b"\n".join([orjson.dumps(anchor), *rows[keep_from - 1:]]) + b"\n")


@pytest.fixture
def book(tmp_path: Path) -> AuditLog:
    data = tmp_path / "lethelog-data"
    data.mkdir()
    b = AuditLog.in_dir(data, RETENTION, fsync=False)
    fill(b, 50, time.time() - 600, 10.0)  # minutes old
    return b


def test_issue_forgery_of_40_recent_entries_fails(book: AuditLog) -> None:
    entries = book.entries()
    last = entries[39]
    forge(book, {"kind": "anchor", "time": rfc3339(round(time.time(), 3)), "pruned": 40,
                 "through_seq": 40, "through_time": last["time"], "through_hash": last["hash"],
                 "retention_seconds": RETENTION}, keep_from=41)
    result = verify(book.path)
    assert not result.ok and result.line == 1
    assert "no mac" in result.message
    run = cli_verify(book.path.parent)
    assert run.returncode == 1 and "line 1" in run.stderr and "no mac" in run.stderr


def test_issue_nonsense_anchor_fails(book: AuditLog) -> None:
    first = book.entries()[0]
    forge(book, {"kind": "anchor", "time": "1970-01-01T00:00:00.000Z", "pruned": 0,
                 "through_seq": 0, "through_time": "1970-01-01T00:00:00.000Z",
                 "through_hash": first["prev"], "retention_seconds": RETENTION}, keep_from=1)
    run = cli_verify(book.path.parent)
    assert run.returncode == 1 and "FAILED" in run.stderr and "line 1: anchor" in run.stderr, (
        run.stderr)


def test_anchor_with_a_mac_of_another_key_fails(book: AuditLog, tmp_path: Path) -> None:
    last = book.entries()[39]
    anchor = {"kind": "anchor", "time": rfc3339(round(time.time() + RETENTION + DAY, 3)),
              "pruned": 40, "through_seq": 40, "through_time": last["time"],
              "through_hash": last["hash"], "retention_seconds": RETENTION}
    audit_anchor.sign(anchor, b"k" * 32)  # a key the forger made up
    audit_anchor.load_key(book.key_path, create=True)  # the service made its key at start-up
    forge(book, anchor, keep_from=41)
    result = verify(book.path)
    assert not result.ok and "mac does not match" in result.message


def test_even_with_the_key_an_anchor_must_agree_with_retention(book: AuditLog) -> None:
    """A leaked key still cannot prune recent entries unnoticed: the anchor's own times say so."""
    key = audit_anchor.load_key(book.key_path, create=True)
    assert key is not None
    last = book.entries()[39]
    anchor = {"kind": "anchor", "time": rfc3339(round(time.time(), 3)), "pruned": 40,
              "through_seq": 40, "through_time": last["time"], "through_hash": last["hash"],
              "retention_seconds": RETENTION}
    audit_anchor.sign(anchor, key)
    forge(book, anchor, keep_from=41)
    result = verify(book.path)
    assert not result.ok and "younger than its retention" in result.message
    anchor = {**anchor, "pruned": 0}
    anchor.pop("hash")
    audit_anchor.sign(anchor, key)
    forge(book, anchor, keep_from=41)
    result = verify(book.path)
    assert not result.ok and "must be equal" in result.message


def test_genuine_prune_verifies_and_needs_the_key(tmp_path: Path) -> None:
    data = tmp_path / "lethelog-data"
    data.mkdir()
    book = AuditLog.in_dir(data, DAY, fsync=False)
    fill(book, 10, time.time() - 5 * DAY, 0.5 * DAY)
    assert book.prune() > 0
    key_file = tmp_path / "lethelog-data.audit-key"
    assert key_file.exists() and not (data / key_file.name).exists()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert verify(book.path).ok
    assert cli_verify(data).returncode == 0
    # the key elsewhere: named on the command line
    moved = tmp_path / "elsewhere.key"
    key_file.rename(moved)
    missing = cli_verify(data)
    assert missing.returncode == 1 and "key" in missing.stderr
    assert cli_verify(data, "--key-file", str(moved)).returncode == 0
