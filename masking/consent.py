"""Consent signals: ``DNT: 1`` and ``Sec-GPC: 1``."""

from __future__ import annotations

__all__ = ["consent_flags", "signal_set"]

_TRUE = frozenset({"1", "true", "yes", "on"})


def signal_set(value: str | bool | int | None) -> bool:
    """Whether a DNT / Sec-GPC value (header text, bool or int) asks not to be tracked."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value == 1
    return value.strip().lower() in _TRUE


def consent_flags(dnt: str | bool | None, gpc: str | bool | None) -> tuple[bool, bool]:
    """(dnt, gpc) as booleans; unknown or malformed values count as not set."""
    return signal_set(dnt), signal_set(gpc)
