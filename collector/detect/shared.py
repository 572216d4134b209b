"""The detectors on a shared store (Redis Cluster): exactly one collector runs them at a time.

* **Lease.** ``<prefix>:{detect}:lease`` holds ``<holder>|<token>``; a collector takes it with
  ``SET NX PX`` (:data:`LEASE_TTL`) under a fencing token from ``INCR <prefix>:{detect}:fence``,
  and renews it every :data:`RENEW` seconds. Every write of anomalies and cursors is one script
  that first checks that the lease still holds this holder's token (**fencing**): a collector
  that paused past its lease (GC, a stopped VM) and lost it writes nothing, even if it does not
  know yet. When the holder dies, its lease expires and another collector takes over within
  ``LEASE_TTL + RENEW`` seconds (plus ``detect.interval`` to its first pass).
* **State in the cluster.** Anomalies (``{detect}:anomalies``, id → public JSON) and each site's
  detection cursor (``{detect}:cursors``) live in the cluster, all in the ``{detect}`` slot so
  one script updates them atomically. A collector taking over reads the cursors and the open
  anomalies, re-learns the baselines silently from the cluster's aggregates (the same
  ``_rewarm`` as a restart), and continues: an ongoing incident stays the same open anomaly and
  is reported once.
* **Everyone sees it.** The holder appends each message for the dashboard's live stream (a tick
  per pass, anomalies opened and closed) to ``{detect}:events`` (a capped stream) inside the same
  fenced script; every collector polls that stream every :data:`POLL` seconds and hands the
  messages to its own subscribers. ``GET /v1/anomalies`` on any collector reads the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from collector.detect.book import AnomalyBook
from collector.detect.model import Anomaly

if TYPE_CHECKING:
    from collector.detect.runner import DetectorRunner
    from collector.store.redis import RedisStore

log = structlog.get_logger("lethelog.detect")

LEASE_TTL = 10.0  # seconds a lease lasts without renewal
RENEW = 3.0  # seconds between two renewals (and two attempts to take a free lease)
POLL = 0.5  # seconds between two looks at the events stream
EVENTS_KEPT = 1000  # messages kept in the events stream

# KEYS[1] = lease. ARGV: holder, ttl ms. Takes a free lease under a new fencing token or renews
# our own; returns the token, or -1 when another collector holds it.
HOLD = r"""
local base = string.sub(KEYS[1], 1, -6)
local v = redis.call('GET', KEYS[1])
if v then
  local h, tok = string.match(v, '^(.*)|(%d+)$')
  if h == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(tok)
  end
  return -1
