"""``lethelog import``: replay log files through the serve pipeline, on every core.

The parent reads the files (plain, ``.gz``, or ``-`` for stdin) in chunks of lines and hands each
chunk to a worker process. A worker runs exactly what ``POST /v1/logs`` runs on a ``text/plain``
body — :meth:`collector.pipeline.Pipeline.process_body`: the columnar parse and the stages of
:func:`collector.pipeline.build_steps` — and sends back the shaped batch (a DataFrame). The
parent feeds them, in file order, to the one store writer (``Store.write``), several batches
in flight so the writer's group commit always has work.

All workers pseudonymise with the same secret: the parent opens the data directory's
:class:`~collector.keys.KeyRing` once and passes its current key to each worker (a
:class:`PinnedKeys`), so a visitor seen by two workers gets one session key.

Records arrive with source ``import`` (``--source``): the log clock of that source advances with
the file's timestamps, so replaying an old file ends its sessions as it goes and keeps only those
still open at its end, exactly as a shipper replaying it to ``serve`` would. With the SQLite
store the import runs it in replay mode (:meth:`collector.store.sqlite.SQLiteStore.replay`): the
records of a session that ends during the replay are counted into the aggregates but never
written to the database file; only the sessions open at the end (or pushed out of memory by
``--hold``) are.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import multiprocessing
import multiprocessing.pool
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast

import polars as pl
import structlog

from collector.aggregates.counter import Partial, partial_counts
from collector.enrich.geo import GeoEnricher
from collector.enrich.ua import UAEnricher
from collector.keys import Key, KeyRing
from collector.metrics import Metrics
from collector.parse import FORMATS, ParseError, detect_format
from collector.parse.lines import W3CParser
from collector.pipeline import Pipeline, build_steps, records_of
from collector.record import Record
from collector.settings import Settings
from collector.sources.body import BodyError
from collector.store import Store, StoreBusy, open_store
from collector.store.sqlite import SQLiteStore

log = structlog.get_logger("lethelog.import")

CHUNK_LINES = 4000  # lines per task sent to a worker
FIRST_ERRORS = 5  # rejected lines listed in the summary
HOLD_RECORDS = 200_000  # replay mode's default cap on records held in memory
# Workers could also count the session-independent aggregates of their chunks
# (collector.aggregates.counter.partial_counts, ``--precount``); the SQLite store now counts a
# batch's aggregates on columns (collector.aggregates.frame_counter) and ignores them, so it is
# off unless asked for.
PRECOUNT_WORKERS = 1_000_000


class ImportFailed(Exception):
    """The import cannot go on (unreadable file, unknown format). Message is for the operator."""


class PinnedKeys(KeyRing):
    """A key ring that always answers with one given key (the parent's current secret)."""

    def __init__(self, key: Key) -> None:  # no file: the parent owns the key file
        self._key = key
        self._keys = {key.period: key}

    def current(self, now: float | None = None) -> Key:
        return self._key

    def recent(self, now: float | None = None) -> list[Key]:
        return [self._key]

    def prune(self, now: float | None = None, save: bool = True) -> int:
        return 0


# --------------------------------------------------------------------------- worker side

@dataclass(slots=True)
class Chunk:
    file: int  # index into the list of inputs
    first_line: int  # 1-based number of the chunk's first line in its file
    data: bytes
    fmt: str | None
    prefix: int = 0  # header lines (W3C #Fields:) repeated at the chunk's start
    precount: bool = False  # also count the records' session-independent aggregates


@dataclass(slots=True)
class ChunkResult:
    file: int
    lines: int
    frame: pl.DataFrame  # the shaped batch (crosses the process boundary as Arrow, not dicts)
    errors: list[tuple[int, str]]
    dropped: int
    partial: Partial | None = None  # the records' session-independent aggregate counts

    @property
    def records(self) -> list[Record]:
        """The shaped batch as stored-record dicts."""
        return records_of(self.frame)


_worker_pipeline: Pipeline | None = None
_worker_settings: Settings | None = None


def _build_pipeline(settings: Settings, key: Key, source: str) -> Pipeline:
    geo = GeoEnricher(settings.enrich, settings.server.data_dir)
    ua = UAEnricher(settings.enrich.ua_cache_size)
    return Pipeline(build_steps(settings, PinnedKeys(key), geo, ua, source=source))


def _init_worker(settings: Settings, key: Key, source: str) -> None:
    global _worker_pipeline, _worker_settings
    _worker_settings = settings
    _worker_pipeline = _build_pipeline(settings, key, source)


def process_chunk(chunk: Chunk, pipeline: Pipeline | None = None,
                  settings: Settings | None = None) -> ChunkResult:
    """Parse and run one chunk through the pipeline (in a worker, or inline)."""
    pipeline = pipeline or _worker_pipeline
    settings = settings or _worker_settings
    assert pipeline is not None and settings is not None, "worker not initialised"
    offset = chunk.first_line - 1 - chunk.prefix
    try:
        result = pipeline.process_body(chunk.data, "text/plain", chunk.fmt,
                                       settings.ingest.max_line_length)
    except (BodyError, ParseError) as exc:
        lines = chunk.data.count(b"\n")
        return ChunkResult(chunk.file, lines, pl.DataFrame(), [(chunk.first_line, str(exc))], 0)
    errors = [(line + offset, reason) for line, reason in result.errors]
    partial = None
    if chunk.precount:  # counted here, in parallel, instead of in the store's writer
        m = settings.masking
        partial = partial_counts(result.records, m.ipv4_keep_bits, m.ipv6_keep_bits)
    return ChunkResult(chunk.file, chunk.data.count(b"\n") - chunk.prefix, result.frame,
                       errors, result.dropped, partial)


# --------------------------------------------------------------------------- reading files

@dataclass
class Input:
    name: str  # as given on the command line
    size: int | None  # bytes on disk, when known (for the progress bar)
    consumed: int = 0  # bytes of the file read so far (compressed bytes for .gz)


def open_input(name: str) -> tuple[IO[bytes], IO[bytes] | None]:
    """(reader of decompressed bytes, underlying raw file for progress)."""
    if name == "-":
        return sys.stdin.buffer, None
    try:
        raw = open(name, "rb")
    except OSError as exc:
        raise ImportFailed(f"{name}: cannot open: {exc.strerror or exc}") from None
    magic = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if name.endswith(".gz") or magic == b"\x1f\x8b":
        unzipped = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        return unzipped, raw
    return raw, raw


def _format_name(head: list[str], fmt: str | None) -> str | None:
    """The format name every chunk of a file is parsed with (detected once from its head)."""
    if fmt is not None:
        return fmt
    parser = detect_format(head)
    if parser is None:
        return None
    if isinstance(parser, W3CParser):
        return "w3c"
    for name, known in FORMATS.items():
        if known is parser:
            return name
    return parser.name if parser.name in FORMATS else None


def read_chunks(inputs: list[Input], fmt: str | None, chunk_lines: int = CHUNK_LINES
                ) -> Iterator[Chunk]:
    """Chunks of whole lines from every input, in order; a W3C header repeats in each chunk."""
    for index, inp in enumerate(inputs):
        reader, raw = open_input(inp.name)
        try:
            number = 1
            name: str | None = fmt
            decided = fmt is not None
            header: list[bytes] = []
            while True:
                lines = reader.readlines(chunk_lines * 256)
                if not lines:
                    break
                if lines[-1] and not lines[-1].endswith(b"\n"):
                    lines[-1] += b"\n"
                if not decided:
                    head = [ln.decode("utf-8", "replace").rstrip("\r\n") for ln in lines[:200]]
                    name = _format_name(head, None)
                    decided = True
                if name in ("w3c", "iis"):
                    prefix = list(header)
                    for ln in lines:
                        if ln[:1] == b"#" and ln[:8].lower().startswith(b"#fields:"):
                            header = [ln]
                    data = b"".join(prefix + lines)
                else:
                    prefix = []
                    data = b"".join(lines)
                if raw is not None:
                    try:
                        inp.consumed = raw.tell()
                    except (OSError, ValueError):
                        pass
                yield Chunk(index, number, data, name, len(prefix))
                number += len(lines)
        except OSError as exc:
            raise ImportFailed(f"{inp.name}: read failed: {exc}") from None
        finally:
            if reader is not sys.stdin.buffer:
                reader.close()
            if raw is not None and raw is not reader:
                raw.close()
        if inp.size is not None:
            inp.consumed = inp.size


# --------------------------------------------------------------------------- progress, summary

@dataclass
class Totals:
    lines: int = 0
    accepted: int = 0
    rejected: int = 0
    dropped: int = 0
    sessions_ended: int = 0
    records_deleted: int = 0
    errors: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, reason)
    started: float = field(default_factory=time.monotonic)
    sessions_live: int = 0
    records_live: int = 0
    records_written: int = 0  # record rows that reached the database file (replay mode: few)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.lines / self.elapsed if self.elapsed > 0 else 0.0


