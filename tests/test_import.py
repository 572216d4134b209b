"""``lethelog import``: same answers and live records as serve; gz, stdin; no raw IP anywhere."""

from __future__ import annotations

import gzip
import io
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.importer import ImportFailed, ImportOptions, Input, Progress, Totals, run_import
from collector.metrics import Metrics
from collector.settings import Settings
from collector.store import open_store
from tests.conftest import DATA, ROOT, log_fixture
from tests.service import all_files, files_containing, make_settings

CITY = str(DATA / "mmdb" / "GeoIP2-City-Test.mmdb")
Key = tuple[str, str | None, str | None, int | None]


def _keys(recs: list[dict[str, Any]]) -> set[Key]:
    return {(r["time"], r["ip"], r["path"], r["status"]) for r in recs}


async def stored(settings: Settings) -> list[dict[str, Any]]:
    store = open_store(settings, Metrics())
    await store.start()
    try:
        return await store.records(1_000_000)
    finally:
        await store.close()


async def via_serve(tmp_path: Path, path: Path, **values: Any) -> tuple[dict[str, Any],
                                                                         list[dict[str, Any]]]:
    """POST the file to the real app, then read the live records back from its store."""
    settings = make_settings(tmp_path / "serve-data", **values)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        resp = await client.post("/v1/logs", data=path.read_bytes(),
                                 headers={"Content-Type": "text/plain"})
        assert resp.status == 200
        answer = await resp.json()
    finally:
        await client.close()
    return answer, await stored(settings)


def raw_addresses(path: Path) -> set[str]:
    out = set()
    for line in path.read_text("utf-8", errors="replace").splitlines():
        ip = line.split(" ", 1)[0]
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip) and not ip.endswith(".0"):
            out.add(ip)
    return out


@pytest.mark.parametrize(("idle", "workers"), [("30m", 2), ("3650d", 1)])
async def test_import_matches_serve(tmp_path: Path, idle: str, workers: int,
                                    backend: Any) -> None:
    """On SQLite and on a Redis Cluster (``backend``: tests/backends.py)."""
    path = log_fixture("elastic-examples_apache_logs")
    values = {"sessions.idle_timeout": idle, "enrich.city_db": CITY}
    answer, served = await via_serve(tmp_path, path, **values)
    assert (answer["accepted"], answer["rejected"]) == (9999, 1)
    settings = make_settings(tmp_path / "import-data", **values)
    out = io.StringIO()
    totals = await run_import(settings, ImportOptions([str(path)], workers=workers,
                                                      chunk_lines=1500), out)
    assert (totals.lines, totals.accepted, totals.rejected) == (10000, 9999, 1)
    assert totals.errors[0][1] == 8899
    assert "unterminated quoted field" in totals.errors[0][2]
    imported = await stored(settings)
    assert len(imported) == len(served) == totals.records_live
    assert _keys(imported) == _keys(served)
    if idle == "30m":
        assert 0 < len(imported) < 1000
        assert totals.records_deleted == 9999 - len(imported)
    else:
        assert len(imported) == 9999
    # the import's records carry its source and the same enrichment as serve's
    assert {r["source"] for r in imported} == {"import"}
    by_key = {(r["time"], r["ip"], r["path"], r["status"]): r for r in served}
    for r in imported[:500]:
        twin = by_key[(r["time"], r["ip"], r["path"], r["status"])]
        for f in ("country", "city", "browser", "os", "device_type", "path_template", "query"):
            assert r[f] == twin[f], f
    assert out.getvalue() == ""  # no progress bar when not asked for


def run_cli(args: list[str], tmp_path: Path, stdin: bytes | None = None
            ) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "collector", "import", *args],
                          input=stdin, capture_output=True, env=env, cwd=tmp_path, timeout=120)


def test_cli_gz_and_stdin_and_no_raw_ip(tmp_path: Path) -> None:
    path = log_fixture("elastic-examples_apache_logs")
    gz = tmp_path / "access.log.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    data_gz, data_stdin = tmp_path / "d-gz", tmp_path / "d-stdin"
    env_city = ["--workers", "2"]
    r1 = run_cli([str(gz), "--data-dir", str(data_gz), *env_city], tmp_path)
    assert r1.returncode == 0, r1.stderr.decode()[-2000:]
    r2 = run_cli(["-", "--data-dir", str(data_stdin), "--format", "combined"], tmp_path,
                 stdin=path.read_bytes())
    assert r2.returncode == 0, r2.stderr.decode()[-2000:]
    for r in (r1, r2):
        text = r.stdout.decode()
        assert "\r" not in text  # stdout is a pipe: summary only, no progress bar
        assert re.search(r"^accepted\s+9,999$", text, re.M), text
        assert re.search(r"^rejected\s+1$", text, re.M), text
        assert re.search(r":8899: line does not match the combined format", text), text
        assert re.search(r"^sessions\s+\d[\d,]* live, \d[\d,]* ended", text, re.M), text
        assert re.search(r"^records\s+\d[\d,]* live, \d[\d,]* deleted", text, re.M), text
        assert re.search(r"^rate\s+[\d,]+ lines/s$", text, re.M), text
    live1 = re.search(r"^records\s+([\d,]+) live", r1.stdout.decode(), re.M)
    live2 = re.search(r"^records\s+([\d,]+) live", r2.stdout.decode(), re.M)
    assert live1 and live2 and live1.group(1) == live2.group(1) != "0"
    # No raw client address in any file of either data dir, nor in anything printed.
    outputs = tmp_path / "outputs.txt"
    outputs.write_bytes(r1.stdout + r1.stderr + r2.stdout + r2.stderr)
    ips = raw_addresses(path)
    assert len(ips) > 1700
    assert files_containing(all_files(data_gz, data_stdin, outputs), ips) == {}
    assert all_files(data_gz)  # the check above did look at real files


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    r = run_cli([str(tmp_path / "missing.log"), "--data-dir", str(tmp_path / "d")], tmp_path)
    assert r.returncode == 1
    assert b"missing.log: cannot open" in r.stderr
    assert b"Traceback" not in r.stderr
    log = tmp_path / "a.log"
    log.write_text("garbage that matches nothing\nmore garbage\n")
    r = run_cli([str(log), "--data-dir", str(tmp_path / "d"), "--workers", "1"], tmp_path)
    assert r.returncode == 0
    text = r.stdout.decode()
    assert re.search(r"^rejected\s+2$", text, re.M)
    assert "a.log:1: line does not match any known access-log format" in text


