"""An independent oracle for the aggregate rows, written from the documented rules only
(docs/aggregates.md, docs/masking.md "Aggregate dimensions", the column list of
``collector/aggregates/schema.py``), never from ``collector/aggregates/counter.py``.

It does not count as it goes. It keeps every record it was given, in arrival order, with the
session it belonged to, and at each :meth:`Reference.flush` recomputes the whole table from
scratch by brute force:

* a record counts in the minute of its own log time (records without a time are not counted),
  in its site's total row (``dim = ""``) and in one row per dimension;
* ``requests``, ``bytes``, the status classes, ``bots``, the anonymizer flags and the
  request-time histogram are plain sums over the records of a row;
* ``sessions_new`` of a row is the number of sessions whose *first* record in that group
  (site, dimension, value), in arrival order, falls into the row's minute;
* ``sessions_active`` is the number of distinct sessions among the row's records;
* ``paths_4xx`` (network and ASN rows) is the number of distinct path templates answered 4xx,
  ``targets_4xx`` the number of distinct request paths answered 4xx, for a known network or
  ASN only (the writer's figure is a HyperLogLog estimate under a per-process random key:
  :func:`mismatches` allows its error, docs/detection.md "Scans by behaviour");
* a path template is stored under its own name only once ``k`` distinct sessions of that site
  used it — decided record by record, in arrival order — and as ``"other"`` before;
* the other dimensions go through ``masking.vocab.aggregate_value`` (the vocabulary rule
  table; it has its own tests) and the network is the masked address with its prefix.

A session that ends (:meth:`forget`) keeps its counts and never comes back (the store never
reuses a session id; seeing it again is an error of the test). A restart (:meth:`rebuild`)
changes nothing: the figures must be what they would have been without it (see
:func:`mismatches` for the one documented exception, a lower bound).

A record without a site counts for ``tenancy.default_site`` ("default"); a session never spans
sites (its key holds the site). Not in the docs, observed and kept: ``targets_4xx`` is counted
for known networks and ASNs only, while ``paths_4xx`` also counts the unknown ASN ``""``.
"""

from __future__ import annotations

import ipaddress
import math
import sqlite3
from collections import defaultdict
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Any

from collector.aggregates.schema import COUNTERS, RT_EDGES
from masking.vocab import NEEDS_K, OTHER, aggregate_value

DIM_FIELDS = {"country": "country", "asn": "asn", "isp": "isp", "network": "ip",
              "path_template": "path_template", "method": "method", "browser": "browser",
              "os": "os", "device_type": "device_type", "source": "source"}
SCAN_DIMS = ("network", "asn")
DEFAULT_SITE = "default"  # tenancy.default_site: where a record without a site is counted


@dataclass
class _Event:
    minute: int
    site: str
    session: int | None
    values: dict[str, str]  # dim -> stored value ("" = the site's total)
    rec: dict[str, Any]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _network(ip: Any, v4: int, v6: int) -> str:
    if ip is None or ip == "":
        return ""
    addr = ipaddress.ip_address(str(ip))
    bits = v6 if addr.version == 6 else v4
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


def _flag(rec: dict[str, Any], name: str) -> int:
    return 1 if rec.get(name) else 0


def _counts(rec: dict[str, Any]) -> dict[str, float]:
    """The additive counters of one record."""
    out: dict[str, float] = defaultdict(float)
    out["requests"] = 1
    size = rec.get("bytes")
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        out["bytes"] = size
    status = rec.get("status")
    if isinstance(status, int) and 100 <= status <= 599:
        out[f"s{status // 100}xx"] = 1
        if status in (401, 403, 404):
            out[f"s{status}"] = 1
    out["bots"] = _flag(rec, "is_bot")
    out["anon_vpn"] = _flag(rec, "is_vpn")
    out["anon_tor"] = _flag(rec, "is_tor")
    out["anon_proxy"] = _flag(rec, "is_anonymous_proxy")
    out["anon_hosting"] = _flag(rec, "is_hosting")
    rt = rec.get("request_time")
    if isinstance(rt, (int, float)) and not isinstance(rt, bool) and math.isfinite(rt) \
            and rt >= 0:
        out["rt_count"] = 1
        out["rt_sum"] = float(rt)
        bucket = next((i for i, edge in enumerate(RT_EDGES) if rt <= edge), len(RT_EDGES))
        out[f"rt_{bucket}"] = 1
    return out


