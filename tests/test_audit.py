"""The audit log: who read what, hash-chained, verifiable, pruned behind an anchor."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.audit import GENESIS, AuditLog, entry_hash, verify
from tests.querytools import (
    LONG_IDLE,
    auth,
    build_elastic_store,
    client_for,
    copy_store,
    query,
    settings_with_tokens,
)
from tests.service import ROOT

DAY = 86400.0


def fill(book: AuditLog, n: int, start: float = 1_700_000_000.0, step: float = 60.0) -> None:
    for i in range(n):
        book.append(token="alice", role="sre", sites=None, peer="10.0.0.0",
                    endpoint="/v1/query", query=f"status = {i}", rows=i, now=start + i * step)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def cli_verify(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "collector", "audit", "verify", "--data-dir",
                           str(data_dir)], capture_output=True, text=True, env=env, timeout=60)


def test_chain_links_every_entry(tmp_path: Path) -> None:
    book = AuditLog.in_dir(tmp_path, retention=DAY)
    fill(book, 5)
    entries = book.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after["prev"] == before["hash"] == entry_hash(before)
    result = verify(book.path)
    assert result.ok and result.entries == 5 and result.head is not None
    assert result.head.hash == entries[-1]["hash"]


@pytest.mark.parametrize(("damage", "line", "why"), [
    ("edit-rows", 3, "hash does not match"),
    ("edit-query", 2, "hash does not match"),
    ("rehash", 4, "prev does not match"),  # edited and re-hashed: the next link breaks
    ("delete-middle", 3, "prev does not match"),
    ("delete-first", 1, "chain does not start"),
    ("swap", 2, "prev does not match"),
    ("whitespace", 4, "not in the form it was written"),
    ("truncate-last", 6, "incomplete"),
    ("garbage", 5, "not a JSON object"),
])
def test_verify_names_the_damaged_line(tmp_path: Path, damage: str, line: int, why: str) -> None:
    book = AuditLog.in_dir(tmp_path, retention=DAY)
    fill(book, 6)
    rows = lines(book.path)
    if damage == "edit-rows":
        rows[2] = rows[2].replace(b'"rows":2', b'"rows":0')
    elif damage == "edit-query":
        rows[1] = rows[1].replace(b"status = 1", b"status = 9")
    elif damage == "rehash":
        e = orjson.loads(rows[2])
        e["rows"] = 0
        e["hash"] = entry_hash(e)
        rows[2] = orjson.dumps(e) + b"\n"
    elif damage == "delete-middle":
        del rows[2]
    elif damage == "delete-first":
        del rows[0]
    elif damage == "swap":
        rows[1], rows[2] = rows[2], rows[1]
    elif damage == "whitespace":
        rows[3] = rows[3].replace(b'"rows":', b'"rows": ')
    elif damage == "truncate-last":
        rows[5] = rows[5][:-20]
    elif damage == "garbage":
        rows[4] = b"{not json\n"
    book.path.write_bytes(b"".join(rows))
    result = verify(book.path)
    assert not result.ok
    assert result.line == line, result.message
    assert why in result.message and f"line {line}" in result.message


def test_cli_verify_passes_then_fails_after_edit_and_deletion(tmp_path: Path) -> None:
    book = AuditLog.in_dir(tmp_path, retention=DAY)
    fill(book, 4)
    ok = cli_verify(tmp_path)
    assert ok.returncode == 0 and "4 entries verified" in ok.stdout, ok.stderr
    original = book.path.read_bytes()
    rows = lines(book.path)
    book.path.write_bytes(b"".join([rows[0], rows[1].replace(b"alice", b"mallory"), *rows[2:]]))
    edited = cli_verify(tmp_path)
    assert edited.returncode == 1 and "line 2" in edited.stderr and "edited" in edited.stderr
    book.path.write_bytes(original)
    assert cli_verify(tmp_path).returncode == 0
    book.path.write_bytes(b"".join([rows[0], rows[1], rows[3]]))
    deleted = cli_verify(tmp_path)
    assert deleted.returncode == 1 and "line 3" in deleted.stderr, deleted.stderr


def test_retention_prunes_behind_an_anchor(tmp_path: Path) -> None:
    book = AuditLog.in_dir(tmp_path, retention=DAY)
    start = time.time() - 5.25 * DAY
    fill(book, 10, start=start, step=0.5 * DAY)  # 5.25 .. 0.75 days ago
    before = book.entries()
    old = sum(1 for e in before if e["time"] < _iso(time.time() - DAY))
    assert old == 9
    assert book.prune() == old
    after = book.entries()
    anchor = after[0]
    assert anchor["kind"] == "anchor" and anchor["pruned"] == old
    assert anchor["through_seq"] == old and anchor["through_hash"] == before[old - 1]["hash"]
    assert after[1:] == before[old:], "kept entries are untouched"
    result = verify(book.path)
    assert result.ok and result.entries == 10 - old and "anchor" in result.message
    # appending continues the chain; a second prune adds to the anchor's count
    book.append(token="bob", role="admin", sites=None, peer=None, endpoint="/v1/admin/audit",
                query="limit=5", rows=5)
    assert book.entries()[-1]["seq"] == 11 and verify(book.path).ok
    assert book.prune(now=time.time() + 2 * DAY) == 11 - old
    assert book.entries()[0]["pruned"] == 11 and verify(book.path).ok
    assert book.entries()[0]["through_seq"] == 11 and len(book.entries()) == 1
    book.append(token="carol", role="admin", sites=None, peer=None, endpoint="/v1/admin/audit",
                query="limit=5", rows=1)
    assert book.entries()[-1]["seq"] == 12 and verify(book.path).ok
    # tampering after pruning is still found, and a broken chain is never pruned
    rows = lines(book.path)
    book.path.write_bytes(b"".join([rows[0], rows[1].replace(b'"carol"', b'"eve"')]))
    assert not verify(book.path).ok
    assert book.prune(now=time.time() + 10 * DAY) == 0
    # an anchor cannot stand later in the file
    book.path.write_bytes(b"".join([rows[1], rows[0]]))
    assert not verify(book.path).ok


def _iso(t: float) -> str:
    from collector.timefmt import rfc3339

    return rfc3339(round(t, 3))


def _append_many(path: str, n: int) -> None:
    book = AuditLog(Path(path), retention=DAY, fsync=False)
    for i in range(n):
        book.append(token=f"p{os.getpid()}", role="sre", sites=None, peer=None,
                    endpoint="/v1/query", query=str(i), rows=i)


def test_concurrent_appends_from_threads_and_processes(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), 40)) for _ in range(2)]
    threads = [threading.Thread(target=_append_many, args=(str(path), 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    result = verify(path)
    assert result.ok and result.entries == 240, result.message


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("audit") / "data"
    assert build_elastic_store(data)["accepted"] == 9999
    return data


async def test_service_reads_are_audited_without_contents(store: Path, tmp_path: Path) -> None:
    data = copy_store(store, tmp_path / "data")
    settings, tokens = settings_with_tokens(data, {
        "alice": (["sre"], None), "shop-ops": (["sre"], ["default", "shop"]),
        "root": (["admin"], None)}, **LONG_IDLE)
    client = await client_for(settings)
    seen: set[str] = set()
    try:
        status, body, _ = await query(client, 'status = 404 | limit 50', tokens["alice"])
        assert status == 200
        for rec in body["data"]:
            seen.update(str(v) for k, v in rec.items()
                        if k in ("session", "ip", "path", "referrer", "query") and v)
        resp = await client.get("/v1/records?limit=30", headers=auth(tokens["shop-ops"]))
        for line in (await resp.read()).splitlines():
            rec = orjson.loads(line)
            seen.update(str(rec[k]) for k in ("session", "ip", "path") if rec[k])
        resp = await client.get("/v1/admin/sessions?limit=3", headers=auth(tokens["root"]))
        assert resp.status == 200
        resp = await client.get("/v1/admin/audit?limit=10", headers=auth(tokens["root"]))
        listing = await resp.json()
        assert listing["verified"] is True
        assert [e["endpoint"] for e in listing["entries"]] == [
            "/v1/query", "/v1/records", "/v1/admin/sessions"]
    finally:
        await client.close()
    entries = [orjson.loads(x) for x in (data / "audit.log").read_bytes().splitlines()]
    assert [(e["token"], e["role"], e["endpoint"], e["query"], e["rows"], e["sites"])
            for e in entries] == [
        ("alice", "sre", "/v1/query", "status = 404 | limit 50", 50, None),
        ("shop-ops", "sre", "/v1/records", "limit=30", 30, ["default", "shop"]),
        ("root", "admin", "/v1/admin/sessions", "limit=3", 3, None),
        ("root", "admin", "/v1/admin/audit", "limit=10", 3, None),
    ]
    assert all(e["peer"] == "127.0.0.0" and e["time"].endswith("Z") for e in entries)
    raw = (data / "audit.log").read_text()
    leaked = sorted(v for v in seen if len(v) > 6 and v in raw)
    assert leaked == [], "the audit log holds no record contents"
    assert len(seen) > 50
    assert cli_verify(data).returncode == 0


async def test_unwritable_audit_log_refuses_the_read(store: Path, tmp_path: Path) -> None:
    data = copy_store(store, tmp_path / "data")
    settings, tokens = settings_with_tokens(data, {"alice": (["sre"], None)}, **LONG_IDLE)
    client = await client_for(settings)
    try:
        (data / "audit.log").mkdir()  # cannot be appended to
        status, body, _ = await query(client, "| count", tokens["alice"])
        assert status == 503 and "audit log not writable" in str(body)
        resp = await client.get("/v1/records?limit=5", headers=auth(tokens["alice"]))
        assert resp.status == 503
        assert b"session" not in await resp.read(), "no data without an audit entry"
    finally:
        await client.close()


def test_local_cli_query_is_audited(store: Path, tmp_path: Path) -> None:
    data = copy_store(store, tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    env["PYTHONPATH"] = str(ROOT)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                              text=True, env=env, timeout=60)

    out = run("query", "--data-dir", str(data), "status >= 500 | count by status")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["status  count", "------  -----", "   500      3"]
    bad = run("query", "--data-dir", str(data), "status >= | count")
    assert bad.returncode == 2 and "position 10" in bad.stderr and "^" in bad.stderr
    listed = run("audit", "list", "--data-dir", str(data))
    assert "cli:" in listed.stdout and "rejected" in listed.stdout
    entries = [orjson.loads(x) for x in (data / "audit.log").read_bytes().splitlines()]
    assert [(e["endpoint"], e["query"], e["rows"], e["outcome"]) for e in entries] == [
        ("cli:query", "status >= 500 | count by status", 1, "ok"),
        ("cli:query", "status >= | count", 0, "rejected")]
    assert all(e["token"].startswith("cli:") and e["role"] == "local" for e in entries)
    assert run("audit", "verify", "--data-dir", str(data)).returncode == 0


def test_entries_fit_the_documented_shape(tmp_path: Path) -> None:
    book = AuditLog.in_dir(tmp_path, retention=DAY)
    e: dict[str, Any] = book.append(token="t", role="sre", sites=["a"], peer="192.0.2.0",
                                    endpoint="/v1/query", query="x" * 10_000, rows=1)
    assert list(e) == ["seq", "time", "token", "role", "sites", "peer", "endpoint", "query",
                       "rows", "outcome", "prev", "hash"]
    assert len(e["query"]) < 4200 and e["query"].endswith("more characters]")
