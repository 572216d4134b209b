"""The parse error type."""

from __future__ import annotations

__all__ = ["ParseError"]


class ParseError(ValueError):
    """A line or object is rejected. The message is the reason; it never holds a raw address."""
