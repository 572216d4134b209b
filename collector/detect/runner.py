"""The detector task: evaluates completed minutes (log time), keeps and announces anomalies.

Each site has its own detection cursor (the next minute to evaluate). A site's minute is complete
once the site's own log clock (its newest record time: its newest minute in the aggregates, to the
second from its shippers' log clocks) is ``detect.grace`` past the minute's end, so a site whose
shipper lags behind another's is judged when its own records are in. While a site's log time is
within LIVE_WINDOW of the wall clock and the site has sent nothing for ``detect.quiet`` seconds,
its log time is taken to run on with the wall clock (a total outage is seen as a drop); a replay of
an old file is judged on its own timestamps only. The all-sites view (``"*"``) evaluates a minute
once every active site (one that sent something within LIVE_WINDOW) is past it, so a silent site
holds it back for the live window at most. The cursors are kept in ``anomalies.db``.

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
from collector.detect.engine import ALL_SITES, Engine, Event
from collector.detect.minute import (
    SiteClock,
    bounds,
    load_minutes,
    next_minute,
    site_clocks,
)
from collector.detect.shared import RedisBook, SharedDetection
from collector.detect.webhook import Webhook
from collector.enrich import fastdata
from collector.settings import Settings
from collector.store.base import ReadScope

AGGREGATES_ONLY = ReadScope(records=False)

log = structlog.get_logger("lethelog.detect")

CHUNK = 120  # minutes read from the aggregates at a time
LIVE_WINDOW = 3600.0  # a site whose log time is this close to the wall clock is live
QUIET = 120.0  # default of detect.quiet: a live site silent this long has gone quiet
REWARM = 86400  # seconds of aggregates replayed silently at start-up
# Empty time longer than this before the next minute with traffic is skipped: the detectors see
# at most this much of it as zero minutes (every baseline has learnt "nothing" by then), so a
# record from year 1 followed by one from today costs a day of minutes, not 2,000 years of them.
EMPTY_KEEP = 86400


class DetectorRunner:
    def __init__(self, settings: Settings, store: Any,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.cfg = settings.detect
        self.store = store
        self.clock = clock
        e = settings.enrich
        asn = (e.asn_db is not None or e.isp_db is not None
               or (e.default_db and fastdata.find_source("network") is not None))
        if not asn:
            log.info("detect.new_source_asn_off",
                     reason="no database answers AS numbers (enrich.asn_db / enrich.isp_db, or "
                     "the plevin-db-network default); new_source watches countries only")
        self._engine_args = {"anonymizers": settings.enrich.anonymous_ip_db is not None,
                             "asn": asn}
        self.engine = Engine(self.cfg, **self._engine_args)
        # a shared store (Redis Cluster): the book lives in the cluster and one collector at a
        # time runs the passes, under a lease (collector.detect.shared)
        self.shared: RedisBook | None = (RedisBook(store) if getattr(store, "shared", False)
                                         else None)
        self.sharing: SharedDetection | None = None
        self.book: AnomalyBook = (self.shared if self.shared is not None
                                  else AnomalyBook(Path(settings.server.data_dir) / "anomalies.db"))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lethelog-detect")
        # next minute to evaluate, per site and for the all-sites view ("*")
        self.cursors: dict[str, int] = {}
        self.legacy: int | None = None  # an older book's single cursor (sites start there)
        secret = self.cfg.webhook_secret.reveal() if self.cfg.webhook_secret else None
        self.webhook = (Webhook(self.cfg.webhook_url, self.cfg.webhook_retries,
                                self.cfg.webhook_timeout, secret=secret)
                        if self.cfg.webhook_url else None)
        # live readers (the dashboard's stream) and the sites each may see (None: every site)
        self.subscribers: dict[asyncio.Queue[dict[str, Any]], frozenset[str] | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._next_prune = 0.0

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Forget the detectors' state (a collector taking over the lease starts afresh)."""
        self.engine = Engine(self.cfg, **self._engine_args)
        self.cursors, self.legacy = {}, None

    async def start(self, background: bool = True) -> None:
        if self.shared is not None and background and self.cfg.enabled:
            if self.webhook is not None:
                self.webhook.start()
            self.sharing = SharedDetection(self, self.shared)
            self._task = asyncio.create_task(self.sharing.run())
            return
        await self._io(self.book.open)
        self.cursors, self.legacy = await self._io(self.book.cursors)
        if self.legacy is not None and not self.cursors and self.store.supports_sql:
            # an older book kept one cursor for every site: each site resumes from there
            clocks = await self.store.read(site_clocks, AGGREGATES_ONLY)
            self.cursors = {s: max(c.first, self.legacy) for s, c in clocks.items()
                            if s != ALL_SITES}
            self.cursors[ALL_SITES] = self.legacy
        if self.cursors:
            await self._rewarm()
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
        # waited for off the loop: a job of the shared book runs its Redis calls on this loop
        # (blocking the loop here would deadlock with it)
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)

    async def _forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # keep detecting; the next tick retries
                log.error("detect_failed", error=type(exc).__name__, detail=str(exc)[:200])
            await asyncio.sleep(self.cfg.interval)

    async def _rewarm(self) -> None:
        """Replay the last day before each cursor silently, so the baselines are learnt again."""
        if not self.cursors:
            return
        first, _ = await self.store.read(bounds, AGGREGATES_ONLY)
        if first is None:
            return
        for site in sorted(self.cursors):
            self.engine.add_site(site)
        stop = max(self.cursors.values())
        t = max(int(first), min(self.cursors.values()) - REWARM)
        all_next = self.cursors.get(ALL_SITES, stop)
        while t < stop:
            end = min(stop, t + CHUNK * 60)
            minutes = await self.store.read(lambda c, a=t, b=end: load_minutes(c, a, b),
                                             ReadScope(start=t, end=end, records=False))
            for m in range(t, end, 60):
                here = {s: v for (mt, s), v in minutes.items() if mt == m}
                for site, cur in self.cursors.items():
                    if site != ALL_SITES and m < cur and m >= cur - REWARM:
                        self.engine.feed_site(m, site, here.get(site), track=False)
                if all_next - REWARM <= m < all_next:
                    self.engine.feed_all(m, here, track=False)
            t = end
        self.engine.all_next = all_next

    # ------------------------------------------------------------------ evaluation

    def site_ends(self, clocks: dict[str, SiteClock]) -> dict[str, int]:
        """Per site (and ``"*"``): the end of the minutes complete now (next cursor position).

        A site's minute ``t`` is complete once the site's own log clock (:meth:`site_clock`) is
        ``detect.grace`` past ``t + 60``. A live site (log time within LIVE_WINDOW of the wall
        clock) that has sent nothing for ``detect.quiet`` seconds has gone quiet: its log time is
        taken to run on with the wall clock from its newest record (so an outage is seen as a
        drop). The all-sites view's minute is complete once every active site (one that sent
        something within LIVE_WINDOW) is past it; a site silent for longer no longer holds it back.
        """
        wall = self.clock()
        sources = self._source_clocks()
        ends: dict[str, int] = {}
        active: list[int] = []
        for site, c in clocks.items():
            clock = self.site_clock(c, sources)
            silent = wall - c.arrived
            if silent >= self.cfg.quiet and wall - clock < LIVE_WINDOW:
                clock += silent
            end = int((clock - self.cfg.grace - 60) // 60) * 60 + 60
            ends[site] = max(end, self.cursors.get(site, end))
            if silent < LIVE_WINDOW:
                active.append(ends[site])
        ends[ALL_SITES] = min(active) if active else max(ends.values())
        return ends

    @staticmethod
    def site_clock(c: SiteClock, sources: dict[str, float]) -> float:
        """A site's log clock: its newest record time. The aggregates place it within the
        site's newest minute; the log clocks of that minute's shippers (the newest record time
        each has sent) place it to the second, as far as they lie within that minute."""
        shipped = [sources[s] for s in c.sources if s in sources]
        return max(float(c.newest), min(c.newest + 59.999, max(shipped, default=c.newest)))

    def _source_clocks(self) -> dict[str, float]:
        table = getattr(self.store, "table", None)
        for _ in range(3):  # the store's writer may add a source meanwhile
            with contextlib.suppress(RuntimeError):
                return dict(getattr(table, "clocks", {}))
        return {}

    def log_clock(self, site: str | None = None) -> int | None:
        """The next minute to evaluate of ``site`` (``None``: of the all-sites view)."""
        return self.cursors.get(ALL_SITES if site is None else site)

    async def tick(self) -> int:
        """Evaluate every minute completed since the last tick, per site and then for all sites;
        returns how many (site or all-sites view, minute) were evaluated."""
        async with self._lock:
            clocks: dict[str, SiteClock] = await self.store.read(site_clocks, AGGREGATES_ONLY)
            clocks.pop(ALL_SITES, None)
            if not clocks:
                return 0
            for site, c in clocks.items():
                if site not in self.cursors:  # a new site: from its first minute
                    self.cursors[site] = max(c.first, self.legacy) if self.legacy else c.first
                    self.engine.add_site(site)
            if ALL_SITES not in self.cursors:
                self.cursors[ALL_SITES] = min(self.cursors.values())
                self.engine.all_next = self.cursors[ALL_SITES]
            ends = self.site_ends(clocks)
            todo = [s for s in ends if self.cursors[s] < ends[s]]
            done = 0
            while todo:
                start = await self._skip_empty(todo, ends)
                stop = min(max(ends[s] for s in todo), start + CHUNK * 60)
                minutes = await self.store.read(
                    lambda c, a=start, b=stop: load_minutes(c, a, b),
                    ReadScope(start=start, end=stop, records=False))
                by_minute: dict[int, dict[str, Any]] = {}
                for (mt, site), m in minutes.items():
                    by_minute.setdefault(mt, {})[site] = m
                changed: dict[str, Any] = {}
                events: list[Event] = []
                for t in range(start, stop, 60):
                    here = by_minute.get(t, {})
                    for site in todo:
                        if self.cursors[site] <= t < ends[site]:
                            if site == ALL_SITES:
                                found = self.engine.feed_all(t, here)
                            else:
                                found = self.engine.feed_site(t, site, here.get(site))
                            done += 1
                            self.cursors[site] = t + 60
                            for ev in found:
                                events.append(ev)
                                changed[ev[1].id] = ev[1]
                await self._io(self.book.save, list(changed.values()), self.clock(),
                               {s: self.cursors[s] for s in todo})
                self._announce(events)
                todo = [s for s in todo if self.cursors[s] < ends[s]]
            self._publish({"type": "tick", "cursor": self.cursor, "evaluated": done})
            if self.clock() >= self._next_prune:
                self._next_prune = self.clock() + 3600
                await self._io(self.book.prune, self.clock() - self.settings.aggregates.retention)
            return done

    async def _skip_empty(self, todo: list[str], ends: dict[str, int]) -> int:
        """Move the cursors of ``todo`` over empty time to ``EMPTY_KEEP`` before the next
        minute with traffic (or their end), in one index lookup; returns the earliest cursor."""
        start = min(self.cursors[s] for s in todo)
        nxt = await self.store.read(lambda c, a=start: next_minute(c, a))
        target = (nxt if nxt is not None else max(ends[s] for s in todo)) - EMPTY_KEEP
        if target <= start:
            return start
        for site in todo:
            jump = min(ends[site], target)
            if self.cursors[site] < jump:
                self.cursors[site] = jump
        if ALL_SITES in todo:
            self.engine.all_next = max(self.engine.all_next, self.cursors[ALL_SITES])
        log.info("detect_skipped_empty_time", seconds=target - start, to=target)
        return min(self.cursors[s] for s in todo)

    @property
    def cursor(self) -> int | None:
        """The all-sites view's next minute (every active site has been evaluated before it)."""
        return self.cursors.get(ALL_SITES)

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
        if self.shared is not None:  # through the cluster's stream, to every collector
            self.shared.outbox.append(msg)
            return
        self.deliver(msg)

    def deliver(self, msg: dict[str, Any]) -> None:
        """Hand a live message to this collector's subscribers."""
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
