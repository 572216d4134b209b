"""structlog configuration: one JSON object per line for the service's own events.

Events name what happened and carry counts, names and masked values only; the raw client address
never reaches an event (callers never pass it), and aiohttp's access log is replaced by
:class:`MaskedAccessLogger`, which records the caller's address truncated.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson
import structlog
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from masking.ip import AddressError, IPMasker

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


_peer_masker = IPMasker(24, 48)


def masked_peer(request: BaseRequest) -> str | None:
    """The caller's address, truncated like a record's client address."""
    peer = request.remote
    if not peer:
        return None
    try:
        return _peer_masker.mask(peer)
    except AddressError:
        return None


class MaskedAccessLogger(AbstractAccessLogger):
    """aiohttp access log as structlog events, with the caller's address masked."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        structlog.get_logger("lethelog.access").info(
            "http_request", method=request.method, path=request.rel_url.path,
            status=response.status, seconds=round(time, 6), peer=masked_peer(request),
        )

    @property
    def enabled(self) -> bool:
        return True
