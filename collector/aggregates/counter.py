"""The writer-side half of the aggregates: counts each record into per-minute rows.

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

Speed: per record, the writer checks with one set comparison whether the session is new to any
of its groups (in all and in this minute) and touches only those rows. The counters that do not
depend on sessions (requests, bytes, statuses, bots, anonymizers, request-time buckets) of every
group but the path template's can be counted before the writer, in parallel, with
:func:`partial_counts` (``lethelog import`` does it in its worker processes) and handed to
``add(..., partial=...)``, which merges them; without ``partial`` the writer counts everything.
The result is the same row for row (``tests/test_aggregates_fast.py``).
"""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Container, Iterable, Sequence
from operator import add as _plus
from typing import Any

from collector.aggregates.schema import COUNTERS, DIMS, IDX, PATH_DIMS, RT_EDGES, UPSERT
from collector.aggregates.targets import TargetCounter
from collector.record import Record
from masking.vocab import NEEDS_K, OTHER, aggregate_value

Key = tuple[int, str, str, str]  # (minute, site, dim, value)
Partial = dict[Key, "array[float]"]  # counters counted before the writer: partial_counts
Group = tuple[str, str]  # (dim, value)

ACTIVE_WINDOW = 3  # minutes behind the newest one for which active sessions are remembered
LAG_MEMORY = 3600  # seconds of log time a site may lag the newest and keep its window
_N = len(COUNTERS)
_I_REQ, _I_BYTES = IDX["requests"], IDX["bytes"]
_I_BOTS, _I_NEW, _I_ACT, _I_P4 = IDX["bots"], IDX["sessions_new"], IDX["sessions_active"], \
    IDX["paths_4xx"]
_I_T4 = IDX["targets_4xx"]
_I_S401, _I_S403, _I_S404 = IDX["s401"], IDX["s403"], IDX["s404"]
_I_CLASS = [IDX[f"s{c}xx"] for c in range(1, 6)]
_I_ANON = {"is_vpn": IDX["anon_vpn"], "is_tor": IDX["anon_tor"],
           "is_anonymous_proxy": IDX["anon_proxy"], "is_hosting": IDX["anon_hosting"]}
_I_RTC, _I_RTS, _I_RT0 = IDX["rt_count"], IDX["rt_sum"], IDX["rt_0"]
_PATH_POS = 1 + list(DIMS).index("path_template")
_NET_POS = 1 + list(DIMS).index("network")
_ZEROS = [0.0] * _N
_NAMES = ("", *DIMS)  # group dims in order: the total, then every dimension
# fields read per record, in group order; the total's "field" is a key no record has (-> "")
_FIELDS = ("\0total", *DIMS.values())
_PATH_DIM_POS = tuple(_NAMES.index(d) for d in sorted(PATH_DIMS))
_RULED = tuple(range(1, len(_NAMES)))  # every dimension goes through masking.vocab


def dim_value(rec: Record, dim: str, v4_bits: int, v6_bits: int) -> str:
    """The group value of ``rec`` for ``dim`` as stored ("" = unknown), by the dimension's rule
    (``masking.vocab``); the path template is returned as is, for the k rule to decide."""
    v = rec.get(DIMS[dim])
    if v is None or v == "":
        return ""
    if dim == "network":
        s = str(v)
        return stored_value(dim, f"{s}/{v6_bits if ':' in s else v4_bits}")
    return stored_value(dim, str(v))


