"""The audit log: one hash-chained JSON line per read of stored data.

``<data_dir>/audit.log`` holds one entry a line::

    {"seq": 7, "time": "2026-11-27T10:00:00.123Z", "token": "alice", "role": "sre",
     "sites": null, "peer": "10.1.2.0", "endpoint": "/v1/query", "query": "status >= 500",
     "rows": 12, "outcome": "ok", "prev": "<hash of entry 6>", "hash": "<sha256 of this entry>"}

``hash`` is the SHA-256 of the entry's canonical JSON (sorted keys, without ``hash``), and each
entry carries the previous entry's hash in ``prev`` (64 zeroes for the first). Editing a line
breaks its own hash; deleting one breaks the next line's ``prev`` and the ``seq`` run; both are
reported by :func:`verify` (``lethelog audit verify``) with the line number. Entries hold who,
when, from where (masked), what was asked and how many rows came back — never record contents.
Addresses typed into a query are kept truncated (``collector.query.redact``).

**Retention** (``audit.retention``): :meth:`AuditLog.prune` drops entries older than the
retention and writes an *anchor* as the new first line, stating how many entries were pruned and
the ``seq`` and ``hash`` of the last one; verification continues the chain from the anchor. A
chain that does not verify is never pruned (that would launder the tampering). The head
(last ``seq`` and ``hash``) is written to the service log at start-up and after each prune, so a
copy outside the data directory can show truncation at the end, which no chain can show alone.

Appends are serialised across threads and processes (``lethelog query --data-dir`` appends too)
with ``flock`` on ``audit.log.lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web

from collector import audit_anchor
from collector.auth import PRINCIPAL, roles_of
from collector.faults import FAULTS, append_all_or_nothing
from collector.log import masked_peer
from collector.query.redact import redact_addresses
from collector.timefmt import parse_rfc3339, rfc3339

log = structlog.get_logger("lethelog.audit")

FILE_NAME = "audit.log"
GENESIS = "0" * 64
MAX_QUERY_TEXT = 4096
PRUNE_INTERVAL = 3600.0


class AuditError(Exception):
    """The audit log could not be written: the read it describes must not be answered."""


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def query_text(query: Any) -> str:
    """What was asked, as kept: text (addresses truncated), at most ``MAX_QUERY_TEXT`` chars."""
    if query is None:
        return ""
    text = query if isinstance(query, str) else orjson.dumps(
        query, option=orjson.OPT_SORT_KEYS, default=str).decode()
    text = redact_addresses(text)
    if len(text) > MAX_QUERY_TEXT:
        text = text[:MAX_QUERY_TEXT] + f"…[{len(text) - MAX_QUERY_TEXT} more characters]"
    return text


@dataclass
class Head:
    seq: int
    hash: str


class AuditLog:
    def __init__(self, path: Path, retention: float, fsync: bool = True,
                 key_path: Path | None = None) -> None:
        self.path = path
        self.retention = retention
        self.fsync = fsync
        # the anchors' HMAC key, outside the data directory (collector.audit_anchor)
        self.key_path = key_path or audit_anchor.default_key_path(path)
        self.lock_path = path.with_name(path.name + ".lock")
        self._thread_lock = threading.Lock()

    @classmethod
    def in_dir(cls, data_dir: Path, retention: float, fsync: bool = True,
               key_path: Path | None = None) -> AuditLog:
        return cls(Path(data_dir) / FILE_NAME, retention, fsync, key_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    # ------------------------------------------------------------------ writing

    def append(self, *, token: str, role: str, sites: list[str] | None, peer: str | None,
               endpoint: str, query: Any, rows: int, outcome: str = "ok",
               now: float | None = None) -> dict[str, Any]:
        """Append one entry (durable before this returns when ``fsync``); raise AuditError."""
        try:
            with self._locked():
                head = self._head()
                entry: dict[str, Any] = {
                    "seq": head.seq + 1,
                    "time": rfc3339(round(time.time() if now is None else now, 3)),
                    "token": token, "role": role, "sites": sites, "peer": peer,
                    "endpoint": endpoint, "query": query_text(query), "rows": int(rows),
                    "outcome": outcome, "prev": head.hash,
                }
                entry["hash"] = entry_hash(entry)
                # whole line or nothing: a full disk never leaves half an entry behind
                append_all_or_nothing(self.path, orjson.dumps(entry) + b"\n", self.fsync)
                return entry
        except OSError as exc:
            log.error("audit_write_failed", error=type(exc).__name__)
            raise AuditError(f"audit log not writable ({type(exc).__name__})") from None

    def _head(self) -> Head:
        """seq and hash of the last entry (the anchor's when only the anchor is left)."""
        last = _last_line(self.path)
        if last is None:
            return Head(0, GENESIS)
        try:
            entry = orjson.loads(last)
        except orjson.JSONDecodeError:
            raise AuditError("audit log ends with a damaged line (repaired at start-up)") from None
        if entry.get("kind") == "anchor":
            return Head(int(entry["through_seq"]), str(entry["through_hash"]))
        return Head(int(entry["seq"]), str(entry["hash"]))

    def repair_tail(self) -> dict[str, Any] | None:
        """A torn last line (a crash or full disk mid-append): move it to
        ``audit.log.torn-<time>`` as evidence and cut the log back to its last whole line.
        Returns what was found (for the log and ``/healthz``), None when the tail is whole."""
        with self._locked():
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return None
            cut = data.rfind(b"\n", 0, len(data) - 1) + 1 if data else 0
            tail = data[cut:]
            if not tail:
                return None
            try:
                whole = tail.endswith(b"\n") and isinstance(orjson.loads(tail), dict)
            except orjson.JSONDecodeError:
                whole = False
            if whole:
                return None
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            evidence = self.path.with_name(f"{self.path.name}.torn-{stamp}")
            evidence.write_bytes(tail)
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)
                fh.flush()
                os.fsync(fh.fileno())
            return {"file": evidence.name, "bytes": len(tail), "line": data[:cut].count(b"\n") + 1}

    # ------------------------------------------------------------------ reading

    def entries(self) -> list[dict[str, Any]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]

    def head(self) -> Head:
        with self._locked():
            return self._head()

    # ------------------------------------------------------------------ retention

    def prune(self, now: float | None = None) -> int:
        """Drop entries older than the retention behind an anchor line; returns how many."""
        now = time.time() if now is None else now
        cutoff = now - self.retention
        with self._locked():
            result = verify(self.path, self.key_path)
            if not result.ok:
                log.error("audit_prune_refused", reason=result.message)
                return 0
            try:
                lines = self.path.read_bytes().splitlines()
            except FileNotFoundError:
                return 0
            anchor: dict[str, Any] | None = None
            if lines and orjson.loads(lines[0]).get("kind") == "anchor":
                anchor = orjson.loads(lines[0])
                lines = lines[1:]
            old = 0
            for line in lines:
                if parse_rfc3339(orjson.loads(line)["time"]) >= cutoff:
                    break
                old += 1
            if old == 0:
                return 0
            last = orjson.loads(lines[old - 1])
            new_anchor: dict[str, Any] = {
                "kind": "anchor",
                "time": rfc3339(round(now, 3)),
                "pruned": old + (int(anchor["pruned"]) if anchor else 0),
                "through_seq": int(last["seq"]),
                "through_time": last["time"],
                "through_hash": last["hash"],
                "retention_seconds": self.retention,
            }
            try:
                audit_anchor.sign(new_anchor, audit_anchor.load_key(self.key_path, True) or b"")
            except audit_anchor.AnchorKeyError as exc:
                log.error("audit_prune_refused", reason=str(exc))
                return 0
            new_anchor["hash"] = entry_hash(new_anchor)
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(new_anchor) + b"\n")
                for line in lines[old:]:
                    fh.write(line + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            head = self._head()
        log.info("audit_pruned", entries=old, through_seq=new_anchor["through_seq"],
                 head_seq=head.seq, head_hash=head.hash)
        return old


def _last_line(path: Path) -> bytes | None:
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None
    with fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        buf = b""
        pos = end
        while pos > 0:
            step = min(8192, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
            stripped = buf.rstrip(b"\n")
            nl = stripped.rfind(b"\n")
            if nl >= 0:
                return stripped[nl + 1:] or None
        stripped = buf.rstrip(b"\n")
        return stripped or None


# --------------------------------------------------------------------------- verification


@dataclass
class Verification:
    ok: bool
    entries: int
    message: str
    line: int | None = None
    head: Head | None = None


def verify(path: Path, key_path: Path | None = None) -> Verification:
    """Check every line's hash, each ``prev`` link and the ``seq`` run, and that an anchor was
    written by lethelog (``collector.audit_anchor``); name the first bad line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Verification(True, 0, f"{path}: no audit log yet (nothing to verify)",
                            head=Head(0, GENESIS))
    expected_prev, expected_seq, count = GENESIS, 1, 0
    start_note = "from the first entry"
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    else:
        return Verification(False, 0, f"{path} line {len(lines)}: last line is incomplete "
                            "(no newline at the end: cut short)", len(lines))

    def bad(n: int, why: str) -> Verification:
        return Verification(False, count, f"{path} line {n}: {why}", n)

    for n, raw in enumerate(lines, 1):
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return bad(n, "not a JSON object (line edited or damaged)")
        if not isinstance(entry, dict) or "hash" not in entry:
            return bad(n, "not an audit entry (no hash)")
        if orjson.dumps(entry) != raw:
            return bad(n, "not in the form it was written (line edited)")
        if entry_hash(entry) != entry["hash"]:
            return bad(n, "hash does not match the entry (line edited)")
        if entry.get("kind") == "anchor":
            if n != 1:
                return bad(n, "anchor found after the first line (lines inserted or reordered)")
            try:
                key = audit_anchor.load_key(key_path or audit_anchor.default_key_path(path))
            except audit_anchor.AnchorKeyError as exc:
                return bad(n, str(exc))
            following = _json_or_none(lines[1]) if len(lines) > 1 else None
            problem = audit_anchor.check(entry, key, following)
            if problem is not None:
                return bad(n, problem)
            expected_prev = str(entry["through_hash"])
            expected_seq = int(entry["through_seq"]) + 1
            start_note = (f"from anchor (entries 1-{entry['through_seq']} pruned, "
                          f"{entry['pruned']} of them by retention)")
            continue
        if entry.get("prev") != expected_prev:
            if n == 1:
                return bad(n, "chain does not start at the first entry or an anchor "
                              "(leading lines deleted)")
            return bad(n, "prev does not match the hash of the line before it "
                          "(a line before it was deleted, inserted or edited)")
        if entry.get("seq") != expected_seq:
            return bad(n, f"sequence number {entry.get('seq')} where {expected_seq} was expected "
                          "(lines missing)")
        expected_prev, expected_seq = entry["hash"], expected_seq + 1
        count += 1
    head = Head(expected_seq - 1, expected_prev)
    return Verification(True, count, f"{path}: {count} entries verified {start_note}; "
                        f"head seq {head.seq} hash {head.hash}", None, head)


def _json_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------- the service side

AUDIT: web.AppKey[AuditLog] = web.AppKey("audit", AuditLog)


def _role(request: web.Request) -> str:
    principal = request.get(PRINCIPAL)
    if principal is None:
        return "none"
    match = getattr(request, "match_info", None)
    declared = roles_of(match.handler) if match is not None else None
    granted = sorted(principal.roles & declared) if declared else []
    return granted[0] if granted else ",".join(sorted(principal.roles))


def audit(request: web.Request, *, endpoint: str, query: Any, rows: int,
          outcome: str = "ok") -> dict[str, Any]:
    """Record a read of stored data by the caller of ``request``; call it before answering.

    If the entry cannot be written the read must not be answered: this raises
    ``HTTPServiceUnavailable`` (503) with the reason.
    """
    principal = request.get(PRINCIPAL)
    try:
        book = request.app[AUDIT]
    except KeyError:
        raise web.HTTPServiceUnavailable(text="audit log not open") from None
    try:
        return book.append(
            token=principal.name if principal is not None else "anonymous",
            role=_role(request),
            sites=sorted(principal.sites) if principal is not None and principal.sites is not None
            else None,
            peer=masked_peer(request),
            endpoint=endpoint, query=query, rows=rows, outcome=outcome,
        )
    except AuditError as exc:
        raise web.HTTPServiceUnavailable(text=f"{exc}: read refused") from None


async def audit_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the audit log, prune it now and every hour, and log its head."""
    from collector.appkeys import SETTINGS

    settings = app[SETTINGS]
    book = AuditLog.in_dir(settings.server.data_dir, settings.audit.retention,
                           settings.audit.fsync, settings.audit.anchor_key_file)
    app[AUDIT] = book
    loop = asyncio.get_running_loop()
    try:  # a torn last line never stops start-up: kept as evidence, reported, cut off
        torn = await loop.run_in_executor(None, book.repair_tail)
    except OSError as exc:
        torn = None
        log.error("audit_repair_failed", error=type(exc).__name__)
    if torn is not None:
        log.error("audit_torn_tail", **torn,
                  detail="the last audit line was incomplete (crash or full disk while it was "
                         "written); kept as evidence and cut from the log")
        if FAULTS in app:
            app[FAULTS].report("audit_torn_tail", **torn)
    try:  # the anchors' key exists from the start, outside the data directory
        await loop.run_in_executor(None, audit_anchor.load_key, book.key_path, True)
    except audit_anchor.AnchorKeyError as exc:
        log.error("audit_anchor_key_unavailable", reason=str(exc))
    try:
        await loop.run_in_executor(None, book.prune)
        head = await loop.run_in_executor(None, book.head)
        log.info("audit_log_opened", path=str(book.path), head_seq=head.seq, head_hash=head.hash)
    except (OSError, AuditError) as exc:  # e.g. a full disk: reads answer 503 until it clears
        log.error("audit_open_failed", error=type(exc).__name__, detail=str(exc)[:200])

    async def prune_forever() -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            try:
                await loop.run_in_executor(None, book.prune)
                head = await loop.run_in_executor(None, book.head)
                # the witness of the chain head outside the data directory: the service log
                log.info("audit_head", head_seq=head.seq, head_hash=head.hash)
            except Exception as exc:  # keep the service; the next hour retries
                log.error("audit_prune_failed", error=type(exc).__name__)

    task = asyncio.create_task(prune_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
