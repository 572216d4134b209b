"""Time formatting shared by the API, the CLI and the store: RFC 3339 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(epoch: float) -> str:
    """``1431857100.0`` → ``'2015-05-17T10:05:00Z'`` (milliseconds only when present)."""
    dt = datetime.fromtimestamp(epoch, UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Inverse of :func:`rfc3339`; accepts any ISO 8601 offset, naive means UTC."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