class Progress:
    """One self-rewriting line on a terminal: lines, lines/s, rejects, ETA. Silent otherwise."""

    def __init__(self, out: IO[str], inputs: list[Input], enabled: bool) -> None:
        self.out = out
        self.inputs = inputs
        self.enabled = enabled
        self.last = 0.0

    def update(self, totals: Totals, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        sizes = [i.size for i in self.inputs]
        done_frac: float | None = None
        if all(s is not None for s in sizes):
            total = sum(s or 0 for s in sizes)
            done = sum(i.consumed for i in self.inputs)
            done_frac = min(1.0, done / total) if total else 1.0
        rate = totals.rate
        width = 24
        if done_frac is not None:
            filled = int(done_frac * width)
            bar = "[" + "#" * filled + "-" * (width - filled) + f"] {done_frac * 100:5.1f}%"
            eta = (totals.elapsed / done_frac - totals.elapsed) if done_frac > 0 else 0.0
            eta_text = f"ETA {_duration(eta)}"
        else:
            bar, eta_text = "[" + "?" * width + "]", "ETA ?"
        text = (f"\r{bar} {totals.lines:,} lines  {rate:,.0f} lines/s  "
                f"{totals.rejected:,} rejected  {eta_text} ")
        self.out.write(text)
        self.out.flush()

    def finish(self) -> None:
        if self.enabled:
            self.out.write("\n")
            self.out.flush()


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def summary(totals: Totals, inputs: list[Input]) -> str:
    names = ", ".join(i.name for i in inputs)
    lines = [
        f"imported  {names}",
        f"lines     {totals.lines:,}",
        f"accepted  {totals.accepted:,}",
        f"rejected  {totals.rejected:,}",
    ]
    for name, line, reason in totals.errors[:FIRST_ERRORS]:
        lines.append(f"          {name}:{line}: {reason}")
    if totals.rejected > FIRST_ERRORS:
        lines.append(f"          … and {totals.rejected - FIRST_ERRORS:,} more")
    if totals.dropped:
        lines.append(f"dropped   {totals.dropped:,} (counted in aggregates only)")
    lines += [
        f"sessions  {totals.sessions_live:,} live, {totals.sessions_ended:,} ended "
        "(replaying a file keeps only the sessions open at its end)",
        f"records   {totals.records_live:,} live, {totals.records_deleted:,} deleted",
        f"elapsed   {totals.elapsed:.2f} s",
        f"rate      {totals.rate:,.0f} lines/s",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the import

@dataclass
class ImportOptions:
    files: list[str]
    fmt: str | None = None
    workers: int = 0  # 0: one per core
    source: str = "import"
    in_flight: int = 6  # store writes waiting at once
    progress: bool = False
    chunk_lines: int = CHUNK_LINES
    hold: int = HOLD_RECORDS  # replay mode: records of open sessions kept in memory at most
    # aggregates counted partly in the workers (None: when there are PRECOUNT_WORKERS or more)
    precount: bool | None = None


async def _write(store: Store, records: pl.DataFrame, partial: Partial | None) -> Any:
    while True:
        try:
            if isinstance(store, SQLiteStore):
                return await store.write(records, partial)
            return await store.write(records)
        except StoreBusy as exc:
            await asyncio.sleep(min(exc.retry_after, 0.05))


# Threads that importing polars starts and that survive a fork: jemalloc's background purgers
# (it registers fork handlers) and polars' idle out-of-core cleaner. Its compute pool
# ("polars-N") and any other thread make a fork unsafe.
_FORK_SAFE_THREADS = frozenset(("jemalloc_bg_thd", "polars-ooc-clea"))


def _fork_safe() -> bool:
    """Whether this process runs no thread but the main one and the fork-safe helpers."""
    try:
        tasks = os.listdir("/proc/self/task")
        names = []
        for task in tasks:
            with open(f"/proc/self/task/{task}/comm") as fh:
                names.append(fh.read().strip())
    except OSError:
        return False
    return sum(1 for n in names if n not in _FORK_SAFE_THREADS) == 1


async def run_import(settings: Settings, opts: ImportOptions, out: IO[str] | None = None
                     ) -> Totals:
    """Import ``opts.files`` into the store of ``settings``; returns the totals."""
    out = out or sys.stdout
    inputs: list[Input] = []
    for name in opts.files:
        size: int | None = None
        if name != "-":
            try:
                size = os.stat(name).st_size
            except OSError as exc:
                raise ImportFailed(f"{name}: cannot open: {exc.strerror or exc}") from None
        inputs.append(Input(name, size))
    if opts.fmt is not None and opts.fmt not in FORMATS:
        from collector.parse import compile_format

        try:
            compile_format(opts.fmt)
        except ValueError as exc:
            raise ImportFailed(f"--format: unknown log format: {exc}") from None
    if settings.store.backend == "redis":  # the cluster's secrets: serve computes the same keys
        from collector.store import open_keyring

        async with open_keyring(settings) as ring:
            key = ring.current()
    else:
        keyring = KeyRing(settings.server.data_dir / "session-keys.json",
                          settings.sessions.key_rotation, settings.sessions.key_retention)
        key = keyring.current()
    workers = opts.workers if opts.workers > 0 else (os.cpu_count() or 1)
    # Fork the workers before the store starts its threads — but only from a process that has
    # started no thread of its own yet: a fork copies no thread, so a polars thread pool (or a
    # lock some thread held) would be dead in the child. Otherwise (lethelog imported by a
    # process that already ran polars) the workers are spawned (a fresh interpreter each).
    pool: multiprocessing.pool.Pool | None = None
    inline: Pipeline | None = None
    if workers > 1:
        ctx: multiprocessing.context.BaseContext
        if _fork_safe():
            ctx = multiprocessing.get_context("fork")
        else:
            ctx = multiprocessing.get_context("spawn")
        pool = ctx.Pool(workers, _init_worker, (settings, key, opts.source))
    else:
        inline = _build_pipeline(settings, key, opts.source)
    store = open_store(settings, Metrics())
    if isinstance(store, SQLiteStore) and opts.hold > 0:
        store.replay(opts.hold)
    precount = isinstance(store, SQLiteStore) and (
        opts.precount if opts.precount is not None else workers >= PRECOUNT_WORKERS)
    await store.start()
    totals = Totals()
    progress = Progress(out, inputs, opts.progress)
    loop = asyncio.get_running_loop()
    writes: collections.deque[asyncio.Future[Any]] = collections.deque()

    async def account(res: ChunkResult) -> None:
        totals.lines += res.lines
        totals.accepted += len(res.frame)
        totals.rejected += len(res.errors)
        totals.dropped += res.dropped
        name = inputs[res.file].name
        for line, reason in res.errors:
            if len(totals.errors) < FIRST_ERRORS:
                totals.errors.append((name, line, reason))
        if len(res.frame):
            writes.append(asyncio.ensure_future(_write(store, res.frame, res.partial)))
        while len(writes) > opts.in_flight:
            _add_written(totals, await writes.popleft())
        progress.update(totals)

    try:
        chunks = read_chunks(inputs, opts.fmt, opts.chunk_lines)
        if pool is not None:
            pending: collections.deque[multiprocessing.pool.AsyncResult[ChunkResult]] = (
                collections.deque())
            window = workers * 3
            for chunk in chunks:
                chunk.precount = precount
                pending.append(pool.apply_async(process_chunk, (chunk,)))
                while len(pending) >= window or (pending and pending[0].ready()):
                    head = pending.popleft()
                    res = head.get() if head.ready() else await loop.run_in_executor(
                        None, head.get)
                    await account(res)
            while pending:
                await account(await loop.run_in_executor(None, pending.popleft().get))
        else:
            assert inline is not None
            for chunk in chunks:
                chunk.precount = precount
                await account(process_chunk(chunk, inline, settings))
        while writes:
            _add_written(totals, await writes.popleft())
        swept = await store.sweep(time.time())
        totals.sessions_ended += swept.sessions_ended
        totals.records_deleted += swept.records_deleted
        stats = await store.stats()
        totals.sessions_live, totals.records_live = stats.sessions, stats.records
    finally:
        for w in writes:
            w.cancel()
        if pool is not None:
            pool.terminate()
            pool.join()
        await store.close()
        if isinstance(store, SQLiteStore):
            totals.records_written = store.inserted
        progress.update(totals, force=True)
        progress.finish()
    log.info("import_finished", lines=totals.lines, accepted=totals.accepted,
             rejected=totals.rejected, seconds=round(totals.elapsed, 3))
    return totals


def _add_written(totals: Totals, result: Any) -> None:
    totals.sessions_ended += result.sessions_ended
    totals.records_deleted += result.records_deleted
