"""Regular expressions for ``~ /.../``: RE2 (linear time, no catastrophic backtracking)."""

from __future__ import annotations

import functools
from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.max_mem = 8 << 20
MAX_PATTERN = 1000


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Any:
    """A compiled RE2 pattern, or ``ValueError`` naming what is wrong with it."""
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"pattern longer than {MAX_PATTERN} characters")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        msg = exc.args[0] if exc.args else "invalid pattern"
        raise ValueError(msg.decode() if isinstance(msg, bytes) else str(msg)) from None


def regexp(pattern: str, value: Any) -> int | None:
    """SQL function ``regexp(pattern, value)``: 1 when the pattern matches anywhere in value."""
    if value is None or pattern is None:
        return None
    return 1 if compile_regex(pattern).search(str(value)) is not None else 0
