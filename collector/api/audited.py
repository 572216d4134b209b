"""Audit hook for data reads: calls ``collector.audit.audit`` when that module exists."""

from __future__ import annotations

from typing import Any

from aiohttp import web

try:  # collector/audit.py is another module's; reads are audited as soon as it is there
    from collector.audit import audit as _audit
except ImportError:  # pragma: no cover - depends on the tree
    _audit = None


def audit(request: web.Request, endpoint: str, query: Any, rows: int) -> None:
    if _audit is not None:
        _audit(request, endpoint=endpoint, query=query, rows=rows)
