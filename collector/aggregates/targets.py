"""Distinct 4xx targets per masked network and per ASN per minute (scan detection).

A scanner probes many distinct URLs, whatever their path templates. The writer counts, per
``(minute, site, dim, value)`` for ``dim`` in :data:`TARGET_DIMS`, the distinct request paths
(``path``, already masked) answered 4xx, in a :class:`~collector.aggregates.hll.HyperLogLog`
sketch: no path and no address is kept, only 256 bytes of register maxima under a hashing key that
lives in memory. Sketches are kept for a site's last :data:`WINDOW` minutes of log time; the
count is persisted in the aggregate column ``targets_4xx`` as increments (the estimate minus what
was already written), so a minute's row holds its estimate once the minute is over.

Batch-level and independent of how the rest of the aggregates is counted: :meth:`add_rows` takes
``(minute, site, network, asn, target, status)`` tuples (column-wise callers zip their columns),
:meth:`add_records` reads them from stored records, :meth:`drain` returns the increments to add
to the pending rows before a flush.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from collector.aggregates.hll import HyperLogLog, new_key
from collector.record import Record

TARGET_DIMS = ("network", "asn")
_KEY = new_key()  # this process's hashing key: in memory only, never written
WINDOW = 3  # minutes behind a site's newest one whose sketches are kept
Key = tuple[int, str, str, str]  # (minute, site, dim, value)
Row = tuple[int, str, str, str, str, int]  # (minute, site, network, asn, target, status)


def network_value(ip: object, v4: int, v6: int) -> str:
    """The ``network`` group value of a masked address ("" when unknown)."""
    if ip is None or ip == "":
        return ""
    s = str(ip)
    return f"{s}/{v6 if ':' in s else v4}"


class TargetCounter:
    def __init__(self, p: int = 8) -> None:
        self.p = p
        self.key = _KEY
        self.sketches: dict[Key, HyperLogLog] = {}
        self.written: dict[Key, int] = {}  # what the store's rows already hold
        self.touched: set[Key] = set()
        self.added: dict[Key, int] = {}  # 4xx records per sketch: the estimate never exceeds it
        self.site_newest: dict[str, int] = {}

    def add_rows(self, rows: Iterable[Row]) -> None:
        for minute, site, net, asn, target, status in rows:
            if not 400 <= status < 500 or not target:
                continue
            newest = self.site_newest.get(site, 0)
            if minute > newest:
                self.site_newest[site] = newest = minute
            elif minute <= newest - WINDOW * 60:
                continue  # too old: its sketch is gone (counted as it was then)
            for dim, value in (("network", net), ("asn", asn)):
                if not value:
                    continue
                key = (minute, site, dim, value)
                sk = self.sketches.get(key)
                if sk is None:
                    sk = self.sketches[key] = HyperLogLog(self.key, self.p)
                sk.add(target)
                self.added[key] = self.added.get(key, 0) + 1
                self.touched.add(key)

    def add_records(self, records: Sequence[Record], v4: int, v6: int) -> None:
        self.add_rows(_rows(records, v4, v6))

    def drain(self) -> dict[Key, int]:
        """Increments of ``targets_4xx`` since the last drain, then forget old minutes."""
        out: dict[Key, int] = {}
        for key in self.touched:
            est = min(len(self.sketches[key]), self.added[key])
            delta = est - self.written.get(key, 0)
            if delta > 0:
                out[key] = delta
                self.written[key] = est
        self.touched = set()
        old = [k for k in self.sketches if k[0] <= self.site_newest.get(k[1], 0) - WINDOW * 60]
        for k in old:
            del self.sketches[k]
            self.written.pop(k, None)
            self.added.pop(k, None)
        return out

    def rebuild(self, conn: sqlite3.Connection, v4: int, v6: int) -> None:
        """After a start or a rollback: the recent minutes' sketches from the stored records,
        taken as already written (their rows committed with them)."""
        self.sketches, self.written, self.touched, self.site_newest = {}, {}, set(), {}
        self.added = {}
        have = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
        cols = ", ".join(c if c in have else "NULL" for c in ("ip", "asn", "path"))
        newest = dict(conn.execute("SELECT site, max(time) FROM records GROUP BY site"))
        for site, t in newest.items():
            if t is None:
                continue
            since = int(t // 60) * 60 - WINDOW * 60 + 60
            cur = conn.execute(
                f"SELECT time, site, {cols}, status FROM records WHERE site IS ? AND "
                "time >= ? AND status BETWEEN 400 AND 499", (site, since))
            recs = [{"time": r[0], "site": r[1], "ip": r[2], "asn": r[3], "path": r[4],
                     "status": r[5]} for r in cur]
            self.add_records(recs, v4, v6)
        self.drain()


def _rows(records: Sequence[Record], v4: int, v6: int) -> Iterable[Row]:
    for rec in records:
        status = rec.get("status")
        t = rec.get("time")
        if not isinstance(status, int) or not 400 <= status < 500 or not isinstance(
                t, int | float):
            continue
        asn = rec.get("asn")
        yield (int(t // 60) * 60, rec.get("site") or "default",
               network_value(rec.get("ip"), v4, v6), "" if asn is None else str(asn),
               str(rec.get("path") or ""), status)
