"""The aggregate counter as it was before it was made faster: the specification that
``tests/test_aggregates_fast.py`` checks the shipped one against, row for row.

Original docstring: the writer-side half of the aggregates: counts each record into per-minute rows.

:class:`Aggregator` lives inside the store's writer thread. ``add`` counts one batch into
memory, ``flush`` upserts the touched minute rows inside the store's open write transaction (so
a batch and its counts commit or roll back together), ``rebuild`` restores the in-memory
session bookkeeping from the live records after a start or a rollback.

Distinct sessions without keeping a session id: the writer already knows each record's session
(its internal ``sid``) while the session lives. It remembers, per live session, which groups
(dimension, value) the session has already been counted in, and per recent minute which
sessions it has counted as active. Only the two resulting counts are persisted:

* ``sessions_new``: +1 the first time a session appears in a group. Summed over any range it is
  the exact number of sessions whose first request in that group falls in the range.
* ``sessions_active``: +1 the first time a session appears in a group within one minute: the
  exact number of distinct sessions of that group in that minute.

The memory dies with the session (pruned against the live session table); nothing of it is
written anywhere.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Container, Sequence
from typing import Any

from collector.aggregates.schema import COUNTERS, DIMS, IDX, PATH_DIMS, RT_EDGES, UPSERT
from collector.aggregates.targets import TargetCounter
from collector.record import Record
from masking.vocab import NEEDS_K, OTHER, aggregate_value

Key = tuple[int, str, str, str]  # (minute, site, dim, value)
Group = tuple[str, str]  # (dim, value)

ACTIVE_WINDOW = 3  # minutes behind the newest one for which active sessions are remembered
LAG_MEMORY = 3600  # seconds of log time a site may lag the newest and keep its window
_N = len(COUNTERS)
_I_REQ, _I_BYTES = IDX["requests"], IDX["bytes"]
_I_BOTS, _I_NEW, _I_ACT, _I_P4 = IDX["bots"], IDX["sessions_new"], IDX["sessions_active"], \
    IDX["paths_4xx"]
_I_S401, _I_S403, _I_S404 = IDX["s401"], IDX["s403"], IDX["s404"]
_I_CLASS = [IDX[f"s{c}xx"] for c in range(1, 6)]
_I_ANON = {"is_vpn": IDX["anon_vpn"], "is_tor": IDX["anon_tor"],
           "is_anonymous_proxy": IDX["anon_proxy"], "is_hosting": IDX["anon_hosting"]}
_I_RTC, _I_RTS, _I_RT0 = IDX["rt_count"], IDX["rt_sum"], IDX["rt_0"]
_PATH_POS = 1 + list(DIMS).index("path_template")


def dim_value(rec: Record, dim: str, v4_bits: int, v6_bits: int) -> str:
    """The group value of ``rec`` for ``dim`` as stored ("" = unknown), by the dimension's rule
    in ``masking.vocab`` (closed vocabularies; the path template left to the k rule)."""
    v = rec.get(DIMS[dim])
    if v is None or v == "":
        return ""
    s = str(v)
    if dim == "network":
        s = f"{s}/{v6_bits if ':' in s else v4_bits}"
    out = aggregate_value(dim, s)
    if out == NEEDS_K:
        return s if dim == "path_template" else OTHER
    return out


RARE = "other"  # stored value of a path template not yet seen in k distinct sessions
RARE_MEMORY = 86400  # seconds of log time a rare path's sessions are remembered


class Aggregator:
    """Counts records into minute rows. ``k``: a path template is written under its own name only
    once ``k`` distinct sessions used it (per site, ``site_k`` overrides); until then it is
    counted as ``"other"``, so a path only one visitor used never outlives their session."""

    def __init__(self, ipv4_bits: int = 24, ipv6_bits: int = 48, k: int = 5,
                 site_k: dict[str, int] | None = None) -> None:
        self.v4, self.v6 = ipv4_bits, ipv6_bits
        self.k, self.site_k = k, dict(site_k or {})
        self.safe_paths: set[tuple[str, str]] = set()  # (site, path) seen in >= k sessions
        self.rare: dict[tuple[str, str], tuple[set[int], int]] = {}  # -> (sessions, last minute)
        self.pending: dict[Key, list[float]] = {}
        self.seen: dict[int, set[Group]] = {}
        self.active: dict[int, dict[tuple[str, str, str], set[int]]] = {}
        self.paths: dict[int, dict[tuple[str, str, str], set[str]]] = {}
        # distinct 4xx targets (issue 14): the shipped sketch counter, fed record by record
        self.targets = TargetCounter()
        self.newest = 0  # newest minute counted, any site
        self.site_newest: dict[str, int] = {}  # each site's newest minute: a site
        # shipped behind another still has its recent minutes' sessions and 4xx paths counted

    # ------------------------------------------------------------------ counting

    def add(self, records: Sequence[Record], sids: Sequence[int | None]) -> None:
        for rec in records:
            self.targets.add_records([rec], self.v4, self.v6)
        """Count ``records`` (``sids[i]``: the session of record i, None when it has none)."""
        pending, seen = self.pending, self.seen
        for rec, sid in zip(records, sids, strict=True):
            t = rec.get("time")
            if not isinstance(t, int | float):
                continue
            minute = int(t // 60) * 60
            if minute > self.newest:
                self.newest = minute
                self._prune_minutes()
            site = rec.get("site") or "default"
            status = rec.get("status")
            status = status if isinstance(status, int) else 0
            is_4xx = 400 <= status < 500
            vals: list[Group] = [("", "")]
            vals.extend((d, dim_value(rec, d, self.v4, self.v6)) for d in DIMS)
            vals[_PATH_POS] = ("path_template", self._path(site, vals[_PATH_POS][1], sid, minute))
            path = rec.get("path_template") or "" if is_4xx else ""
            session_groups = seen.setdefault(sid, set()) if sid is not None else None
            newest_here = self.site_newest.get(site, 0)
            if minute > newest_here:
                self.site_newest[site] = newest_here = minute
            recent = minute > newest_here - ACTIVE_WINDOW * 60
            act = self.active.setdefault(minute, {}) if recent and sid is not None else None
            deltas = _deltas(rec, status)  # the same increments go to every group's row
            for dim, value in vals:
                key = (minute, site, dim, value)
                row = pending.get(key)
                if row is None:
                    row = pending[key] = [0.0] * _N
                for i, v in deltas:
                    row[i] += v
                if session_groups is not None and (dim, value) not in session_groups:
                    session_groups.add((dim, value))
                    row[_I_NEW] += 1
                if act is not None:
                    who = act.setdefault((site, dim, value), set())
                    if sid not in who:
                        who.add(sid)  # type: ignore[arg-type]
                        row[_I_ACT] += 1
                if is_4xx and path and dim in PATH_DIMS and recent:
                    ps = self.paths.setdefault(minute, {}).setdefault((site, dim, value), set())
                    if path not in ps:
                        ps.add(path)
                        row[_I_P4] += 1

    def _path(self, site: str, path: str, sid: int | None, minute: int) -> str:
        """The path template as stored: itself once k sessions used it, else ``"other"``."""
        if not path or (site, path) in self.safe_paths:
            return path
        sessions, _ = self.rare.get((site, path), (set(), minute))
        if sid is not None:
            sessions.add(sid)
        if len(sessions) >= self.site_k.get(site, self.k):
            self.safe_paths.add((site, path))
            self.rare.pop((site, path), None)
            return path
        self.rare[(site, path)] = (sessions, minute)
        return RARE

    def _horizon(self) -> int:
        """Minutes at or before this are no site's recent ones: the oldest site still shipping
        within ``LAG_MEMORY`` of the newest keeps its own window (a site further behind, or
        gone quiet, no longer holds memory back)."""
        floor = self.newest - LAG_MEMORY
        behind = [m for m in self.site_newest.values() if m >= floor]
        return min(behind, default=self.newest) - ACTIVE_WINDOW * 60

    def _prune_minutes(self) -> None:
        if self.newest % 3600 == 0:
            old = self.newest - RARE_MEMORY
            self.rare = {key: v for key, v in self.rare.items() if v[1] >= old}
        horizon = self._horizon()
        for m in [m for m in self.active if m <= horizon]:
            del self.active[m]
        for m in [m for m in self.paths if m <= horizon]:
            del self.paths[m]

    def flush(self, conn: sqlite3.Connection, wall: float) -> int:
        """Upsert the pending minute rows (inside the caller's transaction)."""
        for key, n in self.targets.drain().items():
            self.pending.setdefault(key, [0.0] * _N)[IDX["targets_4xx"]] += n
        if not self.pending:
            return 0
        rows = [(m, 60, site, dim, value, *vals, wall)
                for (m, site, dim, value), vals in self.pending.items()]
        conn.executemany(UPSERT, rows)
        self.pending = {}
        return len(rows)

    # ------------------------------------------------------------------ memory upkeep

    def forget(self, live: Container[int]) -> None:
        """Drop the bookkeeping of sessions that are no longer live."""
        for sid in [s for s in self.seen if s not in live]:
            del self.seen[sid]

    def rebuild(self, conn: sqlite3.Connection) -> None:
        """After a start or a rolled-back transaction: rebuild memory from the live records.

        Pending counts are dropped (their transaction did not commit). Each live session's
        groups and the recent minutes' active sessions are read back from the records table, so
        a session that keeps going is not counted again.
        """
        self.pending = {}
        self.targets.rebuild(conn, self.v4, self.v6)
        self.seen, self.active, self.paths = {}, {}, {}
        self.rare = {}
        self.safe_paths = {(site, value) for site, value in conn.execute(
            "SELECT DISTINCT site, value FROM agg WHERE dim = 'path_template' AND value != ?",
            (RARE,))}
        self.site_newest = {
            site or "default": int(t // 60) * 60
            for site, t in conn.execute("SELECT site, max(time) FROM records GROUP BY site")}
        self.newest = max(self.site_newest.values(), default=0)
        fields = sorted({f for f in DIMS.values()})
        sql = f"SELECT sid, time, site, status, {', '.join(fields)} FROM records"
        for row in conn.execute(sql):
            sid, t, site, status = row[0], row[1], row[2] or "default", row[3] or 0
            rec: dict[str, Any] = dict(zip(fields, row[4:], strict=True))
            groups = self.seen.setdefault(sid, set())
            groups.add(("", ""))
            vals = [("", "")] + [(d, dim_value(rec, d, self.v4, self.v6)) for d in DIMS]
            path = vals[_PATH_POS][1]
            if path and (site, path) not in self.safe_paths:
                vals[_PATH_POS] = ("path_template", RARE)
                sessions, _ = self.rare.get((site, path), (set(), int(t // 60) * 60))
                sessions.add(sid)
                self.rare[(site, path)] = (sessions, int(t // 60) * 60)
            groups.update(vals)
            minute = int(t // 60) * 60
            if minute > self.site_newest.get(site, 0) - ACTIVE_WINDOW * 60:
                act = self.active.setdefault(minute, {})
                for dim, value in vals:
                    act.setdefault((site, dim, value), set()).add(sid)
                    if 400 <= status < 500 and dim in PATH_DIMS and rec.get("path_template"):
                        self.paths.setdefault(minute, {}).setdefault(
                            (site, dim, value), set()).add(rec["path_template"])


def _deltas(rec: Record, status: int) -> list[tuple[int, float]]:
    """(counter index, increment) pairs of one record."""
    out: list[tuple[int, float]] = [(_I_REQ, 1)]
    b = rec.get("bytes")
    if isinstance(b, int) and b > 0:
        out.append((_I_BYTES, b))
    if 100 <= status < 600:
        out.append((_I_CLASS[status // 100 - 1], 1))
        if status == 401:
            out.append((_I_S401, 1))
        elif status == 403:
            out.append((_I_S403, 1))
        elif status == 404:
            out.append((_I_S404, 1))
    if rec.get("is_bot"):
        out.append((_I_BOTS, 1))
    for flag, i in _I_ANON.items():
        if rec.get(flag):
            out.append((i, 1))
    rt = rec.get("request_time")
    if isinstance(rt, int | float) and rt >= 0:
        out.append((_I_RTC, 1))
        out.append((_I_RTS, rt))
        for j, edge in enumerate(RT_EDGES):
            if rt <= edge:
                out.append((_I_RT0 + j, 1))
                break
        else:
            out.append((_I_RT0 + len(RT_EDGES), 1))
    return out
