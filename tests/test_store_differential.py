"""The columnar store write gives exactly what the record-at-a-time write gave.

The oracle (``tests/oracle/sqlite_write.py``) is the store's old write path: one
``SessionTable.touch`` and one INSERT row per record. Both stores get the same batches — every log
of ``../shared/corpus/logs`` and ``tests/data/logs`` through the real pipeline, the bench
generator's records, and hypothesis batches (out-of-order times, gaps past the idle timeout,
several sites with their own timeouts, a key changing site, aggregate-only rows, several
sources) — once as ``list[Record]`` and once as a DataFrame. Compared: every write's result,
every stored row (every field, with its session), the session rows (boundaries, first/last
time, record counts), the log clocks and every aggregate row. A difference names the table, the
row and the field.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.importer import Chunk, Input, _build_pipeline, process_chunk, read_chunks
from collector.keys import KeyRing
from collector.metrics import Metrics
from collector.record import Record
from collector.settings import Settings, load_settings
from collector.store.base import WriteResult
from collector.store.frame import SCHEMA, to_frame
from collector.store.sqlite import SQLiteStore
from tests.conftest import CORPUS, ROOT
from tests.oracle.sqlite_write import OracleStore

LOGS = CORPUS / "logs"
T0 = 1_700_000_000.0

SITES_TOML = """
[sessions]
idle_timeout = "30m"
[aggregates]
k_anonymity = 2
[[sites]]
name = "a"
hosts = ["a.example"]
idle_timeout = "5m"
[[sites]]
name = "b"
hosts = ["b.example"]
"""


def _settings(tmp: Path, name: str) -> Settings:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "lethelog.toml"
    if not cfg.exists():
        cfg.write_text(SITES_TOML)
    return load_settings(cfg, env={}, overrides={"server.data_dir": str(tmp / name),
                                                  "ingest.queue_size": "100000"})


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        agg_cols = [r[1] for r in conn.execute("PRAGMA table_info(agg)") if r[1] != "updated"]
        return {
            "records": conn.execute("SELECT * FROM records ORDER BY rid").fetchall(),
            "sessions": conn.execute(
                "SELECT sid, key, source, site, first_log, last_log, records FROM sessions "
                "ORDER BY sid").fetchall(),
            "clocks": conn.execute("SELECT * FROM clocks ORDER BY source").fetchall(),
            "agg": conn.execute(f"SELECT {', '.join(agg_cols)} FROM agg "
                                "ORDER BY dim, t, res, site, value").fetchall(),
        }
    finally:
        conn.close()


def _same(x: Any, y: Any, ulps: bool) -> bool:
    if x == y:
        return True
    return ulps and isinstance(x, float) and isinstance(y, float) and math.isclose(
        x, y, rel_tol=1e-12)


def _compare(new: dict[str, list[tuple[Any, ...]]], old: dict[str, list[tuple[Any, ...]]],
             what: str, float_order: bool = False) -> None:
    """``float_order``: float sums may differ in their last bits (summed in another grouping)."""
    for table, rows in old.items():
        got = new[table]
        for i, (a, b) in enumerate(zip(got, rows, strict=False)):
            diff = [(j, x, y) for j, (x, y) in enumerate(zip(a, b, strict=True))
                    if not _same(x, y, float_order and table == "agg")]
            if diff:
                pytest.fail(f"{what}: {table} row {i + 1} differs at (column, new, oracle) "
                            f"{diff}")
        assert len(got) == len(rows), f"{what}: {table} has {len(got)} rows, oracle {len(rows)}"


async def _run(store: SQLiteStore, batches: list[Any]) -> list[WriteResult]:
    await store.start()
    try:
        return [await store.write(b) for b in batches]
    finally:
        await store.close()


def differential(tmp: Path, batches: list[list[Record]], what: str) -> int:
    """Write ``batches`` through the oracle and through the columnar store (as lists, and as
    DataFrames), compare everything; return the number of records the oracle stored."""
    oracle = OracleStore(_settings(tmp, "oracle"), Metrics())
    old_results = asyncio.run(_run(oracle, [[dict(r) for r in b] for b in batches]))
    old = _dump(oracle.path)
    for form in ("list", "frame"):
        store = SQLiteStore(_settings(tmp, form), Metrics())
        given_ = [[dict(r) for r in b] if form == "list" else to_frame(b) for b in batches]
        results = asyncio.run(_run(store, given_))
        for i, (a, b) in enumerate(zip(results, old_results, strict=True)):
            assert a == b, f"{what} ({form}): write {i + 1} returned {a}, oracle {b}"
        _compare(_dump(store.path), old, f"{what} ({form})")
    return sum(r.stored for r in old_results)


# --------------------------------------------------------------------------- corpus logs

def _logs() -> list[Path]:
    here = sorted((ROOT / "tests" / "data" / "logs").glob("*"))
    there = sorted(LOGS.glob("*")) if LOGS.is_dir() else []
    return [p for p in here + there if p.is_file()]


def _pipeline_records(tmp: Path, log: Path) -> list[list[Record]]:
    settings = _settings(tmp, "pipeline")
    ring = KeyRing(tmp / "keys.json", 86400.0, 86400.0)
    pipeline = _build_pipeline(settings, ring.current(), "import")
    batches = []
    for chunk in read_chunks([Input(str(log), log.stat().st_size)], None, chunk_lines=300):
        res = process_chunk(Chunk(chunk.file, chunk.first_line, chunk.data, chunk.fmt,
                                  chunk.prefix), pipeline, settings)
        if res.records:
            batches.append(res.records)
    return batches


def test_corpus_logs_store_the_same(tmp_path: Path) -> None:
    logs = _logs()  # tests/data/logs always; ../shared/corpus/logs when present
    compared = 0
    for i, log in enumerate(logs):
        batches = _pipeline_records(tmp_path / f"p{i}", log)
        if batches:
            compared += differential(tmp_path / f"l{i}", batches, log.name)
    assert compared > 10_000  # the big Apache log alone has ~10,000 lines


# --------------------------------------------------------------------------- generated batches

def test_bench_generator_records_store_the_same(tmp_path: Path) -> None:
    from bench.store_backends import records

    recs = records(6000, visitors=400)
    for i, r in enumerate(recs):  # gaps past the timeout, out of order, a second site
        r["time"] = T0 + (i % 2000) * 1.7 + (i // 2000) * 2400 - (i % 7) * 30
        r["site"] = "a" if i % 5 == 0 else "default"
    batches = [recs[i:i + 1000] for i in range(0, len(recs), 1000)]
    assert differential(tmp_path, batches, "bench generator") > 5000


_KEYS = [f"k{i:02d}" for i in range(12)]
_rec = st.fixed_dictionaries({
    "key": st.sampled_from(_KEYS),
    "dt": st.one_of(st.floats(-400, 400), st.sampled_from([-3000.0, 301.0, 1801.0, 5000.0])),
    "site": st.sampled_from([None, "", "a", "b", "default"]),
    "source": st.sampled_from([None, "edge-1", "edge-2"]),
    "aggregate_only": st.sampled_from([None, None, None, True]),
    "path": st.sampled_from(["/", "/x", "/y/1", None]),
    "status": st.sampled_from([200, 404, 403, None]),
    "ip": st.sampled_from(["10.0.0.0", "2001:db8::", None]),
    "languages": st.sampled_from([None, [], ["en"], ["de-DE", "en"]]),
    "is_bot": st.sampled_from([None, True, False]),
})


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(_rec, min_size=1, max_size=40), min_size=1, max_size=5))
def test_generated_batches_store_the_same(tmp_path_factory: pytest.TempPathFactory,
                                          batches: list[list[dict[str, Any]]]) -> None:
    tmp = tmp_path_factory.mktemp("gen")
    t = T0
    out: list[list[Record]] = []
    for batch in batches:
        recs = []
        for g in batch:
            t += g["dt"]
            rec: Record = {"time": t, "session_key": g["key"], "site": g["site"],
                           "source": g["source"], "path": g["path"],
                           "path_template": g["path"], "status": g["status"], "ip": g["ip"],
                           "languages": g["languages"], "is_bot": g["is_bot"],
                           "browser": "Firefox", "os": "Linux"}
            if g["aggregate_only"]:
                rec["aggregate_only"] = True
            recs.append(rec)
        out.append(recs)
    differential(tmp, out, "generated")


def test_frame_schema_covers_every_stored_field() -> None:
    from collector.record import STORED_FIELDS

    assert set(SCHEMA) == (set(STORED_FIELDS) - {"session"}) | {"session_key", "aggregate_only"}
    assert to_frame(pl.DataFrame({"time": [T0], "session_key": ["k"]})).columns == list(SCHEMA)


async def _run_concurrently(store: SQLiteStore, batches: list[Any], merged: list[int]
                            ) -> list[WriteResult]:
    await store.start()
    run = store._write_batches

    def counted(conn: Any, got: list[Any], wall: float) -> list[WriteResult]:
        merged.append(len(got))
        return run(conn, got, wall)

    store._write_batches = counted  # type: ignore[method-assign]
    try:
        return list(await asyncio.gather(*(store.write(b) for b in batches)))
    finally:
        await store.close()


def test_group_commit_merges_batches_into_one_frame_with_the_same_result(tmp_path: Path) -> None:
    """Batches waiting together are written as one frame: the same rows, sessions and
    aggregates as the oracle writing them one after the other, and each caller its own count
    of stored records. (Times stay within the idle timeout: when sessions end on the log clock
    between two transactions depends on how batches group, for the oracle too.)"""
    from bench.store_backends import records

    recs = records(4000, visitors=300)
    for i, r in enumerate(recs):
        r["time"] = T0 + i * 0.2 - (i % 5) * 3
        r["site"] = "b" if i % 3 == 0 else "default"
        if i % 97 == 0:
            r["aggregate_only"] = True
    batches = [recs[i:i + 150] for i in range(0, len(recs), 150)]
    oracle = OracleStore(_settings(tmp_path, "oracle"), Metrics())
    old_results = asyncio.run(_run(oracle, [[dict(r) for r in b] for b in batches]))
    store = SQLiteStore(_settings(tmp_path, "merged"), Metrics())
    merged: list[int] = []
    results = asyncio.run(_run_concurrently(store, [to_frame(b) for b in batches], merged))
    assert max(merged) > 1, merged  # the writer did take several batches at once
    assert [r.stored for r in results] == [r.stored for r in old_results]
    for what in ("sessions_ended", "records_deleted"):
        assert sum(getattr(r, what) for r in results) == sum(
            getattr(r, what) for r in old_results)
    # request-time sums: the oracle adds each transaction's sum to the row, the merged write
    # one sum for all: the same numbers added in another grouping
    _compare(_dump(store.path), _dump(oracle.path), "merged group commit", float_order=True)


def test_restart_in_the_middle_counts_the_same(tmp_path: Path) -> None:
    """Both stores stop halfway and start again (the aggregates' memory of live sessions is
    rebuilt from the stored records: as sets of groups, or as integer codes) and go on."""
    from bench.store_backends import records

    recs = records(3000, visitors=200)
    for i, r in enumerate(recs):
        r["time"] = T0 + i * 0.5 - (i % 4) * 20
        r["status"] = 404 if i % 9 == 0 else 200
        r["site"] = "b" if int(r["session_key"], 16) % 4 == 0 else "default"
    batches = [recs[i:i + 500] for i in range(0, len(recs), 500)]
    dumps = []
    for cls, name in ((OracleStore, "oracle"), (SQLiteStore, "columnar")):
        settings = _settings(tmp_path, name)
        for half in (batches[:3], batches[3:]):
            store = cls(settings, Metrics())
            asyncio.run(_run(store, [[dict(r) for r in b] for b in half]))
        dumps.append(_dump(store.path))
    _compare(dumps[1], dumps[0], "restart")
    conn = sqlite3.connect(store.path)
    (new,) = conn.execute("SELECT sum(sessions_new) FROM agg WHERE dim = ''").fetchone()
    conn.close()
    assert new == 200  # each visitor's one session counted once, across the restart
