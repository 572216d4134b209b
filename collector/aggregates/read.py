"""Reading the aggregates: breakdowns and time series, scoped to sites, k-anonymous.

Every function takes a SQLite connection (``SQLiteStore.read`` hands out read-only ones), the
caller's sites (``None`` = every site; scoping is done in the SQL) and ``k``: a group shown with
fewer than ``k`` distinct sessions over the requested range is folded into one ``"other"`` row,
and an ``"other"`` row (or a total) that itself stays below ``k`` is left out.

Distinct sessions over a range are a lower bound (see ``collector.aggregates.counter``):
``max(sum of sessions_new, max of sessions_active)``. Both terms count only sessions really
seen in the group, so a group is shown only when it certainly holds ``k`` sessions or more.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from collector.aggregates.schema import COUNTERS, DIMS, PARTITIONING, RT_COLS, RT_EDGES

OTHER = "other"
ALL_DIMS: tuple[str, ...] = ("site", *DIMS)

_SUMS = ", ".join(f"max({c})" if c == "sessions_active" else f"sum({c})" for c in COUNTERS)


class AggregateQueryError(ValueError):
    """The breakdown asked for is not kept; the message says which dimensions are."""


def check_dims(dims: Iterable[str]) -> tuple[str, bool]:
    """``(stored dimension or "", by_site)`` for a list of dimensions, or raise."""
    dims = list(dims)
    for d in dims:
        if d not in ALL_DIMS:
            raise AggregateQueryError(
                f"unknown dimension {d!r}; known: {', '.join(ALL_DIMS)}")
    if len(set(dims)) != len(dims):
        raise AggregateQueryError(f"dimension listed twice in {dims}")
    rest = [d for d in dims if d != "site"]
    if len(rest) > 1:
        raise AggregateQueryError(
            f"aggregates are kept per single dimension (plus site): cannot combine "
            f"{' and '.join(rest)}")
    return (rest[0] if rest else ""), "site" in dims


def _scope(start: float | None, end: float | None, sites: frozenset[str] | None
           ) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if start is not None:
        where.append("t >= ?")
        args.append(start)
    if end is not None:
        where.append("t < ?")
        args.append(end)
    if sites is not None:
        where.append(f"site IN ({', '.join('?' * len(sites))})" if sites else "0")
        args.extend(sorted(sites))
    return where, args


def _counts(vals: tuple[Any, ...]) -> dict[str, Any]:
    c = dict(zip(COUNTERS, vals, strict=True))
    return {
        "requests": int(c["requests"] or 0),
        "bytes": int(c["bytes"] or 0),
        **{f"status_{n}xx": int(c[f"s{n}xx"] or 0) for n in range(1, 6)},
        "status_401": int(c["s401"] or 0),
        "status_403": int(c["s403"] or 0),
        "status_404": int(c["s404"] or 0),
        "bots": int(c["bots"] or 0),
        "sessions": max(int(c["sessions_new"] or 0), int(c["sessions_active"] or 0)),
        "anonymizer": {"vpn": int(c["anon_vpn"] or 0), "tor": int(c["anon_tor"] or 0),
                       "proxy": int(c["anon_proxy"] or 0), "hosting": int(c["anon_hosting"] or 0)},
        "request_time": {
            "count": int(c["rt_count"] or 0),
            "sum": round(float(c["rt_sum"] or 0.0), 6),
            "buckets": {("le_" + str(e)): int(c[col] or 0)
                        for e, col in zip((*RT_EDGES, "inf"), RT_COLS, strict=True)},
        },
    }


def _out_value(dim: str, value: str) -> Any:
    if value == "":
        return None
    if dim == "asn" and value.isdigit():
        return int(value)
    return value


def _merge(into: dict[str, Any], row: dict[str, Any]) -> None:
    for key, v in row.items():
        if isinstance(v, dict):
            _merge(into.setdefault(key, {}), v)
        elif isinstance(v, int | float) and not isinstance(v, bool) and key in into:
            into[key] += v


def aggregate_counts(conn: sqlite3.Connection, dims: list[str], start: float | None,
                     end: float | None, sites: frozenset[str] | None, k: int
                     ) -> list[dict[str, Any]]:
    """Counts over ``[start, end)`` (bucket start times, log time) grouped by ``dims``.

    ``dims`` is ``[]`` (one total row), one dimension of ``ALL_DIMS``, or ``"site"`` plus one
    dimension. Rows: ``{<dim>: value, ..., "requests", "bytes", "status_1xx".."status_5xx",
    "status_401", "status_403", "status_404", "bots", "sessions", "anonymizer",
    "request_time"}``, most requests first; groups below ``k`` sessions folded into
    ``"other"``.
    """
    dim, by_site = check_dims(dims)
    where, args = _scope(start, end, sites)
    where.insert(0, "dim = ?")
    args.insert(0, dim)
    keys = (["site"] if by_site else []) + (["value"] if dim else [])
    sql = (f"SELECT {', '.join(keys) + ', ' if keys else ''}{_SUMS} FROM agg "
           f"WHERE {' AND '.join(where)}"
           + (f" GROUP BY {', '.join(keys)}" if keys else ""))
    rows: list[dict[str, Any]] = []
    for r in conn.execute(sql, args):
        vals = r[len(keys):]
        if vals[0] is None:  # no row matched (aggregate without GROUP BY)
            continue
        out: dict[str, Any] = {}
        for d in dims:
            if d == "site":
                out["site"] = r[0]
            else:
                out[d] = _out_value(d, r[1 if by_site else 0])
        rows.append({**out, **_counts(vals)})
    return fold(rows, dims, k)


def fold(rows: list[dict[str, Any]], dims: list[str], k: int) -> list[dict[str, Any]]:
    """Fold rows below ``k`` sessions into one ``"other"`` row (left out if it too is < k)."""
    def is_small(r: dict[str, Any]) -> bool:  # below k, or already stored as "other"
        return r["sessions"] < k or any(r.get(d) == OTHER for d in dims)

    shown = [r for r in rows if not is_small(r)]
    small = [r for r in rows if is_small(r)]
    shown.sort(key=lambda r: (-r["requests"], str([r.get(d) for d in dims])))
    if small and dims:
        other: dict[str, Any] = {d: OTHER for d in dims}
        first = {key: v for key, v in small[0].items() if key not in dims}
        other.update(_copy(first))
        for r in small[1:]:
            _merge(other, {key: v for key, v in r.items() if key not in dims})
        # Summing session counts is right when the groups partition sessions; otherwise one
        # session may sit in several folded groups, and only the largest is a safe lower bound.
        if not all(d in PARTITIONING for d in dims):
            other["sessions"] = max(r["sessions"] for r in small)
        if other["sessions"] >= k:
            shown.append(other)
    return shown


def _copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def aggregate_series(conn: sqlite3.Connection, start: float, end: float, step: int,
                     sites: frozenset[str] | None, k: int) -> list[dict[str, Any]]:
    """Totals per ``step`` seconds over ``[start, end)``; a bucket below ``k`` sessions has its
    counts left out (``"suppressed": true``). Buckets without traffic are not listed."""
    step = max(60, int(step))
    where, args = _scope(start, end, sites)
    where.insert(0, "dim = ''")
    sql = (f"SELECT (t / {step}) * {step} AS b, {_SUMS} FROM agg WHERE {' AND '.join(where)} "
           "GROUP BY b ORDER BY b")
    out: list[dict[str, Any]] = []
    for r in conn.execute(sql, args):
        c = _counts(r[1:])
        if c["sessions"] < k:
            out.append({"t": r[0], "suppressed": True})
        else:
            out.append({"t": r[0], **c})
    return out


def time_bounds(conn: sqlite3.Connection, sites: frozenset[str] | None
                ) -> tuple[float | None, float | None]:
    """First and last bucket start (log time) in the aggregates the caller may see."""
    where, args = _scope(None, None, sites)
    where.insert(0, "dim = ''")
    row = conn.execute(f"SELECT min(t), max(t) FROM agg WHERE {' AND '.join(where)}",
                       args).fetchone()
    return (row[0], row[1]) if row else (None, None)


def k_for(settings: Any, sites: frozenset[str] | None) -> int:
    """The k threshold for a caller seeing ``sites``: the strictest of theirs (per-site
    ``k_anonymity`` overrides are only ever higher than the global one)."""
    k = int(settings.aggregates.k_anonymity)
    for spec in getattr(settings, "sites", ()):
        if (sites is None or spec.name in sites) and "k_anonymity" in spec.overrides:
            k = max(k, int(spec.overrides["k_anonymity"]))
    return k
