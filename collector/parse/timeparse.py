"""Timestamps → float seconds since the epoch, UTC. CLF times are parsed by hand (no strptime)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

__all__ = ["any_time", "clf_time", "epoch_time", "iso_time"]

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_CLF = re.compile(
    r"^(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(\.\d+)?\s*(?:([+-])(\d{2}):?(\d{2})|Z|UTC|GMT)?\s*$"
)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 (Howard Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@lru_cache(maxsize=4096)
def clf_time(text: str) -> float:
    """``10/Oct/2000:13:55:36 -0700`` → epoch seconds (no zone means UTC). Raises ValueError."""
    m = _CLF.match(text)
    if not m:
        raise ValueError("not a CLF time")
    day, mon_name, year, hh, mm, ss, frac, sign, oh, om = m.groups()
    month = _MONTHS.get(mon_name.lower())
    d, h, mi, s = int(day), int(hh), int(mm), int(ss)
    if month is None or not 1 <= d <= 31 or h > 23 or mi > 59 or s > 60:
        raise ValueError("not a CLF time")
    value = float(_days_from_civil(int(year), month, d) * 86400 + h * 3600 + mi * 60 + s)
    if frac:
        value += float(frac)
    if sign:
        offset = int(oh) * 3600 + int(om) * 60
        value -= offset if sign == "+" else -offset
    return value


@lru_cache(maxsize=4096)
def iso_time(text: str) -> float:
    """ISO 8601 / RFC 3339 (``2015-05-13T23:39:43.945958Z``, ``2012-04-01 00:00:13``) → epoch.

    A time without a zone is taken as UTC. Nanosecond fractions are truncated to microseconds.
    """
    t = text.strip()
    m = re.match(r"^(.*[T ]\d{2}:\d{2}:\d{2})\.(\d+)(.*)$", t)
    if m and len(m.group(2)) > 6:
        t = f"{m.group(1)}.{m.group(2)[:6]}{m.group(3)}"
    if t.endswith(("z", "Z")):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def epoch_time(value: float | int | str) -> float:
    """Seconds, milliseconds, microseconds or nanoseconds since the epoch → seconds."""
    v = float(value)
    if v != v or v < 0:
        raise ValueError("not an epoch time")
    if v > 1e17:
        v /= 1e9
    elif v > 1e14:
        v /= 1e6
    elif v > 1e11:
        v /= 1e3
    return v


_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def any_time(value: object) -> float:
    """A time in any supported shape (number, epoch string, ISO 8601, CLF). Raises ValueError."""
    if isinstance(value, bool) or value is None:
        raise ValueError("not a time")
    if isinstance(value, int | float):
        return epoch_time(value)
    if not isinstance(value, str):
        raise ValueError("not a time")
    text = value.strip()
    if _NUMBER.match(text):
        return epoch_time(text)
    if text.startswith("["):
        text = text.strip("[]")
    if (len(text) > 3 and text[2:3] == "/") or text[1:2] == "/":
        return clf_time(text)
    return iso_time(text)
