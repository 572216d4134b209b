"""structlog configuration: one JSON object per line for the service's own events.

Events name what happened and carry counts, names and masked values only; the raw client address
never reaches an event (callers never pass it), and aiohttp's access log is replaced by
:class:`MaskedAccessLogger`, which records the caller's address truncated, the method from the
closed vocabulary and the path scrubbed (secrets and addresses out).

**No library writes on our behalf.** :func:`configure_logging` also takes over the standard
``logging`` tree (aiohttp's server and access loggers, asyncio, redis, anything else) and the
interpreter's last-resort hooks (``sys.excepthook``, ``threading.excepthook``,
``sys.unraisablehook``): a library record becomes one ``library_log`` event with the logger's
name, the first line of its message template (its arguments are dropped, addresses in the
template masked), the masked form of any argument that is an IP address (``peer``), and the
exception's type name — never its text or traceback, which can hold request data (aiohttp's
``Error handling request from 127.0.0.5`` with a traceback quoting the request line).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from types import TracebackType
from typing import Any, TextIO

import orjson
import structlog
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from masking.ip import AddressError, IPMasker
from masking.textaddr import TextMasker
from masking.url import UrlScrubber
from masking.vocab import method_value

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    _take_over_library_logging(_LEVELS.get(level, logging.INFO))
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
_text_masker = TextMasker(_peer_masker.mask_packed)
_path_scrubber = UrlScrubber(addresses=_text_masker)
_MAX_TEMPLATE = 200
_WARNING_CATEGORY = re.compile(r": (\w*Warning): ")


def _masked_ip(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        return _peer_masker.mask(value)
    except AddressError:
        return None


class LibraryLogHandler(logging.Handler):
    """Every ``logging`` record (aiohttp, asyncio, redis …) as a sanitised ``library_log``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            msg = record.msg
            if isinstance(msg, str):
                line = msg.split("\n", 1)[0][:_MAX_TEMPLATE]
                fields["template"] = _text_masker.text(line)
            else:
                fields["template"] = type(msg).__name__
            args = record.args if isinstance(record.args, tuple) else ()
            if record.name == "py.warnings" and args and isinstance(args[0], str):
                category = _WARNING_CATEGORY.search(args[0])
                if category:
                    fields["warning"] = category.group(1)
            peers = [p for p in map(_masked_ip, args) if p]
            if peers:
                fields["peer"] = peers[0] if len(peers) == 1 else peers
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None:
                fields["error"] = type(exc).__name__
            logger = structlog.get_logger("lethelog.library")
            if record.levelno >= logging.ERROR:
                logger.error("library_log", **fields)
            elif record.levelno >= logging.WARNING:
                logger.warning("library_log", **fields)
            elif record.levelno >= logging.INFO:
                logger.info("library_log", **fields)
            else:
                logger.debug("library_log", **fields)
        except Exception:  # a log line must never take the service down, nor print a traceback
            pass


def _excepthook(kind: type[BaseException], exc: BaseException,
                tb: TracebackType | None) -> None:
    structlog.get_logger("lethelog").error("uncaught_exception", error=kind.__name__)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    structlog.get_logger("lethelog").error(
        "uncaught_exception", error=args.exc_type.__name__,
        thread=args.thread.name if args.thread is not None else None)


def _unraisablehook(unraisable: Any) -> None:
    structlog.get_logger("lethelog").warning(
        "unraisable_exception", error=type(unraisable.exc_value).__name__)


def _take_over_library_logging(level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if not type(handler).__module__.startswith("_pytest"):  # keep pytest's capture
            root.removeHandler(handler)
    root.addHandler(LibraryLogHandler())
    root.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
    # aiohttp's default access log formats the request (peer, line, agent) into its message;
    # the service uses MaskedAccessLogger instead, so this logger stays silent.
    logging.getLogger("aiohttp.access").disabled = True
    logging.captureWarnings(True)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    sys.unraisablehook = _unraisablehook


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
            "http_request", method=method_value(request.method),
            path=_path_scrubber.path(request.rel_url.path), status=response.status,
            seconds=round(time, 6), peer=masked_peer(request),
        )

    @property
    def enabled(self) -> bool:
        return True
