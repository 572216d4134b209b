"""The aggregates on the Redis Cluster: the same counters as SQLite's ``agg`` table, in the cluster.

Every collector counts the records it writes with the same :class:`Aggregator` as the SQLite
store (``collector.aggregates.counter``) and adds the resulting per-minute deltas to the
cluster, so all collectors add to and read the same figures:

* ``<prefix>:{a:<site>:<hour>}`` — one hash per site and hour of log time (its own hash tag,
  so a site's hours spread over the nodes): the minute rows of that hour and, once rolled up,
  the hour row (field layout in ``collector.store.redis_lua``). One ``agg_add`` script call per
  hash and flush adds every delta atomically and sets the hash's expiry to the retention
  (site's or ``aggregates.retention``): nothing outlives the retention after its last write,
  on the wall clock, even if no collector runs the maintenance.
* ``<prefix>:{aidx}:<site>`` — a sorted set of the site's hours (score: its newest minute), and
  ``<prefix>:{aidx}:sites`` the set of sites: what a reader enumerates for a time range.

Maintenance (rollup of minutes older than ``aggregates.minute_retention`` into hours, deletion
past the retention, on both clocks) runs per hash inside one script, so any number of collectors
may run it at the same time: a minute is merged into its hour exactly once.

Reads load the rows of the hours a range touches into the ``agg`` table of the reader's
in-memory SQLite snapshot (:mod:`collector.store.redis_read`), where
``collector.aggregates.read`` applies k-anonymity and the path rule exactly as on SQLite.

Distinct sessions: the group memory of a session (``sessions_new``/``sessions_active``) and the
sessions behind a rare path live in the memory of the collector that wrote the records, as on
SQLite. A session whose records arrive through one collector is counted exactly as on SQLite; a
session whose records alternate between collectors can be counted once by each (the README says
so under *Scale-out*).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from collector.aggregates.counter import Aggregator, add_targets
from collector.aggregates.schema import COUNTERS, IDX, MAX_COUNTERS
from collector.record import Record
from collector.settings import Settings

log = structlog.get_logger("lethelog.aggregates")

SEP = "\x1f"
_FLOAT = IDX["rt_sum"]
_MAX = IDX[next(iter(MAX_COUNTERS))]
_N = len(COUNTERS)


def sid_of(public_id: str) -> int:
    """A stable integer for a session's public id (60 bits: fits SQLite's INTEGER)."""
    return int(public_id[:15], 16)


class RedisAggregates:
    """The aggregate counters of one collector's writes, flushed to the cluster."""

    def __init__(self, settings: Settings, prefix: str) -> None:
        self.settings = settings
        self.prefix = prefix
        site_k = {s.name: int(s.overrides["k_anonymity"]) for s in settings.sites
                  if "k_anonymity" in s.overrides}
        self.counter = Aggregator(settings.masking.ipv4_keep_bits, settings.masking.ipv6_keep_bits,
                                  settings.aggregates.k_anonymity, site_k)
        self._retention = {s.name: float(s.overrides["retention"]) for s in settings.sites
                           if "retention" in s.overrides}
        self._last_seen: dict[int, float] = {}  # sid -> wall time of its last record here
        self._idle = max([settings.sessions.idle_timeout,
                          *(float(settings.for_site(s.name, "idle_timeout"))
                            for s in settings.sites)])
        self._next_maintain = 0.0
        self.rows_written = 0

    # ------------------------------------------------------------------ keys

    def data_key(self, site: str, hour: int) -> str:
        return f"{self.prefix}:{{a:{site}:{hour}}}"

    def index_key(self, site: str) -> str:
        return f"{self.prefix}:{{aidx}}:{site}"

    @property
    def sites_key(self) -> str:
        return f"{self.prefix}:{{aidx}}:sites"

    def retention(self, site: str) -> float:
        a = self.settings.aggregates.retention
        return min(a, self._retention.get(site, a))

    # ------------------------------------------------------------------ counting

    def add(self, records: Sequence[Record], sids: Sequence[int | None], wall: float) -> None:
        self.counter.add(records, sids)
        for sid in sids:
            if sid is not None:
                self._last_seen[sid] = wall

    def rebuild(self, conn: sqlite3.Connection) -> None:
        """Start-up: the group memory of the live sessions, from a snapshot of the cluster."""
        self.counter.rebuild(conn)
        now = time.time()
        self._last_seen = {sid: now for (sid,) in conn.execute("SELECT DISTINCT sid FROM records")}

    def take(self, wall: float) -> list[tuple[str, list[Any], str, str, int]]:
        """The pending rows as script calls: (key, args, site, index key, newest minute)."""
        add_targets(self.counter.pending, self.counter.targets.drain())  # as its flush does
        pending, self.counter.pending = self.counter.pending, {}
        by_key: dict[tuple[str, int], list[tuple[int, str, str, list[float]]]] = defaultdict(list)
        for (minute, site, dim, value), vals in pending.items():
            by_key[(site, minute // 3600 * 3600)].append((minute, dim, value, vals))
        calls = []
        for (site, hour), rows in by_key.items():
            minutes = sorted({m for m, _, _, _ in rows})
            args: list[Any] = [max(1000, int(self.retention(site) * 1000)), repr(wall),
                               len(minutes), *(f"{m}{SEP}60" for m in minutes)]
            for minute, dim, value, vals in rows:
                args.append(f"{minute}{SEP}60{SEP}{dim}{SEP}{value}")
                args.append(";".join(f"{COUNTERS[i]}:{repr(float(v)) if i == _FLOAT else int(v)}"
                                     for i, v in enumerate(vals) if v))
            calls.append((self.data_key(site, hour), args, site, str(hour), minutes[-1]))
            self.rows_written += len(rows)
        return calls

    def forget_idle(self, wall: float) -> None:
        """Drop the group memory of sessions this collector has not seen for an idle timeout."""
        cut = wall - self._idle - 60
        gone = [sid for sid, seen in self._last_seen.items() if seen < cut]
        for sid in gone:
            del self._last_seen[sid]
        if gone:
            self.counter.forget(self._last_seen)

    def due(self, wall: float, force: bool = False) -> bool:
        if not force and wall < self._next_maintain:
            return False
        self._next_maintain = wall + self.settings.aggregates.maintain_interval
        return True

    def maintain_args(self, hour: int, newest: float, wall: float, site: str) -> list[Any]:
        a = self.settings.aggregates
        keep = self.retention(site)
        log_cut = (int(newest - a.minute_retention) // 3600) * 3600
        return [hour, log_cut, repr(wall - a.minute_retention), repr(newest - keep),
                repr(wall - keep), COUNTERS[_MAX]]


def parse_rows(site: str, flat: dict[bytes, bytes] | dict[str, str]
               ) -> Iterable[tuple[Any, ...]]:
    """The ``agg`` table rows ``(t, res, site, dim, value, *COUNTERS, updated)`` of one hash."""
    rows: list[tuple[int, int, str, str, list[Any]]] = []
    updated: dict[tuple[int, int], float] = {}
    for raw_f, raw_v in flat.items():
        f = raw_f.decode("utf-8", "surrogateescape") if isinstance(raw_f, bytes) else raw_f
        v = raw_v.decode() if isinstance(raw_v, bytes) else raw_v
        parts = f.split(SEP, 3)
        if len(parts) == 2:
            updated[(int(parts[0]), int(parts[1]))] = float(v)
            continue
        vals: list[Any] = [0] * _N
        vals[_FLOAT] = 0.0
        for item in v.split(";") if v else ():
            name, x = item.split(":")
            ci = IDX.get(name)
            if ci is not None:  # a counter this version does not know is left out
                vals[ci] = float(x) if ci == _FLOAT else int(float(x))
        rows.append((int(parts[0]), int(parts[1]), parts[2], parts[3], vals))
    for t, res, dim, value, vals in rows:
        yield (t, res, site, dim, value, *vals, updated.get((t, res), 0.0))


def hours_between(start: float | None, end: float | None) -> tuple[float, float]:
    """Index score bounds (an hour's newest minute) of the hours a range may touch; the
    members themselves are checked with :func:`hour_overlaps`."""
    lo = -math.inf if start is None else start - 3600
    hi = math.inf if end is None else end + 3600
    return lo, hi


def hour_overlaps(hour: int, start: float | None, end: float | None) -> bool:
    return (start is None or hour + 3600 > start) and (end is None or hour < end)