async def test_w3c_header_reaches_every_chunk(tmp_path: Path) -> None:
    lines = log_fixture("matomo-log-analytics_iis.log").read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("#")]
    row = next(ln for ln in lines if not ln.startswith("#"))
    body = [row.replace("00:00:13", f"00:{i // 60:02d}:{i % 60:02d}", 1)
               .replace(" 1.2.3.4 ", f" 1.2.{i % 7}.{i + 1} ") for i in range(60)]
    path = tmp_path / "iis.log"
    path.write_text("\n".join(header + body) + "\n")
    values = {"sessions.idle_timeout": "3650d"}
    answer, served = await via_serve(tmp_path, path, **values)
    assert (answer["accepted"], answer["rejected"]) == (60, 0)
    settings = make_settings(tmp_path / "import-data", **values)
    # one or two lines a chunk: every chunk needs the #Fields: line to be read
    totals = await run_import(settings, ImportOptions([str(path)], workers=1, chunk_lines=1))
    assert (totals.lines, totals.accepted, totals.rejected) == (64, 60, 0)
    got = await stored(settings)
    assert len(got) == 60 and _keys(got) == _keys(served)


async def test_bad_format_names_the_option(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "d")
    path = log_fixture("elastic-examples_apache_logs")
    with pytest.raises(ImportFailed, match="--format: unknown log format"):
        await run_import(settings, ImportOptions([str(path)], fmt="%{nonsense", workers=1))


def test_progress_line() -> None:
    out = io.StringIO()
    inp = Input("x.log", 1000, consumed=250)
    totals = Totals(lines=5000, rejected=3)
    Progress(out, [inp], enabled=True).update(totals, force=True)
    text = out.getvalue()
    assert text.startswith("\r[######")
    assert "25.0%" in text and "5,000 lines" in text and "lines/s" in text
    assert "3 rejected" in text and "ETA " in text
    quiet = io.StringIO()
    Progress(quiet, [inp], enabled=False).update(totals, force=True)
    assert quiet.getvalue() == ""


async def test_replay_never_writes_what_it_deletes(tmp_path: Path) -> None:
    """Replay mode: the same live records, sessions and aggregates as writing every record, but
    only the records of sessions open at the end reach the database file; a cap on what is held
    writes the oldest open sessions early and changes nothing else."""
    path = log_fixture("elastic-examples_apache_logs")
    values = {"sessions.idle_timeout": "30m", "enrich.city_db": CITY}
    results = {}
    runs = (("serve-like", 0, False), ("replay", 200_000, False), ("capped", 5, False),
            ("precounted", 200_000, True))  # the last: aggregates partly counted in workers
    for name, hold, precount in runs:
        settings = make_settings(tmp_path / name, **values)
        opts = ImportOptions([str(path)], workers=1, hold=hold, chunk_lines=700,
                             precount=precount)
        totals = await run_import(settings, opts, io.StringIO())
        db = sqlite3.connect(settings.server.data_dir / "lethelog.db")
        cols = "time, ip, path, query, status, bytes, browser, country, site, source"
        results[name] = (
            db.execute(f"SELECT {cols} FROM records ORDER BY rid").fetchall(),
            db.execute("SELECT source, site, first_log, last_log, records FROM sessions "
                       "ORDER BY first_log, last_log, records").fetchall(),
            db.execute("SELECT * FROM agg ORDER BY dim, t, site, value").fetchall(),
            (totals.records_live, totals.records_deleted, totals.sessions_live,
             totals.sessions_ended),
        )
        db.close()
        # the totals the summary shows do not depend on the mode
        assert totals.records_live + totals.records_deleted == totals.accepted == 9999
        if name == "serve-like":
            assert totals.records_written == 9999
        elif name in ("replay", "precounted"):
            assert totals.records_written == totals.records_live < 1000
        else:
            assert totals.records_live < totals.records_written < 9999
    base = results["serve-like"]
    assert 0 < len(base[0]) < 1000 and len(base[2]) > 1000
    for name in ("replay", "capped", "precounted"):
        got = results[name]
        if name != "capped":
            assert got[0] == base[0]  # same rows in the same (arrival) order
        else:  # sessions written early come first
            assert sorted(got[0], key=repr) == sorted(base[0], key=repr)
        assert got[1] == base[1], name
        assert [r[:-1] for r in got[2]] == [r[:-1] for r in base[2]], name  # all but `updated`
        assert got[3] == base[3], name