end
local tok = redis.call('INCR', base .. 'fence')
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. tok, 'PX', ARGV[2])
return tok
"""

# KEYS[1] = lease. ARGV: holder|token, nanomalies, (id, json) x n, ncursors, (site, t) x n,
# nevents, json x n. Writes only while the lease holds exactly this holder and token.
SAVE = r"""
local base = string.sub(KEYS[1], 1, -6)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED lease lost') end
local i = 2
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', base .. 'anomalies', ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', base .. 'cursors', ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('XADD', base .. 'events', 'MAXLEN', '~', ARGV[#ARGV], '*', 'm', ARGV[i]); i = i + 1
end
return 1
"""

# KEYS[1] = lease. Releases the lease if it is still ours (a clean shutdown hands over at once).
RELEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) end
return 0
"""

SCRIPTS = {"detect_hold": HOLD, "detect_save": SAVE, "detect_release": RELEASE}


class LeaseLost(Exception):
    """A fenced write was refused: another collector holds the detector lease now."""


class RedisBook(AnomalyBook):
    """The :class:`AnomalyBook` interface on the cluster. Its methods are synchronous (the
    runner calls them from its worker thread); each runs a coroutine on the store's loop."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.base = f"{store.prefix}:{{detect}}:"
        self.lease_key = self.base + "lease"
        self.holder = secrets.token_hex(8)
        self.token = -1  # fencing token while we hold the lease
        self.outbox: list[dict[str, Any]] = []

    # -------------------------------------------------------------- plumbing

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        loop = self.store.loop
        assert loop is not None, "store not started"
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    @property
    def _client(self) -> Any:
        assert self.store.client is not None
        return self.store.client

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    # -------------------------------------------------------------- lease (on the loop)

    async def hold(self) -> bool:
        """Take or renew the lease; True while we hold it."""
        ttl = int(LEASE_TTL * 1000)
        (tok,) = await self.store._calls("detect_hold", [(self.lease_key, [self.holder, ttl])])
        self.token = int(tok)
        return self.token > 0

    async def release(self) -> None:
        if self.token > 0:
            with contextlib.suppress(Exception):
                await self.store._calls("detect_release",
                                        [(self.lease_key, [f"{self.holder}|{self.token}"])])
            self.token = -1

    async def events_since(self, last: str) -> tuple[str, list[dict[str, Any]]]:
        """The stream's messages after ``last`` (``"$"``: from now on)."""
        key = self.base + "events"
        if last == "$":
            newest = await self._client.xrevrange(key, count=1)
            return (newest[0][0].decode() if newest else "0-0"), []
        got = await self._client.xrange(key, min=f"({last}", count=500)
        out = [orjson.loads(fields[b"m"]) for _, fields in got]
        return (got[-1][0].decode() if got else last), out

    # -------------------------------------------------------------- the book (in the thread)

    def save(self, anomalies: list[Anomaly], wall: float,
             cursors: dict[str, int] | None) -> None:
        self.flush(anomalies, cursors or {})

    def flush(self, anomalies: list[Anomaly] | None = None,
              cursors: dict[str, int] | None = None) -> None:
        """One fenced write: anomalies, cursors and the messages waiting in the outbox."""
        anomalies, cursors = anomalies or [], cursors or {}
        msgs, self.outbox = self.outbox, []
        if not (anomalies or cursors or msgs):
            return
        args: list[Any] = [f"{self.holder}|{self.token}", len(anomalies)]
        wall = time.time()
        for a in anomalies:
            args += [a.id, orjson.dumps({"u": wall, "a": a.public()})]
        args.append(len(cursors))
        for site, t in cursors.items():
            args += [site, t]
        args.append(len(msgs))
        args += [orjson.dumps(m) for m in msgs]
        args.append(EVENTS_KEPT)
        try:
            self._run(self.store._calls("detect_save", [(self.lease_key, args)]))
        except Exception as exc:
            if "FENCED" in str(exc):
                raise LeaseLost() from None
            raise

    def cursors(self) -> tuple[dict[str, int], int | None]:
        got = self._run(self._client.hgetall(self.base + "cursors"))
        return {k.decode(): int(float(v)) for k, v in got.items()}, None

    def _all(self) -> list[dict[str, Any]]:
        """Every anomaly's public JSON, with ``_updated``: the wall time it was last written."""
        got = self._run(self._client.hgetall(self.base + "anomalies"))
        return [{**(d := orjson.loads(v))["a"], "_updated": d["u"]} for v in got.values()]

    def open_anomalies(self) -> list[Anomaly]:
        out = []
        for d in self._all():
            if d.get("end") is None:
                a = Anomaly(d["kind"], d["site"], d["dimensions"], d["start_epoch"],
                            d["evidence"], d["severity"], d["start_epoch"] + 60, id=d["id"])
                a.minutes, a.peak = d["minutes"], d.get("peak") or {}
                a.last_seen = d["start_epoch"] + 60 * (d["minutes"] - 1)
                out.append(a)
        return out

    def list(self, sites: frozenset[str] | None, start: float | None, end: float | None,
             status: str, limit: int) -> list[dict[str, Any]]:
        rows = []
        for d in self._all():
            if sites is not None and d["site"] not in sites:
                continue
            closed = d.get("end_epoch")
            if start is not None and closed is not None and closed <= start:
                continue
            if end is not None and d["start_epoch"] >= end:
                continue
            if (status == "open") == (closed is not None) and status != "all":
                continue
            rows.append({k: v for k, v in d.items() if k != "_updated"})
        rows.sort(key=lambda d: (-d["start_epoch"], d["id"]))
        return rows[:limit]

    def prune(self, before_wall: float) -> int:
        gone = [d["id"] for d in self._all() if d.get("end_epoch") is not None
                and d["_updated"] < before_wall]
        if gone:
            self._run(self._client.hdel(self.base + "anomalies", *gone))
        return len(gone)


class SharedDetection:
    """Every collector runs this loop: take/renew the lease and, while holding it, run the
    detector passes; always deliver the cluster's event stream to the local subscribers."""

    def __init__(self, runner: DetectorRunner, book: RedisBook) -> None:
        self.runner = runner
        self.book = book
        self.holding = False
        self.takeovers = 0

    async def run(self) -> None:
        tail = asyncio.create_task(self._tail())
        try:
            next_tick = 0.0
            while True:
                try:
                    had = self.holding
                    self.holding = await self.book.hold()
                    if self.holding and not had:
                        await self._take_over()
                    elif had and not self.holding:
                        log.warning("detect_lease_lost", holder=self.book.holder)
                    if self.holding and time.monotonic() >= next_tick:
                        next_tick = time.monotonic() + self.runner.cfg.interval
                        await self.runner.tick()
                        await self.runner._io(self.book.flush)
                except LeaseLost:
                    self.holding = False
                    log.warning("detect_lease_lost", holder=self.book.holder, fenced=True)
                except Exception as exc:  # keep going; the next round retries
                    log.error("detect_failed", error=type(exc).__name__, detail=str(exc)[:200])
                await asyncio.sleep(min(RENEW, self.runner.cfg.interval))
        finally:
            tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tail
            await self.book.release()

    async def _take_over(self) -> None:
        """Continue from the cluster's cursors and open anomalies; re-learn the baselines."""
        r = self.runner
        self.takeovers += 1
        r.reset()
        r.cursors, r.legacy = await r._io(self.book.cursors)
        if r.cursors:
            await r._rewarm()
            for a in await r._io(self.book.open_anomalies):
                r.engine.tracker.open[a.key] = a
        log.info("detect_lease_taken", holder=self.book.holder, token=self.book.token,
                 sites=len(r.cursors), open_anomalies=len(r.engine.tracker.open))

    async def _tail(self) -> None:
        last = "$"
        while True:
            try:
                last, msgs = await self.book.events_since(last)
                for m in msgs:
                    self.runner.deliver(m)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("detect_events_unreadable", error=type(exc).__name__)
            await asyncio.sleep(POLL)
