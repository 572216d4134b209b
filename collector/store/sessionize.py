"""Sessionization of a whole batch on columns, with the same answer as
:meth:`collector.sessions.SessionTable.touch` called record by record in arrival order.

Per session key, in arrival order, a record opens a new session when its key has no open session,
when its time is more than the site's idle timeout past the newest time of the session so far, or
when its site differs from the session's. The first two are column expressions (a running maximum
per key, shifted by one, against the open session's last time looked up once per distinct key);
keys whose site changes inside the batch (rare: the key is derived from the site) are walked in
Python, exactly. New sessions get their ``sid`` in the arrival order of their first record, as the
record-at-a-time table hands them out. The table itself is then updated once per session touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from collector.sessions import Session, SessionTable


@dataclass(slots=True)
class Assigned:
    sids: pl.Series  # Int64, one per batch row; null for aggregate-only rows
    touched: list[Session] = field(default_factory=list)  # still open after the batch
    ended: list[Session] = field(default_factory=list)
    ended_at: list[int] = field(default_factory=list)  # row that ended each (its batch row)
    started: list[int] = field(default_factory=list)  # sids opened by this batch


def _or_default(name: str, default: str) -> pl.Expr:
    c = pl.col(name)
    return pl.when(c.is_null() | (c == "")).then(pl.lit(default)).otherwise(c).alias(name)


def assign(df: pl.DataFrame, table: SessionTable, wall: float) -> Assigned:
    """Attach every row of ``df`` (``session_key``, ``time``, ``source``, ``site``,
    ``aggregate_only``) to its session in ``table`` and update the table."""
    n = df.height
    rows = df.select(
        pl.int_range(n, dtype=pl.Int64).alias("i"),
        pl.col("session_key").alias("key"),
        pl.col("time").alias("t"),
        _or_default("source", "local"),
        _or_default("site", "default"),
        pl.col("aggregate_only").fill_null(False).alias("skip"),
    ).filter(~pl.col("skip"))
    if rows.height == 0:
        return Assigned(pl.Series("sid", [None] * n, dtype=pl.Int64))
    by_key = table.by_key
    keys = rows["key"].unique().to_list()
    open_ = [by_key[k] for k in keys if k in by_key]
    known = pl.DataFrame({
        "key": [s.key for s in open_], "o_sid": [s.sid for s in open_],
        "o_last": [s.last_log for s in open_], "o_site": [s.site for s in open_],
    }, schema={"key": pl.String, "o_sid": pl.Int64, "o_last": pl.Float64,
               "o_site": pl.String})
    sites = {*rows["site"].unique().to_list(), *(s.site for s in open_)}
    timeouts = {s: float(table.site_timeouts.get(s, table.idle_timeout)) for s in sites}
    rows = rows.join(known, on="key", how="left", maintain_order="left").with_columns(
        pl.col("site").replace_strict(timeouts, return_dtype=pl.Float64).alias("timeout"),
        pl.max_horizontal(pl.col("t").cum_max().shift(1).over("key"), pl.col("o_last"))
        .alias("prev"),
        pl.col("site").shift(1).over("key").fill_null(pl.col("o_site")).alias("prev_site"),
    )
    brk = (pl.col("prev").is_null() | ((pl.col("t") - pl.col("prev")) > pl.col("timeout"))
           | (pl.col("site") != pl.col("prev_site")).fill_null(False))
    rows = rows.with_columns(brk.alias("brk"))
    odd = rows.filter((pl.col("site") != pl.col("prev_site")).fill_null(False))["key"]
    if odd.len():
        rows = _walk(rows, set(odd.to_list()), timeouts)
    first = table.next_sid
    rows = rows.with_columns(
        pl.when(pl.col("brk")).then(pl.col("brk").cast(pl.Int64).cum_sum() + (first - 1))
        .otherwise(None).alias("new_sid"))
    rows = rows.with_columns(
        pl.col("new_sid").forward_fill().over("key").fill_null(pl.col("o_sid")).alias("sid"))
    segs = rows.group_by("sid", maintain_order=True).agg(
        pl.col("key").first(), pl.col("source").first(), pl.col("site").first(),
        pl.col("t").min().alias("lo"), pl.col("t").max().alias("hi"),
        pl.len().alias("n"), pl.col("brk").first(), pl.col("i").first(),
    )
    if rows.height == n:
        sids = rows["sid"]
    else:
        sids = pl.Series("sid", [None] * n, dtype=pl.Int64)
        sids.scatter(rows["i"], rows["sid"])
    out = Assigned(sids)
    _apply(table, segs, wall, out)
    clocks = table.clocks
    for source, newest in rows.group_by("source").agg(pl.col("t").max()).iter_rows():
        hi = min(newest, wall)  # a future-stamped record never moves a log clock past the wall
        if hi > clocks.get(source, float("-inf")):
            clocks[source] = hi
    return out


def _walk(rows: pl.DataFrame, odd: set[str], timeouts: dict[str, float]) -> pl.DataFrame:
    """Exact break flags for the keys whose site changes, one record at a time."""
    part = rows.filter(pl.col("key").is_in(list(odd)))
    state: dict[str, tuple[float, str] | None] = {}
    flags: list[bool] = []
    for key, t, site, o_last, o_site in part.select(
            "key", "t", "site", "o_last", "o_site").iter_rows():
        if key not in state:
            state[key] = None if o_last is None else (o_last, o_site)
        cur = state[key]
        if cur is None or t - cur[0] > timeouts[cur[1]] or site != cur[1]:
            flags.append(True)
            state[key] = (t, site)
        else:
            flags.append(False)
            if t > cur[0]:
                state[key] = (t, cur[1])
    fixed = part.select("i").with_columns(pl.Series("brk2", flags, dtype=pl.Boolean))
    return rows.join(fixed, on="i", how="left", maintain_order="left").with_columns(
        pl.coalesce("brk2", "brk").alias("brk")).drop("brk2")


def _apply(table: SessionTable, segs: pl.DataFrame, wall: float, out: Assigned) -> None:
    """Update ``table`` once per session segment, in arrival order of each segment's start."""
    by_key, by_sid = table.by_key, table.by_sid
    touched: dict[int, Session] = {}
    for sid, key, source, site, lo, hi, n, brk, at in segs.iter_rows():
        if brk:
            old = by_key.get(key)
            if old is not None:
                out.ended.append(table._forget(old))
                out.ended_at.append(at)
                touched.pop(old.sid, None)
            s = table.open(sid, key, source, site, lo, hi, wall, n)
            out.started.append(sid)
        else:
            s = by_sid[sid]
            table.extend(s, lo, hi, wall, n)
        touched[sid] = s
    out.touched = [s for s in touched.values() if s.sid in by_sid]
