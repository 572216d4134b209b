"""Query errors: where the mistake is and what was expected there."""

from __future__ import annotations

from typing import Any

from collector.query.redact import redact_addresses


class QueryError(ValueError):
    """A query that cannot run. ``position`` is the 0-based character offset of the mistake."""

    def __init__(self, position: int, message: str, expected: str | None = None,
                 got: str | None = None) -> None:
        self.position = position
        self.expected = expected
        self.got = None if got is None else redact_addresses(_short(got))
        self.detail = redact_addresses(message)
        text = self.detail
        if expected is not None:
            text += f": expected {expected}"
            if self.got is not None:
                text += f", got {self.got}"
        super().__init__(f"at position {position}: {text}")

    def to_json(self, query: str) -> dict[str, Any]:
        return {
            "error": str(self),
            "position": self.position,
            "column": self.position + 1,
            "expected": self.expected,
            "got": self.got,
            "query": redact_addresses(query),
            "pointer": " " * self.position + "^",
        }


class QueryTimeout(Exception):
    """The query ran longer than ``query.timeout`` and was stopped."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"query stopped after {timeout:g}s (query.timeout): narrow the time range or "
            "the filter, or raise query.timeout")
        self.timeout = timeout


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
