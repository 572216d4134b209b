"""SQLite store: one writer thread behind a bounded queue, readers in a small thread pool.

Layout for cheap writes and cheap forgetting:

* ``sessions``: one row per open session, keyed by a monotonic integer ``sid``.
* ``records``: one row per record with the ``sid`` (not the random session key), so the
  ``records(sid)`` index grows at its end instead of splitting pages at random.
* Forgetting a session deletes its rows with ``secure_delete`` on (freed bytes are zeroed) and the
  next sweep checkpoints the WAL with ``TRUNCATE``, so the text leaves every file.

Writes are group-committed: the writer takes every batch waiting in the queue into one
transaction, then resolves each caller's future. A caller hears back only after the commit.

Replay mode (``lethelog import`` only, :meth:`SQLiteStore.replay`): the writer holds the records
of the sessions it opened in memory instead of inserting them. A session that ends during the
replay — most of an old file's — is counted into the aggregates and metrics exactly as in
``serve``, and its records are dropped from memory without ever reaching the database file. Only
the sessions still open when the import ends (or the oldest open ones, when more than ``hold``
records are held) are written, in arrival order, as ``serve`` would have written them. ``serve``
never uses it: there a write is acknowledged only once committed.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import structlog

from collector.aggregates.counter import Partial
from collector.aggregates.store_hook import StoreAggregates
from collector.metrics import Metrics
from collector.record import STORED_FIELDS, Record
from collector.sessions import Session, SessionTable
from collector.settings import Settings
from collector.store.base import (
    ReadScope,
    Store,
    StoreBusy,
    StoreStats,
    SweepResult,
    WriteResult,
)
from collector.store.frame import Batch, sql_columns, to_frame
from collector.store.sessionize import assign
from collector.timefmt import rfc3339

log = structlog.get_logger("lethelog.store")

COLUMNS: tuple[str, ...] = tuple(f for f in STORED_FIELDS if f != "session")
_BOOL = {"is_bot", "dnt", "is_anonymous_proxy", "is_vpn", "is_tor", "is_hosting"}
_TYPES = {
    "time": "REAL NOT NULL", "status": "INTEGER", "bytes": "INTEGER", "asn": "INTEGER",
    "request_time": "REAL", **{b: "INTEGER" for b in _BOOL},
}

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS sessions (
        sid INTEGER PRIMARY KEY, id TEXT NOT NULL, key TEXT NOT NULL, source TEXT NOT NULL,
        site TEXT NOT NULL, first_log REAL NOT NULL, last_log REAL NOT NULL,
        last_wall REAL NOT NULL, records INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS sessions_key ON sessions(key)",
    "CREATE UNIQUE INDEX IF NOT EXISTS sessions_id ON sessions(id)",
    "CREATE TABLE IF NOT EXISTS records (rid INTEGER PRIMARY KEY, sid INTEGER NOT NULL, "
    + ", ".join(f"{c} {_TYPES.get(c, 'TEXT')}" for c in COLUMNS)
    + ")",
    "CREATE INDEX IF NOT EXISTS records_sid ON records(sid)",
    "CREATE INDEX IF NOT EXISTS records_time ON records(time)",
    "CREATE TABLE IF NOT EXISTS clocks (source TEXT PRIMARY KEY, log_time REAL NOT NULL)",
]

_INSERT = (
    f"INSERT INTO records (sid, {', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(COLUMNS) + 1))})"
)
_UPSERT_SESSION = (
    "INSERT INTO sessions (sid, id, key, source, site, first_log, last_log, last_wall, records) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sid) DO UPDATE SET "
    "first_log=excluded.first_log, last_log=excluded.last_log, last_wall=excluded.last_wall, "
    "records=excluded.records"
)

Job = Callable[[sqlite3.Connection], Any]


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("PRAGMA temp_store=MEMORY")  # sorts and temp tables never touch /tmp
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class SQLiteStore(Store):
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.path = Path(settings.server.data_dir) / "lethelog.db"
        self.table = self._new_table()
        self._queue: queue.Queue[tuple[str, Any, asyncio.Future[Any]] | None] = queue.Queue()
        self._pending_writes = 0
        self._pending_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._needs_checkpoint = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._records = 0
        self.aggregates = StoreAggregates(settings)
        self.inserted = 0  # record rows written to the database file since start
        # replay mode: sid -> [(arrival number, record)] of sessions opened and not yet written
        self._hold: int | None = None
        self._held: dict[int, list[tuple[int, tuple[Any, ...]]]] = {}
        self._held_count = 0
        self._seq = 0

    def replay(self, hold: int) -> None:
        """Replay mode (import only; call before :meth:`start`): keep the records of open
        sessions in memory, at most ``hold`` of them, and write only those of sessions still
        open at :meth:`close` (or pushed out by the cap). See the module docstring."""
        if hold < 1:
            raise ValueError("hold must be at least 1 record")
        self._hold = hold

    def _new_table(self) -> SessionTable:
        s = self.settings
        return SessionTable(s.sessions.idle_timeout, {
            site.name: s.for_site(site.name, "idle_timeout") for site in s.sites
        })

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.settings.store.fsync else 'NORMAL'}")
        for stmt in SCHEMA:
            conn.execute(stmt)
        self.aggregates.setup(conn)
        for row in conn.execute(
            "SELECT sid, id, key, source, site, first_log, last_log, last_wall, records "
            "FROM sessions"
        ):
            self.table.restore(Session(*row))
        for source, clock in conn.execute("SELECT source, log_time FROM clocks"):
            self.table.clocks[source] = max(self.table.clocks.get(source, clock), clock)
        (self._records,) = conn.execute("SELECT count(*) FROM records").fetchone()
        self._writer = conn
        _warm_up(self.settings)
        self._thread = threading.Thread(target=self._run, name="lethelog-writer", daemon=True)
        self._thread.start()
        self._readers = ThreadPoolExecutor(
            max_workers=self.settings.store.readers, thread_name_prefix="lethelog-reader"
        )
        self.metrics.gauge("lethelog_sessions_live", "Open sessions.", lambda: len(self.table))
        self.metrics.gauge("lethelog_records_live", "Records held.", lambda: self._records)
        self.metrics.gauge(
            "lethelog_queue_depth", "Batches waiting for the writer.", lambda: self._pending_writes
        )
        log.info("store_opened", backend="sqlite", path=str(self.path),
                 sessions=len(self.table), records=self._records)

    async def close(self) -> None:
        if self._thread is not None:
            if self._hold is not None:
                await self._submit("persist", None, bounded=False)
            await self._submit("checkpoint", None, bounded=False)
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        log.info("store_closed", records=self._records, sessions=len(self.table))

    # ------------------------------------------------------------------ writer side

    def _submit(self, kind: str, payload: Any, bounded: bool) -> asyncio.Future[Any]:
        assert self._loop is not None, "store not started"
        if bounded:
            with self._pending_lock:
                if self._pending_writes >= self.settings.ingest.queue_size:
                    raise StoreBusy(retry_after=1.0)
                self._pending_writes += 1
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((kind, payload, fut))
        return fut

    def _resolve(self, fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        def done() -> None:
            if fut.cancelled():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(done)

    def _run(self) -> None:
        conn = self._writer
        while True:
            item = self._queue.get()
            if item is None:
                break
            jobs = [item]
            if item[0] == "write":  # group commit: take every waiting write along
                while len(jobs) < 256:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)
                        break
                    jobs.append(nxt)
            writes = [j for j in jobs if j[0] == "write"]
            others = [j for j in jobs if j[0] != "write"]
            if writes:
                self._do_writes(conn, writes)
            for kind, payload, fut in others:
                try:
                    result = getattr(self, f"_do_{kind}")(conn, payload)
                except BaseException as exc:  # reported to the caller, never kills the writer
                    log.error("store_job_failed", job=kind, error=type(exc).__name__)
                    self._recover(conn, reload=kind in ("sweep", "erase"))
                    self._resolve(fut, None, exc)
                else:
                    self._resolve(fut, result, None)
        conn.close()

    def _do_writes(self, conn: sqlite3.Connection, jobs: list[Any]) -> None:
        results: list[WriteResult] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            wall = time.time()
            results = self._write_batches(conn, [batch for _, (batch, _p), _ in jobs], wall)
            ended = self.table.expire(wall)
            deleted = self._delete_sessions(conn, ended)
            if self._hold is not None and self._held_count > self._hold:
                self._evict(conn)
            self._save_clocks(conn)
            self.aggregates.flush(conn, wall)
            conn.execute("COMMIT")
        except BaseException as exc:
            log.error("store_write_failed", error=type(exc).__name__, detail=str(exc)[:200])
            self._records -= self._held_count  # held sessions are gone with the table
            self._held, self._held_count = {}, 0
            self._recover(conn, reload=True)
            for _, _, fut in jobs:
                self._resolve(fut, None, exc)
            with self._pending_lock:
                self._pending_writes -= len(jobs)
            return
        if results:
            results[-1].sessions_ended += len(ended)
            results[-1].records_deleted += deleted
        self._count_ended(len(ended), deleted)
        with self._pending_lock:
            self._pending_writes -= len(jobs)
        for (_, _, fut), res in zip(jobs, results, strict=True):
            self._resolve(fut, res, None)

    def _write_batch(self, conn: sqlite3.Connection, batch: Batch, wall: float,
                     partial: Partial | None = None) -> WriteResult:
        """One batch (``partial`` is not needed on columns and is ignored)."""
        return self._write_batches(conn, [batch], wall)[0]

    def _write_batches(self, conn: sqlite3.Connection, batches: list[Batch], wall: float
                       ) -> list[WriteResult]:
        """Every batch the group commit took, as one frame in arrival order (the same sessions
        and counts as one batch after the other, in fewer and larger column operations); each
        caller gets its own result: its stored rows, and the sessions its records ended."""
        frames = [to_frame(b) for b in batches]
        sizes = [f.height for f in frames]
        df = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")
        got = assign(df, self.table, wall)
        self.aggregates.add_frame(df, got.sids)
        job = pl.Series("job", [j for j, n in enumerate(sizes) for _ in range(n)],
                        dtype=pl.Int32) if len(sizes) > 1 else pl.lit(0, dtype=pl.Int32)
        rows = df.select(got.sids.alias("sid"), *sql_columns(df), job.alias("job")).filter(
            pl.col("sid").is_not_null())
        if self._hold is not None:  # replay mode: sessions opened now are held, not written
            self._held.update((sid, []) for sid in got.started)
            keep = pl.col("sid").is_in(list(self._held))
            for row in rows.filter(keep).drop("job").iter_rows():
                self._seq += 1
                self._held[row[0]].append((self._seq, row))
            held = rows.select(keep.sum()).item()
            self._held_count += held
            self._records += held
            rows = rows.filter(~keep)
        if rows.height:
            conn.executemany(_INSERT, rows.drop("job").iter_rows())
            self.inserted += rows.height
        self._records += rows.height
        deleted = self._delete_sessions(conn, got.ended)
        conn.executemany(_UPSERT_SESSION, [
            (s.sid, s.id, s.key, s.source, s.site, s.first_log, s.last_log, s.last_wall, s.records)
            for s in got.touched if s.sid not in self._held
        ])
        self.metrics.inc("lethelog_sessions_started_total", len(got.started))
        self._count_ended(len(got.ended), deleted)
        if len(sizes) == 1:
            return [WriteResult(stored=rows.height, sessions_ended=len(got.ended),
                                records_deleted=deleted)]
        results = [WriteResult() for _ in sizes]
        for j, n in rows.group_by("job").len().iter_rows():
            results[j].stored = n
        starts = list(itertools.accumulate(sizes[:-1], initial=0))
        for s, at in zip(got.ended, got.ended_at, strict=True):
            res = results[bisect.bisect_right(starts, at) - 1]
            res.sessions_ended += 1
            res.records_deleted += s.records
        return results

    def _save_clocks(self, conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO clocks (source, log_time) VALUES (?, ?) "
            "ON CONFLICT(source) DO UPDATE SET log_time=excluded.log_time",
            list(self.table.clocks.items()),
        )

    def _delete_sessions(self, conn: sqlite3.Connection, ended: Iterable[Session]) -> int:
        sids = [s.sid for s in ended]
        deleted = 0
        if self._held:  # replay mode: a held session's records never reach the file
            written = []
            for sid in sids:
                mine = self._held.pop(sid, None)
                if mine is None:
                    written.append(sid)
                else:
                    deleted += len(mine)
            self._held_count -= deleted
            self._records -= deleted
            sids = written
        if not sids:
            return deleted
        on_disk = 0
        for chunk in _chunks(sids, 500):
            marks = ",".join("?" * len(chunk))
            on_disk += conn.execute(f"DELETE FROM records WHERE sid IN ({marks})", chunk).rowcount
            conn.execute(f"DELETE FROM sessions WHERE sid IN ({marks})", chunk)
        self._records -= on_disk
        self._needs_checkpoint = True
        return deleted + on_disk

    def _evict(self, conn: sqlite3.Connection) -> None:
        """Replay mode over its cap: write the oldest held sessions (to 3/4 of the cap)."""
        assert self._hold is not None
        target = self._hold * 3 // 4
        out: list[int] = []
        n = self._held_count
        for sid, mine in self._held.items():  # insertion order: oldest session first
            if n <= target:
                break
            out.append(sid)
            n -= len(mine)
        self._write_held(conn, out)

    def _write_held(self, conn: sqlite3.Connection, sids: list[int]) -> int:
        """Insert the held records of ``sids`` in arrival order, and their session rows."""
        held: list[tuple[int, tuple[Any, ...]]] = []
        for sid in sids:
            held.extend(self._held.pop(sid))
        held.sort(key=_first)
        conn.executemany(_INSERT, [row for _, row in held])
        by_sid = self.table.by_sid
        conn.executemany(_UPSERT_SESSION, [
            (s.sid, s.id, s.key, s.source, s.site, s.first_log, s.last_log, s.last_wall, s.records)
            for s in (by_sid[sid] for sid in sids)
        ])
        self._held_count -= len(held)
        self.inserted += len(held)
        return len(held)

    def _do_persist(self, conn: sqlite3.Connection, _: Any) -> int:
        """Replay mode's end: write every session still open, then write through from now on."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = self._write_held(conn, list(self._held))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._hold = None
        return n

    def _count_ended(self, sessions: int, records: int) -> None:
        if sessions:
            self.metrics.inc("lethelog_sessions_ended_total", sessions)
        if records:
            self.metrics.inc("lethelog_records_deleted_total", records)

    def _recover(self, conn: sqlite3.Connection, reload: bool) -> None:
        """After a failed job (a full or read-only disk): roll back, and rebuild what memory
        holds from the database, so the next job starts clean once the disk is writable again.
        Never raises: the writer thread must outlive any disk fault."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.error("store_rollback_failed", error=type(exc).__name__)
        if not reload:
            return
        try:
            self._reload_sessions(conn)
            self.aggregates.rolled_back(conn)
        except Exception as exc:  # the next failed or good job tries again
            log.error("store_reload_failed", error=type(exc).__name__)

    def _reload_sessions(self, conn: sqlite3.Connection) -> None:
        """After a rolled-back transaction, rebuild the in-memory table from the database."""
        self.table = self._new_table()
        for row in conn.execute(
            "SELECT sid, id, key, source, site, first_log, last_log, last_wall, records "
            "FROM sessions"
        ):
            self.table.restore(Session(*row))

    def _do_sweep(self, conn: sqlite3.Connection, now: float) -> SweepResult:
        ended = self.table.expire(now)
        result = SweepResult()
        if ended:
            conn.execute("BEGIN IMMEDIATE")
            result.records_deleted = self._delete_sessions(conn, ended)
            conn.execute("COMMIT")
            result.sessions_ended = len(ended)
            self._count_ended(len(ended), result.records_deleted)
        self.aggregates.maintain(conn, now, self.table.by_sid)
        if self._needs_checkpoint:
            result.checkpointed = self._do_checkpoint(conn, None)
        return result

    def _do_checkpoint(self, conn: sqlite3.Connection, _: Any) -> bool:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy == 0:
            self._needs_checkpoint = False
            return True
        return False

    def _do_erase(self, conn: sqlite3.Connection, payload: tuple[list[str], list[str]]
                  ) -> SweepResult:
        ids, keys = payload
        victims: list[Session] = []
        wanted_ids, wanted_keys = set(ids), set(keys)
        for s in list(self.table.by_sid.values()):
            if s.id in wanted_ids or s.key in wanted_keys:
                ended = self.table.end(s.sid)
                if ended is not None:
                    victims.append(ended)
        conn.execute("BEGIN IMMEDIATE")
        deleted = self._delete_sessions(conn, victims)
        conn.execute("COMMIT")
        self._count_ended(len(victims), deleted)
        result = SweepResult(len(victims), deleted)
        result.checkpointed = self._do_checkpoint(conn, None)
        return result

    # ------------------------------------------------------------------ public API

    async def write(self, records: Batch, partial: Partial | None = None) -> WriteResult:
        """``records``: a list of records or a DataFrame (``collector.store.frame``).
        ``partial``: ``collector.aggregates.counter.partial_counts`` of ``records``, counted
        before the writer (by ``lethelog import``'s workers); None: the writer counts it all."""
        if len(records) == 0:
            return WriteResult()
        return await asyncio.shield(self._submit("write", (records, partial), bounded=True))

    async def sweep(self, now: float) -> SweepResult:
        return await self._submit("sweep", now, bounded=False)

    async def erase(self, session_ids: list[str] | None = None, keys: list[str] | None = None
                    ) -> SweepResult:
        payload = (list(session_ids or []), list(keys or []))
        return await self._submit("erase", payload, bounded=False)

    async def read(self, fn: Callable[[sqlite3.Connection], Any],
                   scope: ReadScope | None = None) -> Any:
        """Run ``fn(conn)`` on a read-only connection in the reader pool (the whole database:
        ``scope`` is for backends that fetch what a read needs)."""
        assert self._readers is not None, "store not started"

        def run() -> Any:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = connect(self.path, readonly=True)
                self._local.conn = conn
            return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def records(self, limit: int, session: str | None = None,
                      sites: frozenset[str] | None = None) -> list[Record]:
        cols = ", ".join(f"r.{c}" for c in COLUMNS)
        sql = f"SELECT {cols}, s.id FROM records r JOIN sessions s ON s.sid = r.sid WHERE 1"
        args: list[Any] = []
        if session is not None:
            sql += " AND s.id = ?"
            args.append(session)
        if sites is not None:  # tenant scope, in the query itself
            sql += f" AND r.site IN ({','.join('?' * len(sites))})" if sites else " AND 0"
            args.extend(sorted(sites))
        sql += " ORDER BY r.time DESC, r.rid DESC LIMIT ?"
        args.append(limit)

        def fetch(conn: sqlite3.Connection) -> list[Record]:
            return [row_to_record(row) for row in conn.execute(sql, args)]

        return await self.read(fetch)

    async def stats(self) -> StoreStats:
        return StoreStats(records=self._records, sessions=len(self.table),
                          queue_depth=self._pending_writes,
                          extra={"path": str(self.path)})


def _warm_up(settings: Settings) -> None:
    """Run the columnar write once on a throwaway batch at start, so that polars' thread pool
    and allocator arenas exist before the first request (memory then stays flat under load)."""
    from collector.aggregates.frame_counter import FrameAggregator

    table = SessionTable(settings.sessions.idle_timeout)
    df = to_frame([{"time": 0.0, "session_key": "warm-up", "status": 404, "path": "/",
                    "path_template": "/", "ip": "192.0.2.0", "languages": ["en"]}])
    got = assign(df, table, 0.0)
    counter = FrameAggregator()
    counter.add_frame(df, got.sids)
    df.select(sql_columns(df)).rows()


def row_to_record(row: tuple[Any, ...]) -> Record:
    rec: Record = dict(zip(COLUMNS, row, strict=False))
    rec["session"] = row[len(COLUMNS)]
    rec["time"] = rfc3339(rec["time"])
    if rec.get("languages") is not None:
        rec["languages"] = orjson.loads(rec["languages"])
    for b in _BOOL:
        if rec.get(b) is not None:
            rec[b] = bool(rec[b])
    return rec


def _first(item: tuple[int, tuple[Any, ...]]) -> int:
    return item[0]


def _chunks(items: list[int], n: int) -> Iterable[list[int]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, n)):
        yield chunk
