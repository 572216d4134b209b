"""``lethelog ship FILE... --url URL``: a small built-in shipper for ``POST /v1/logs``.

Posts log files (or stdin, ``-``) in gzip-compressed batches of whole lines, one batch in flight
at a time. A batch is retried with exponential backoff (honouring ``Retry-After``) on 503, 429,
408, 5xx, timeouts and connection errors, and split in halves on 413. After each ``2xx`` the
byte offset where the batch ended is written to a checkpoint file (atomically, fsynced), so a
shipper that is killed, or a service that crashes, resumes after the last acknowledged batch:
**at-least-once**. The only duplicates possible are the lines of the batch in flight when a crash
came between the service's commit and the shipper's checkpoint — at most one batch per crash.

``--follow`` keeps reading a growing file (and follows it across rotation by rename or
truncation), as ``tail -F`` does. The token comes from ``--token-file`` or ``$LETHELOG_TOKEN``,
never from the command line (where ``ps`` would show it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import gzip
import hashlib
import os
import random
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

from collector.cli import command
from collector.settings import parse_duration, parse_size

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_ERRORS_SHOWN = 20


class ShipError(Exception):
    """The shipper cannot go on (refused token, bad request, gave up). Exit status 1 or 3."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    """Where the last acknowledged batch of one file ended."""

    path: Path  # the checkpoint file itself
    source: str  # the shipped file's real path
    dev: int = 0
    ino: int = 0
    offset: int = 0  # bytes acknowledged
    lines: int = 0  # lines acknowledged
    head: str = ""  # sha256 of the file's first bytes (up to 1 KiB): same file?

    @classmethod
    def for_file(cls, state_dir: Path, source: Path) -> Checkpoint:
        real = str(source.resolve())
        name = hashlib.sha256(real.encode()).hexdigest()[:20] + ".json"
        cp = cls(state_dir / name, real)
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            doc = orjson.loads(cp.path.read_bytes())
            if doc.get("source") == real:
                cp.dev, cp.ino = int(doc["dev"]), int(doc["ino"])
                cp.offset, cp.lines, cp.head = int(doc["offset"]), int(doc["lines"]), doc["head"]
        return cp

    def matches(self, fh: IO[bytes]) -> bool:
        """The open file is the one this checkpoint was written for, and not shorter."""
        st = os.fstat(fh.fileno())
        if (st.st_dev, st.st_ino) != (self.dev, self.ino) or st.st_size < self.offset:
            return False
        return _head(fh) == self.head

    def save(self, fh: IO[bytes], offset: int, lines: int) -> None:
        st = os.fstat(fh.fileno())
        self.dev, self.ino, self.offset, self.lines = st.st_dev, st.st_ino, offset, lines
        if not self.head or offset <= 1024:
            self.head = _head(fh)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = orjson.dumps({"source": self.source, "dev": self.dev, "ino": self.ino,
                             "offset": offset, "lines": lines, "head": self.head,
                             "saved": time.time()})
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        dirfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def _head(fh: IO[bytes]) -> str:
    return hashlib.sha256(os.pread(fh.fileno(), 1024, 0)).hexdigest()


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lethelog" / "ship"


# --------------------------------------------------------------------------- batches


@dataclass
class Batch:
    data: bytes
    lines: int
    first_line: int  # 1-based line number in the file of the batch's first line
    end_offset: int  # byte offset just after the batch (None-like -1 for stdin)


@dataclass
class Totals:
    accepted: int = 0
    rejected: int = 0
    dropped: int = 0
    lines: int = 0
    bytes: int = 0
    batches: int = 0
    retries: int = 0
    errors_shown: int = 0
    started: float = field(default_factory=time.monotonic)


def _split(batch: Batch) -> tuple[Batch, Batch]:
    lines = batch.data.splitlines(keepends=True)
    half = len(lines) // 2
    a, b = b"".join(lines[:half]), b"".join(lines[half:])
    start = batch.end_offset - len(batch.data)
    return (Batch(a, half, batch.first_line, start + len(a) if batch.end_offset >= 0 else -1),
            Batch(b, len(lines) - half, batch.first_line + half, batch.end_offset))


# --------------------------------------------------------------------------- the shipper


class Shipper:
    def __init__(self, ns: argparse.Namespace) -> None:
        self.ns = ns
        self.url = logs_url(ns.url, ns.format)
        self.token = read_token(ns.token_file)
        self.batch_lines: int = ns.batch_lines
        self.batch_bytes: int = ns.batch_bytes
        self.gzip: bool = not ns.no_gzip
        self.give_up: float = ns.give_up_after
        self.max_backoff: float = ns.max_backoff
        self.totals = Totals()
        self.progress = Progress(ns.progress, ns.quiet)
        self.ssl: ssl.SSLContext | bool = True
        if ns.cafile:
            self.ssl = ssl.create_default_context(cafile=ns.cafile)

    def content_type(self, first: bytes) -> str:
        fmt = (self.ns.format or "").lower()
        if fmt in ("json", "ndjson") or (not fmt and first.lstrip().startswith(b"{")):
            return "application/x-ndjson"
        return "text/plain"

    async def run(self, files: list[str]) -> int:
        timeout = aiohttp.ClientTimeout(total=self.ns.timeout)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=True) as session:
            self.session = session
            for name in files:
                if name == "-":
                    await self.ship_stream(sys.stdin.buffer, "<stdin>")
                else:
                    await self.ship_file(Path(name))
        self.progress.done(self.totals)
        return 0

    # ---------------------------------------------------------------- files

    async def ship_file(self, path: Path) -> None:
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise ShipError(f"{path}: cannot open: {exc.strerror or exc}") from None
        cp = Checkpoint.for_file(self.ns.state_dir, path)
        self.fh = fh
        try:
            start, line = 0, 0
            if cp.offset and cp.matches(fh):
                start, line = cp.offset, cp.lines
                self.progress.note(f"{path}: resuming after line {line} (byte {start}, "
                                   f"checkpoint {cp.path})")
            elif cp.offset:
                self.progress.note(f"{path}: file changed since the checkpoint; from the start")
            fh.seek(start)
            ctype: str | None = None
            size = os.fstat(fh.fileno()).st_size
            self.progress.start(str(path), size, start)
            async for batch in self._batches(fh, start, line, path):
                if ctype is None:
                    ctype = self.content_type(batch.data[:256])
                await self.send(batch, ctype, path)
                cp.save(self.fh, batch.end_offset, batch.first_line + batch.lines - 1)
                self.progress.advance(batch.end_offset, self.totals)
        finally:
            self.fh.close()

    async def _batches(self, fh: IO[bytes], offset: int, line: int,
                       path: Path) -> AsyncIterator[Batch]:
        buf: list[bytes] = []
        size = 0
        first = line + 1
        while True:
            raw = fh.readline()
            if raw and (raw.endswith(b"\n") or not self.ns.follow):
                buf.append(raw)
                size += len(raw)
                line += 1
                offset += len(raw)
                if len(buf) >= self.batch_lines or size >= self.batch_bytes:
                    yield Batch(b"".join(buf), len(buf), first, offset)
                    buf, size, first = [], 0, line + 1
                continue
            if raw:  # following: a partial last line, wait for the rest of it
                fh.seek(offset)
            if buf:
                yield Batch(b"".join(buf), len(buf), first, offset)
                buf, size, first = [], 0, line + 1
            if not self.ns.follow:
                return
            await asyncio.sleep(self.ns.poll_interval)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue  # being rotated: wait for the new file
            mine = os.fstat(fh.fileno())
            if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
                if fh.read(1):  # the old file still has lines: finish it first
                    fh.seek(offset)
                    continue
                fh.close()
                fh = self.fh = open(path, "rb")
                offset, line, first = 0, 0, 1
                self.progress.note(f"{path}: rotated; following the new file")
            elif st.st_size < offset:
                fh.seek(0)
                offset, line, first = 0, 0, 1
                self.progress.note(f"{path}: truncated; from the start")

    async def ship_stream(self, stream: IO[bytes], name: str) -> None:
        """stdin: no checkpoint (it cannot be re-read); batches also close after 1 s idle."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=self.batch_lines * 4)

        def pump() -> None:
            for raw in iter(stream.readline, b""):
                asyncio.run_coroutine_threadsafe(queue.put(raw), loop).result()
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        reader = loop.run_in_executor(None, pump)
        buf: list[bytes] = []
        size, line, first, ctype = 0, 0, 1, None
        self.progress.start(name, 0, 0)
        eof = False
        while not eof:
            try:
                raw = await asyncio.wait_for(queue.get(), 1.0 if buf else None)
            except TimeoutError:
                raw = b""
            if raw is None:
                eof = True
            elif raw:
                buf.append(raw)
                size += len(raw)
                line += 1
                if len(buf) < self.batch_lines and size < self.batch_bytes:
                    continue
            if buf:
                batch = Batch(b"".join(buf), len(buf), first, -1)
                ctype = ctype or self.content_type(batch.data[:256])
                await self.send(batch, ctype, Path(name))
                self.progress.advance(self.totals.bytes, self.totals)
                buf, size, first = [], 0, line + 1
        await reader

    # ---------------------------------------------------------------- HTTP

    async def send(self, batch: Batch, ctype: str, path: Path) -> None:
        """Post one batch until a 2xx; a 413 splits it in halves."""
        try:
            answer = await self._post(batch, ctype)
        except _TooLarge:
            if batch.lines <= 1:
                raise ShipError(f"{path}:{batch.first_line}: the service refuses this line as "
                                "too large (413)") from None
            a, b = _split(batch)
            self.batch_lines = max(1, min(self.batch_lines, batch.lines // 2))
            self.progress.note(f"413 from the service: batches of {self.batch_lines} lines now")
            await self.send(a, ctype, path)
            await self.send(b, ctype, path)
            return
        t = self.totals
        t.batches += 1
        t.lines += batch.lines
        t.bytes += len(batch.data)
        t.accepted += int(answer.get("accepted", 0))
        t.rejected += int(answer.get("rejected", 0))
        t.dropped += int(answer.get("dropped", 0))
        for err in answer.get("errors") or []:
            if t.errors_shown >= MAX_ERRORS_SHOWN:
                break
            t.errors_shown += 1
            number = batch.first_line + int(err.get("line", 1)) - 1
            self.progress.note(f"{path}:{number}: rejected: {err.get('error')}")

    async def _post(self, batch: Batch, ctype: str) -> dict[str, Any]:
        headers = {"Content-Type": ctype}
        body = batch.data
        if self.gzip:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        delay, began = 0.5, time.monotonic()
        while True:
            why: str
            wait: float | None = None
            try:
                async with self.session.post(self.url, data=body, headers=headers,
                                             ssl=self.ssl) as resp:
                    raw = await resp.read()
                    if 200 <= resp.status < 300:
                        try:
                            doc = orjson.loads(raw) if raw else {}
                        except orjson.JSONDecodeError:
                            doc = {}
                        return doc if isinstance(doc, dict) else {}
                    if resp.status == 413:
                        raise _TooLarge
                    message = _error_text(raw)
                    if resp.status not in RETRY_STATUS:
                        raise ShipError(f"{self.url}: HTTP {resp.status}: {message}")
                    why = f"HTTP {resp.status}"
                    wait = retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                why = type(exc).__name__
            if self.give_up and time.monotonic() - began > self.give_up:
                raise ShipError(f"{self.url}: gave up after {self.give_up:g}s ({why})", code=3)
            pause = wait if wait is not None else delay * random.uniform(0.75, 1.25)
            self.totals.retries += 1
            self.progress.retrying(why, pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, self.max_backoff)


class _TooLarge(Exception):
    pass


def _error_text(raw: bytes) -> str:
    try:
        doc = orjson.loads(raw)
        if isinstance(doc, dict) and doc.get("error"):
            return str(doc["error"])[:300]
    except orjson.JSONDecodeError:
        pass
    return raw[:300].decode("utf-8", errors="replace").strip()


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def logs_url(url: str, fmt: str | None) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ShipError(f"--url: expected http(s)://HOST[:PORT][/v1/logs], got {url!r}", code=2)
    path = parts.path if parts.path not in ("", "/") else "/v1/logs"
    query = parts.query
    if fmt and fmt.lower() not in ("json", "ndjson"):
        query = "&".join(q for q in (query, urlencode({"format": fmt})) if q)
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def read_token(token_file: str | None) -> str | None:
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ShipError(f"--token-file: cannot read {token_file}: "
                            f"{exc.strerror or exc}", code=2) from None
        if not token:
            raise ShipError(f"--token-file: {token_file} is empty", code=2)
        return token
    return os.environ.get("LETHELOG_TOKEN") or None


# --------------------------------------------------------------------------- progress


class Progress:
    """A progress bar on stderr (a terminal, or ``--progress``), and notes."""

    def __init__(self, mode: str, quiet: bool) -> None:
        self.bar = (mode == "always") or (mode == "auto" and sys.stderr.isatty())
        self.quiet = quiet
        self.name, self.size, self.start_offset = "", 0, 0
        self.last = 0.0
        self.began = time.monotonic()

    def _clear(self) -> None:
        if self.bar:
            sys.stderr.write("\r\x1b[K")

    def note(self, text: str) -> None:
        if self.quiet:
            return
        self._clear()
        print(f"lethelog ship: {text}", file=sys.stderr, flush=True)

    def start(self, name: str, size: int, offset: int) -> None:
        self.name, self.size, self.start_offset = name, size, offset
        self.began = time.monotonic()

    def advance(self, offset: int, t: Totals, force: bool = False) -> None:
        if not self.bar or self.quiet:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        rate = t.lines / max(now - t.started, 1e-6)
        if self.size:
            frac = min(1.0, offset / self.size)
            filled = int(frac * 30)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {frac * 100:5.1f}% "
            bar += f"{_mib(offset)}/{_mib(self.size)}"
        else:
            bar = f"{_mib(offset)}"
        sys.stderr.write(f"\r\x1b[K{self.name} {bar} {t.lines:,} lines {rate:,.0f}/s"
                         + (f" retries {t.retries}" if t.retries else ""))
        sys.stderr.flush()

    def retrying(self, why: str, pause: float) -> None:
        if self.quiet:
            return
        if self.bar:
            self._clear()
        print(f"lethelog ship: {why}; retrying in {pause:.1f}s", file=sys.stderr, flush=True)

    def done(self, t: Totals) -> None:
        if self.quiet:
            return
        self._clear()
        secs = time.monotonic() - t.started
        print(f"lethelog ship: {t.lines:,} lines in {t.batches:,} batches, {secs:.1f}s: "
              f"accepted {t.accepted:,}, rejected {t.rejected:,}, dropped {t.dropped:,}, "
              f"retries {t.retries:,}", file=sys.stderr, flush=True)


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


# --------------------------------------------------------------------------- command


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="log files to ship; - for stdin")
    p.add_argument("--url", required=True,
                   help="the collector, e.g. https://logs.example:8780 (/v1/logs is added)")
    p.add_argument("--token-file", metavar="F",
                   help="file holding the bearer token (default: $LETHELOG_TOKEN)")
    p.add_argument("--format", help="log format (combined, nginx_json, a log_format line...); "
                   "json/ndjson sends NDJSON; default: the service detects it")
    p.add_argument("--batch-lines", type=_positive, default=1000, metavar="N",
                   help="lines per request (default 1000)")
    p.add_argument("--batch-bytes", type=_size, default=4 * 1024**2, metavar="SIZE",
                   help="most bytes per request before gzip (default 4MiB)")
    p.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                   help="where resume checkpoints live (default $XDG_STATE_HOME/lethelog/ship)")
    p.add_argument("-F", "--follow", action="store_true",
                   help="keep shipping what is appended (follows rotation, like tail -F)")
    p.add_argument("--poll-interval", type=_duration, default=0.5, metavar="DURATION",
                   help="with --follow, how often to look for new lines (default 0.5s)")
    p.add_argument("--no-gzip", action="store_true", help="send bodies uncompressed")
    p.add_argument("--timeout", type=_duration, default=60.0, metavar="DURATION",
                   help="per request (default 60s)")
    p.add_argument("--give-up-after", type=_duration, default=0.0, metavar="DURATION",
                   help="stop retrying one batch after this long (default 0: never)")
    p.add_argument("--max-backoff", type=_duration, default=30.0, metavar="DURATION",
                   help="longest pause between retries (default 30s)")
    p.add_argument("--cafile", help="CA bundle to verify an https:// service")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr (default: when it is a terminal)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but fatal errors")


@command("ship", "post log files to a collector (batches, gzip, retry, resume)", _args)
def run(ns: argparse.Namespace) -> int:
    if ns.state_dir is None:
        ns.state_dir = default_state_dir()
    if ns.files.count("-") > 1:
        print("lethelog ship: stdin (-) can be given once", file=sys.stderr)
        return 2
    if ns.follow and len(ns.files) > 1:
        print("lethelog ship: --follow takes one file", file=sys.stderr)
        return 2
    try:
        shipper = Shipper(ns)
        return asyncio.run(shipper.run(ns.files))
    except ShipError as exc:
        print(f"lethelog ship: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("lethelog ship: interrupted; the next run resumes after the last acknowledged "
              "batch", file=sys.stderr)
        return 130