def stored_value(dim: str, value: str) -> str:
    """``masking.vocab.aggregate_value`` for the counter: the closed vocabularies map to
    themselves or ``"other"``; of the k-rule dimensions only the path template is counted under
    its own name (after k sessions, by :meth:`Aggregator._path`), any other is ``"other"``."""
    out = aggregate_value(dim, value)
    if out is NEEDS_K:
        return value if dim == "path_template" else OTHER
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
        self.seen: dict[int, set[Group]] = {}  # sid -> groups it was counted in
        # minute -> (sid, site) -> groups the session was counted active in during that minute
        self.active: dict[int, dict[tuple[int, str], set[Group]]] = {}
        self.paths: dict[int, dict[tuple[str, str, str], set[str]]] = {}
        self.newest = 0  # newest minute counted, any site
        self.site_newest: dict[str, int] = {}  # each site's newest minute: a site
        # shipped behind another still has its recent minutes' sessions and 4xx paths counted
        self.targets = TargetCounter()  # distinct 4xx targets per network/ASN (targets.py)

    # ------------------------------------------------------------------ counting

    def add(self, records: Sequence[Record], sids: Sequence[int | None],
            partial: Partial | None = None) -> None:
        """Count ``records`` (``sids[i]``: the session of record i, None when it has none).

        ``partial``: :func:`partial_counts` of these same records, already counted elsewhere.
        """
        pending, seen, safe_paths = self.pending, self.seen, self.safe_paths
        self.targets.add_records(records, self.v4, self.v6)
        if partial:
            for key, vals in partial.items():
                row = pending.get(key)
                pending[key] = list(vals) if row is None else list(map(_plus, row, vals))
        for rec, sid in zip(records, sids, strict=True):
            get = rec.get
            t = get("time")
            if not isinstance(t, int | float):
                continue
            minute = int(t // 60) * 60
            if minute > self.newest:
                self.newest = minute
                self._prune_minutes()
            site = get("site") or "default"
            status = get("status")
            status = status if isinstance(status, int) else 0
            groups = _groups(get, self.v4, self.v6)
            path_value = groups[_PATH_POS][1]
            if path_value and (site, path_value) not in safe_paths:
                groups[_PATH_POS] = ("path_template", self._path(site, path_value, sid, minute))
            newest_here = self.site_newest.get(site, 0)
            if minute > newest_here:
                self.site_newest[site] = newest_here = minute
            recent = minute > newest_here - ACTIVE_WINDOW * 60
            new: set[Group] | tuple[()] = ()  # groups the session is new to
            fresh: set[Group] | tuple[()] = ()  # ... or new to in this minute
            if sid is not None:
                counted = seen.get(sid)
                if counted is None:
                    counted = seen[sid] = set()
                if not counted.issuperset(groups):
                    new = set(groups).difference(counted)
                    counted.update(new)
                if recent:
                    by_session = self.active.get(minute)
                    if by_session is None:
                        by_session = self.active[minute] = {}
                    was = by_session.get((sid, site))
                    if was is None:
                        fresh = by_session[(sid, site)] = set(groups)
                    elif not was.issuperset(groups):
                        fresh = set(groups).difference(was)
                        was.update(fresh)
            scanned: set[Group] | tuple[()] = ()  # groups with a 4xx path new this minute
            if recent and 400 <= status < 500:
                path = get("path_template")
                if path:
                    scanned = self._scanned(minute, site, groups, path)
            deltas = _deltas(rec, status)  # the same increments go to every group's row
            rts: list[float] = []
            if partial is None:
                touch: Iterable[Group] = groups
            else:  # only what partial_counts left out: the path's row, session counts, rt sums
                rts = [v for i, v in deltas if i == _I_RTS]
                touch = groups if rts else {groups[_PATH_POS], *new, *fresh, *scanned}
            for group in touch:
                dim, value = group
                key = (minute, site, dim, value)
                row = pending.get(key)
                if row is None:
                    row = pending[key] = [0.0] * _N
                if partial is None or dim == "path_template":
                    for i, v in deltas:
                        row[i] += v
                elif rts:
                    row[_I_RTS] += rts[0]
                if group in new:
                    row[_I_NEW] += 1
                if group in fresh:
                    row[_I_ACT] += 1
                if group in scanned:
                    row[_I_P4] += 1

    def _scanned(self, minute: int, site: str, groups: list[Group], path: str) -> set[Group]:
        """The scan-dimension groups for which ``path`` is a new 4xx path in ``minute``."""
        out = set()
        by_group = self.paths.setdefault(minute, {})
        for pos in _PATH_DIM_POS:
            dim, value = groups[pos]
            ps = by_group.setdefault((site, dim, value), set())
            if path not in ps:
                ps.add(path)
                out.add(groups[pos])
        return out

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
        add_targets(self.pending, self.targets.drain())
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
            # A path named now may have been counted as "other" when this record came (before
            # k sessions used it): remember both, so a restart never counts a session twice
            # (the figures stay a lower bound; tests/agg_reference.py checks it).
            counted = [*vals, ("path_template", RARE)] if path else vals
            groups.update(counted)
            minute = int(t // 60) * 60
            if minute > self.site_newest.get(site, 0) - ACTIVE_WINDOW * 60:
                self.active.setdefault(minute, {}).setdefault((sid, site), set()).update(counted)
                for dim, value in vals:
                    if 400 <= status < 500 and dim in PATH_DIMS and rec.get("path_template"):
                        self.paths.setdefault(minute, {}).setdefault(
                            (site, dim, value), set()).add(rec["path_template"])


def add_targets(pending: dict[Key, list[float]], deltas: dict[Key, int]) -> None:
    for key, n in deltas.items():
        row = pending.get(key)
        if row is None:
            row = pending[key] = [0.0] * _N
        row[_I_T4] += n


def _groups(get: Any, v4: int, v6: int) -> list[Group]:
    """Every group of a record (``get``: its ``.get``), the total first, values as
    :func:`dim_value` gives them (the path template not yet checked against k)."""
    values = ["" if v is None else v if v.__class__ is str else str(v) for v in map(get, _FIELDS)]
    net = values[_NET_POS]
    if net:
        values[_NET_POS] = f"{net}/{v6 if ':' in net else v4}"
    for j in _RULED:
        if values[j]:
            values[j] = stored_value(_NAMES[j], values[j])
    return list(zip(_NAMES, values, strict=True))


def partial_counts(records: Iterable[Record], ipv4_bits: int, ipv6_bits: int) -> Partial:
    """The session-independent counters of ``records`` for every group but the path template
    (whose stored value depends on sessions), request-time sums left out (the writer adds them
    in record order, so float sums stay the same): for ``Aggregator.add(..., partial=)``. Rows
    are ``array('d')``: they cross a process boundary as bytes, not as one float object each."""
    out: Partial = {}
    skip = _PATH_POS
    for rec in records:
        get = rec.get
        t = get("time")
        if not isinstance(t, int | float):
            continue
        minute = int(t // 60) * 60
        site = get("site") or "default"
        status = get("status")
        deltas = [d for d in _deltas(rec, status if isinstance(status, int) else 0)
                  if d[0] != _I_RTS]
        for j, (dim, value) in enumerate(_groups(get, ipv4_bits, ipv6_bits)):
            if j == skip:
                continue
            key = (minute, site, dim, value)
            row = out.get(key)
            if row is None:
                row = out[key] = array("d", _ZEROS)
            for i, v in deltas:
                row[i] += v
    return out


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
