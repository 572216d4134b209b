"""The detector task: evaluates completed minutes (log time), keeps and announces anomalies.

A minute is complete once the log clock (the newest record time any shipper sent) is
``detect.grace`` past its end. While log time is within an hour of the wall clock the service
is live and the wall clock completes minutes too, so a total outage is seen as a drop; a replay
of an old file is judged on its own timestamps only.

Announcements: a structlog event per anomaly opened and closed, the optional webhook, and the
subscribers (the dashboard's live stream). On start-up the detectors re-learn their baselines
silently from the last day of aggregates, then carry on from where they stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from collector.detect.book import AnomalyBook
from collector.detect.engine import Engine, Event
from collector.detect.minute import bounds, load_minutes
from collector.detect.webhook import Webhook
from collector.settings import Settings

log = structlog.get_logger("lethelog.detect")

CHUNK = 120  # minutes read from the aggregates at a time
LIVE_WINDOW = 3600.0
REWARM = 86400  # seconds of aggregates replayed silently at start-up


class DetectorRunner:
    def __init__(self, settings: Settings, store: Any,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.cfg = settings.detect
        self.store = store
        self.clock = clock
        self.engine = Engine(self.cfg, anonymizers=settings.enrich.anonymous_ip_db is not None)
        self.book = AnomalyBook(Path(settings.server.data_dir) / "anomalies.db")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lethelog-detect")
        self.cursor: int | None = None  # next minute to evaluate
        self.webhook = (Webhook(self.cfg.webhook_url, self.cfg.webhook_retries,
                                self.cfg.webhook_timeout) if self.cfg.webhook_url else None)
        # live readers (the dashboard's stream) and the sites each may see (None: every site)
        self.subscribers: dict[asyncio.Queue[dict[str, Any]], frozenset[str] | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._next_prune = 0.0

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, background: bool = True) -> None:
        await self._io(self.book.open)
        self.cursor = await self._io(self.book.cursor)
        if self.cursor is not None:
            await self._rewarm(self.cursor)
            for a in await self._io(self.book.open_anomalies):
                self.engine.tracker.open[a.key] = a
        if self.webhook is not None:
            self.webhook.start()
        if background and self.cfg.enabled and not self.store.supports_sql:
            log.warning("detectors_disabled", backend=type(self.store).__name__,
                        reason="the detectors read the aggregates, which need the sqlite store")
            return
        if background and self.cfg.enabled:
            self._task = asyncio.create_task(self._forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.webhook is not None:
            await self.webhook.close()
        await self._io(self.book.close)
        self._pool.shutdown(wait=True)

    async def _forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # keep detecting; the next tick retries
                log.error("detect_failed", error=type(exc).__name__, detail=str(exc)[:200])
            await asyncio.sleep(self.cfg.interval)

    async def _rewarm(self, cursor: int) -> None:
        first, _ = await self.store.read(bounds)
        if first is None:
            return
        t = max(int(first), cursor - REWARM)
        while t < cursor:
            end = min(cursor, t + CHUNK * 60)
            minutes = await self.store.read(lambda c, a=t, b=end: load_minutes(c, a, b))
            for m in range(t, end, 60):
                self.engine.feed(m, {s: v for (mt, s), v in minutes.items() if mt == m},
                                 track=False)
            t = end

    # ------------------------------------------------------------------ evaluation

    def log_clock(self, newest_minute: int | None) -> float:
        table = getattr(self.store, "table", None)
        clocks = list(getattr(table, "clocks", {}).values()) if table is not None else []
        clock = max(clocks) if clocks else (newest_minute + 60 if newest_minute else 0.0)
        wall = self.clock()
        if wall - clock < LIVE_WINDOW:
            clock = max(clock, wall)
        return clock

    async def tick(self) -> int:
        """Evaluate every minute completed since the last tick; returns how many."""
        async with self._lock:
            first, newest = await self.store.read(bounds)
            if first is None:
                return 0
            if self.cursor is None:
                self.cursor = int(first)
            last = int((self.log_clock(newest) - self.cfg.grace - 60) // 60) * 60
            done = 0
            while self.cursor <= last:
                end = min(last + 60, self.cursor + CHUNK * 60)
                start = self.cursor
                minutes = await self.store.read(lambda c, a=start, b=end: load_minutes(c, a, b))
                by_minute: dict[int, dict[str, Any]] = {}
                for (mt, site), m in minutes.items():
                    by_minute.setdefault(mt, {})[site] = m
                changed: dict[str, Any] = {}
                events: list[Event] = []
                for t in range(start, end, 60):
                    for ev in self.engine.feed(t, by_minute.get(t, {})):
                        events.append(ev)
                        changed[ev[1].id] = ev[1]
                    done += 1
                self.cursor = end
                await self._io(self.book.save, list(changed.values()), self.clock(), end)
                self._announce(events)
            self._publish({"type": "tick", "cursor": self.cursor, "evaluated": done})
            if self.clock() >= self._next_prune:
                self._next_prune = self.clock() + 3600
                await self._io(self.book.prune, self.clock() - self.settings.aggregates.retention)
            return done

    def _announce(self, events: list[Event]) -> None:
        for what, a in events:
            if what == "updated":
                continue
            body = a.public()
            fields = {k: body[k] for k in ("id", "kind", "severity", "site", "start", "end",
                                           "dimensions", "evidence")}
            log.info(f"anomaly_{what}", **fields)
            if self.webhook is not None:
                self.webhook.send({"event": f"anomaly_{what}", "anomaly": body})
            self._publish({"type": f"anomaly_{what}", "anomaly": body})

    # ------------------------------------------------------------------ readers

    def _publish(self, msg: dict[str, Any]) -> None:
        site = msg.get("anomaly", {}).get("site")
        for q, sites in list(self.subscribers.items()):
            if site is not None and sites is not None and site not in sites:
                continue  # another site's anomaly (or an all-sites one) never enters the queue
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(msg)

    def subscribe(self, sites: frozenset[str] | None = None) -> asyncio.Queue[dict[str, Any]]:
        """A queue of live messages; anomalies only of ``sites`` (``None``: every site and the
        all-sites view)."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
        self.subscribers[q] = sites
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.pop(q, None)

    async def list(self, sites: frozenset[str] | None, start: float | None = None,
                   end: float | None = None, status: str = "all", limit: int = 1000
                   ) -> list[dict[str, Any]]:
        return list(await self._io(self.book.list, sites, start, end, status, limit))