class Aggregator:
    """Same calls as the writer's counter: ``add``, ``flush``, ``forget``, ``rebuild``."""

    def __init__(self, ipv4_bits: int = 24, ipv6_bits: int = 48, k: int = 5,
                 site_k: dict[str, int] | None = None) -> None:
        self.v4, self.v6, self.k, self.site_k = ipv4_bits, ipv6_bits, k, dict(site_k or {})
        self.events: list[_Event] = []
        self.flushed = 0  # events already written by an earlier flush
        self.seen_sids: set[int] = set()
        self.ended: set[int] = set()
        self.path_sessions: dict[tuple[str, str], set[int]] = defaultdict(set)

    def add(self, records: Sequence[dict[str, Any]], sids: Sequence[int | None]) -> None:
        for rec, sid in zip(records, sids, strict=True):
            t = rec.get("time")
            if t is None:
                continue
            if sid is not None:
                assert sid not in self.ended, f"session {sid} was forgotten and came back"
                self.seen_sids.add(sid)
            site = rec.get("site") or DEFAULT_SITE
            values = {"": ""}
            for dim, field in DIM_FIELDS.items():
                raw = (_network(rec.get(field), self.v4, self.v6) if dim == "network"
                       else _text(rec.get(field)))
                stored = aggregate_value(dim, raw)
                if stored == NEEDS_K:
                    stored = self._k_rule(site, raw, sid)
                values[dim] = stored
            self.events.append(_Event(int(t // 60) * 60, site, sid, values, rec))

    def _k_rule(self, site: str, path: str, session: int | None) -> str:
        users = self.path_sessions[(site, path)]
        if session is not None:
            users.add(session)
        return path if len(users) >= self.site_k.get(site, self.k) else OTHER

    def forget(self, live: Container[int]) -> None:
        self.ended |= {sid for sid in self.seen_sids if sid not in live}
        self.seen_sids -= self.ended

    def rebuild(self, conn: sqlite3.Connection) -> None:
        """A restart: the writer rebuilds its memory from the live records; the truth is the
        same as without the restart, so there is nothing to do here."""

    def table(self) -> dict[tuple[int, str, str, str], dict[str, float]]:
        rows: dict[tuple[int, str, str, str], dict[str, float]] = defaultdict(
            lambda: dict.fromkeys(COUNTERS, 0.0))
        first: dict[tuple[int, str, str, str], int] = {}
        active: dict[tuple[int, str, str, str], set[int]] = defaultdict(set)
        paths: dict[tuple[int, str, str, str], set[str]] = defaultdict(set)
        targets: dict[tuple[int, str, str, str], set[str]] = defaultdict(set)
        for ev in self.events:
            counts = _counts(ev.rec)
            four = isinstance(ev.rec.get("status"), int) and 400 <= ev.rec["status"] <= 499
            for dim, value in ev.values.items():
                key = (ev.minute, ev.site, dim, value)
                row = rows[key]
                for name, n in counts.items():
                    row[name] += n
                if ev.session is not None:
                    first.setdefault((ev.session, ev.site, dim, value), ev.minute)
                    active[key].add(ev.session)
                if four and dim in SCAN_DIMS:
                    if ev.rec.get("path_template") is not None:
                        paths[key].add(str(ev.rec["path_template"]))
                    if ev.rec.get("path") is not None and value != "":
                        targets[key].add(str(ev.rec["path"]))  # an unknown ASN is no scanner
        for (_, site, dim, value), minute in first.items():
            rows[(minute, site, dim, value)]["sessions_new"] += 1
        for key, sessions in active.items():
            rows[key]["sessions_active"] = len(sessions)
        for key, names in paths.items():
            rows[key]["paths_4xx"] = len(names)
        for key, names in targets.items():
            rows[key]["targets_4xx"] = len(names)
        return rows

    def flush(self, conn: sqlite3.Connection, wall: float) -> int:
        """Rewrite the whole table; answer how many rows the records since the last flush
        touched (what the writer's flush reports)."""
        touched = {(ev.minute, ev.site, dim, value)
                   for ev in self.events[self.flushed:] for dim, value in ev.values.items()}
        self.flushed = len(self.events)
        conn.execute("DELETE FROM agg")
        cols = ", ".join(COUNTERS)
        conn.executemany(
            f"INSERT INTO agg (t, res, site, dim, value, {cols}, updated) "
            f"VALUES ({', '.join('?' * (len(COUNTERS) + 6))})",
            [(t, 60, site, dim, value, *(row[c] for c in COUNTERS), wall)
             for (t, site, dim, value), row in self.table().items()])
        return len(touched)


Row = tuple[Any, ...]
SESSION_COUNTS = ("sessions_new", "sessions_active")


def mismatches(got: list[Row], want: list[Row], restarted: bool = False) -> list[str]:
    """Differences between the writer's rows and the oracle's, both as
    ``(t, res, site, dim, value, *COUNTERS)``: every counter must be equal, except ``rt_sum``
    (a float sum: the order of additions may differ) and ``targets_4xx`` (a HyperLogLog
    estimate: within max(2, 25 %) of the exact count per row, within 3 % over all rows).

    ``restarted``: the writer was rebuilt from the live records. It cannot know whether a
    session's record on a path that is named now was counted under ``"other"`` (before k
    sessions used the path), so the session counts of ``path_template = "other"`` may be lower
    than the truth, never higher (docs/aggregates.md: the figure is a lower bound, it never
    over-counts)."""
    g = {r[:5]: dict(zip(COUNTERS, r[5:], strict=True)) for r in got}
    w = {r[:5]: dict(zip(COUNTERS, r[5:], strict=True)) for r in want}
    out = [f"row only in the writer's table: {k}" for k in sorted(g.keys() - w.keys())]
    out += [f"row missing from the writer's table: {k}" for k in sorted(w.keys() - g.keys())]
    est = exact = 0.0
    for k in sorted(g.keys() & w.keys()):
        for c in COUNTERS:
            a, b = g[k][c], w[k][c]
            if c == "rt_sum":
                ok = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
            elif c == "targets_4xx":
                est, exact = est + a, exact + b
                ok = abs(a - b) <= max(2.0, 0.25 * b)
            elif restarted and k[3:] == ("path_template", OTHER) and c in SESSION_COUNTS:
                ok = a <= b
            else:
                ok = a == b
            if not ok:
                out.append(f"{k} {c}: writer {a}, oracle {b}")
    if abs(est - exact) > 0.03 * exact:
        out.append(f"targets_4xx over all rows: writer {est}, oracle {exact}")
    return out
