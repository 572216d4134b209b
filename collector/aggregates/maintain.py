"""Rollup and retention: minutes become hours, hours are deleted, on log and wall time.

A minute row is rolled into its hour once it is older than ``aggregates.minute_retention``,
measured either on the log clock (the newest bucket in the table, so replaying an old file keeps
its recent minutes) or on the wall clock since the row was last written. Any row older than
``aggregates.retention`` on either clock is deleted (a site's stricter ``retention`` applies to
its rows). Counters add up when minutes merge; ``sessions_active`` keeps the largest minute.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from collector.aggregates.schema import COUNTERS, MAX_COUNTERS

_cols = ", ".join(COUNTERS)
_ROLLUP = (
    f"INSERT INTO agg (t, res, site, dim, value, {_cols}, updated) "
    "SELECT (t / 3600) * 3600, 3600, site, dim, value, "
    + ", ".join(f"max({c})" if c in MAX_COUNTERS else f"sum({c})" for c in COUNTERS)
    + ", max(updated) FROM agg WHERE res = 60 AND (t < ? OR updated < ?) "
    "GROUP BY (t / 3600) * 3600, site, dim, value "
    "ON CONFLICT(dim, t, res, site, value) DO UPDATE SET "
    + ", ".join(f"{c} = max({c}, excluded.{c})" if c in MAX_COUNTERS
                else f"{c} = {c} + excluded.{c}" for c in COUNTERS)
    + ", updated = max(updated, excluded.updated)"
)


@dataclass(slots=True)
class MaintainResult:
    rolled_up: int = 0
    deleted: int = 0


def maintain(conn: sqlite3.Connection, wall: float, minute_retention: float, retention: float,
             site_retention: dict[str, float] | None = None) -> MaintainResult:
    """Roll up and delete (inside the caller's transaction)."""
    (newest,) = conn.execute("SELECT max(t) FROM agg").fetchone()
    if newest is None:
        return MaintainResult()
    result = MaintainResult()
    # Only whole hours roll up on the log clock, so an hour is never half minutes, half hour.
    log_cut = (int(newest - minute_retention) // 3600) * 3600
    wall_cut = wall - minute_retention
    conn.execute(_ROLLUP, (log_cut, wall_cut))
    result.rolled_up = conn.execute(
        "DELETE FROM agg WHERE res = 60 AND (t < ? OR updated < ?)", (log_cut, wall_cut)
    ).rowcount
    result.deleted = conn.execute(
        "DELETE FROM agg WHERE t + res <= ? OR updated < ?",
        (newest - retention, wall - retention),
    ).rowcount
    for site, keep in (site_retention or {}).items():
        if keep < retention:
            result.deleted += conn.execute(
                "DELETE FROM agg WHERE site = ? AND (t + res <= ? OR updated < ?)",
                (site, newest - keep, wall - keep),
            ).rowcount
    return result
