"""Which record times ``serve`` takes: bounded work for any timestamp.

A record stamped far in the past or the future makes work proportional to the distance: the
detectors step through every minute between a site's first record and now, the aggregates and
the log clocks move with it. ``serve`` therefore takes only records stamped within
``sessions.max_age`` before the wall clock and ``sessions.max_clock_skew`` after it (``import``,
which replays old files on purpose, takes any past time). ``time_problem`` is the one check;
the record-at-a-time pipeline calls it per record, a columnar engine may call it per value.
"""

from __future__ import annotations

from datetime import UTC, datetime


def time_problem(t: float, now: float, max_skew: float, max_age: float | None) -> str | None:
    """Why a record stamped ``t`` (epoch seconds) is refused at wall time ``now``, or None.

    ``max_age`` ``None`` or ``0``: no lower bound (``import``)."""
    ahead = t - now
    if ahead > max_skew:
        return f"timestamp is {ahead:.0f}s in the future (allowed skew {max_skew:.0f}s)"
    if max_age and now - t > max_age:
        try:
            stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
            stamp = stamp.replace("+00:00", "Z")
        except (ValueError, OverflowError, OSError):
            stamp = f"{t:.0f}"
        age = f"{max_age / 86400:g}d" if max_age >= 86400 else f"{max_age:g}s"
        return (f"timestamp {stamp} is older than sessions.max_age ({age}); "
                "replay old logs with `lethelog import`")
    return None
