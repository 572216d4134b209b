"""One site's completed minute, read from the aggregates: the detectors' only input."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from collector.aggregates.schema import COUNTERS

DETECT_DIMS = ("", "country", "asn", "network", "path_template")
Counts = dict[str, float]


@dataclass(slots=True)
class Minute:
    t: int  # minute start, log time
    site: str
    total: Counts = field(default_factory=dict)
    by: dict[str, dict[str, Counts]] = field(default_factory=dict)  # dim -> value -> counts

    def get(self, name: str) -> float:
        return self.total.get(name, 0.0)

    def rows(self, dim: str) -> dict[str, Counts]:
        return self.by.get(dim, {})


def empty(t: int, site: str) -> Minute:
    return Minute(t, site)


def load_minutes(conn: sqlite3.Connection, start: int, end: int
                 ) -> dict[tuple[int, str], Minute]:
    """Every (minute, site) with traffic in ``[start, end)``, from the per-minute rows."""
    marks = ", ".join("?" * len(DETECT_DIMS))
    sql = (f"SELECT t, site, dim, value, {', '.join(COUNTERS)} FROM agg "
           f"WHERE res = 60 AND t >= ? AND t < ? AND dim IN ({marks})")
    out: dict[tuple[int, str], Minute] = {}
    for row in conn.execute(sql, (start, end, *DETECT_DIMS)):
        t, site, dim, value = row[0], row[1], row[2], row[3]
        counts = dict(zip(COUNTERS, row[4:], strict=True))
        m = out.get((t, site))
        if m is None:
            m = out[(t, site)] = Minute(t, site)
        if dim == "":
            m.total = counts
        else:
            m.by.setdefault(dim, {})[value] = counts
    return out


def next_minute(conn: sqlite3.Connection, start: int) -> int | None:
    """The first minute at or after ``start`` with traffic on any site (an index lookup)."""
    row = conn.execute("SELECT min(t) FROM agg WHERE dim = '' AND t >= ? AND res = 60",
                       (start,)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def bounds(conn: sqlite3.Connection) -> tuple[int | None, int | None]:
    row = conn.execute("SELECT min(t), max(t) FROM agg WHERE res = 60 AND dim = ''").fetchone()
    return (row[0], row[1]) if row else (None, None)


@dataclass(slots=True)
class SiteClock:
    """What the aggregates tell of a site's progress."""

    first: int  # first minute with traffic
    newest: int  # newest minute with traffic: the site's newest record lies within it
    arrived: float  # wall time its rows were last written (when it last sent something)
    sources: tuple[str, ...]  # the shippers of its newest minute


def site_clocks(conn: sqlite3.Connection) -> dict[str, SiteClock]:
    """Every site's :class:`SiteClock`, from the per-minute rows."""
    out = {site: SiteClock(int(a), int(b), float(w), ()) for site, a, b, w in conn.execute(
        "SELECT site, min(t), max(t), max(updated) FROM agg WHERE dim = '' AND res = 60 "
        "GROUP BY site")}
    for site, c in out.items():
        c.sources = tuple(v for (v,) in conn.execute(
            "SELECT value FROM agg WHERE dim = 'source' AND t = ? AND res = 60 AND site = ?",
            (c.newest, site)))
    return out


def sites_of(minutes: Iterable[Minute]) -> set[str]:
    return {m.site for m in minutes}


def combine(t: int, site: str, minutes: Iterable[Minute]) -> Minute:
    """The sum of several sites' minutes (the all-sites view).

    Every counter is additive across sites: a session belongs to one site only (the site is part
    of its key), so ``sessions_active`` adds up exactly; ``paths_4xx`` counts a network's
    distinct 4xx paths per site, and a path of one site is not a path of another.
    """
    out = Minute(t, site)
    for m in minutes:
        _add(out.total, m.total)
        for dim, rows in m.by.items():
            mine = out.by.setdefault(dim, {})
            for value, counts in rows.items():
                have = mine.get(value)
                if have is None:
                    mine[value] = dict(counts)  # most values belong to one site: a copy
                else:
                    _add(have, counts)
    return out


def _add(into: Counts, counts: Counts) -> None:
    for name, v in counts.items():
        into[name] = into.get(name, 0.0) + v
