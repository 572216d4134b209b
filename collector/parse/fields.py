"""Turning captured text into raw-record values (shared by line, custom and JSON parsers)."""

from __future__ import annotations

import re
from typing import Any

from collector.parse.errors import ParseError
from collector.parse.timeparse import any_time, clf_time, epoch_time, iso_time
from masking.ip import AddressError, validate_field

__all__ = [
    "build_record",
    "check_client",
    "cookie_session",
    "nginx_unescape",
    "none_if_dash",
    "split_request",
]

_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})")
_METHOD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
_SESSION_COOKIE = re.compile(
    r"(?:^|[;,]\s*)(session|sessionid|session_id|sid|sessid|phpsessid|jsessionid|"
    r"asp\.net_sessionid|aspsessionid\w*|connect\.sid|_session_id|_[\w-]*_session|"
    r"[\w-]*sess(?:ion)?[\w-]*)=([^;,\s]+)",
    re.I,
)


def none_if_dash(value: str | None) -> str | None:
    if value is None or value == "-" or value == "":
        return None
    return value


def nginx_unescape(value: str) -> str:
    """Undo nginx/Apache ``\\xHH`` and ``\\"`` escapes; undecodable bytes become U+FFFD."""
    if "\\" not in value:
        return value
    if "\\x" in value:
        raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16) + 0xDC00) if int(m.group(1), 16) >= 0x80
                          else chr(int(m.group(1), 16)), value)
        value = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value.replace('\\"', '"').replace("\\\\", "\\")


def split_request(request: str | None) -> tuple[str | None, str | None, str | None]:
    """``"GET /x HTTP/1.1"`` → (method, target, protocol); junk → (None, None, None)."""
    if request is None:
        return None, None, None
    request = request.strip()
    if not request or request == "-":
        return None, None, None
    parts = request.split(" ")
    if len(parts) >= 3 and parts[-1].upper().startswith("HTTP/"):
        method, target, protocol = parts[0], " ".join(parts[1:-1]), parts[-1]
    elif len(parts) == 2:
        method, target, protocol = parts[0], parts[1], None
    else:
        return None, None, None
    if not _METHOD.match(method):
        return None, None, None
    return method, target or None, protocol


def cookie_session(cookie: str | None) -> str | None:
    """A session-like cookie value out of a Cookie header (``session=``, ``PHPSESSID=`` ...)."""
    if not cookie or cookie == "-":
        return None
    m = _SESSION_COOKIE.search(cookie)
    return m.group(2) if m else None


def check_client(field: str | None, forwarded_for: str | None = None) -> None:
    """Validate the client field (raises ParseError with a reason, never the address)."""
    try:
        validate_field(field, forwarded_for)
    except AddressError as err:
        raise ParseError(str(err)) from None


def _int(name: str, value: Any) -> int | None:
    if value is None or value == "-" or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip().lstrip("+"))
    except ValueError:
        raise ParseError(f"{name} is not a number") from None


def _float(name: str, value: Any, scale: float = 1.0) -> float | None:
    if value is None or value == "-" or value == "":
        return None
    try:
        return float(value) * scale
    except (TypeError, ValueError):
        raise ParseError(f"{name} is not a number") from None


_TIME_FIELDS = ("time_clf", "time_iso", "time_epoch", "time_any", "time")


def build_record(g: dict[str, Any]) -> dict[str, Any]:
    """Captured groups (canonical names) → raw record. Raises ParseError."""
    rec: dict[str, Any] = {}
    # time
    t: float | None = None
    for key in _TIME_FIELDS:
        value = g.get(key)
        if not value or value == "-":
            continue
        try:
            if key == "time_clf":
                t = clf_time(value)
            elif key == "time_iso":
                t = iso_time(value)
            elif key == "time_epoch":
                t = epoch_time(value)
            else:
                t = any_time(value)
        except (ValueError, OverflowError):
            field = "time" if key == "time_any" else key
            raise ParseError(f"{field} is not a valid time") from None
        break
    if t is None:
        raise ParseError("missing timestamp")
    rec["time"] = t
    client = g.get("client")
    if client is not None:
        client = client.strip()
    rec["client"] = client if client else "-"
    rec["forwarded_for"] = none_if_dash(g.get("forwarded_for"))
    request = g.get("request")
    if request is not None:
        if "\\" in request:
            request = nginx_unescape(request)
        method, target, protocol = split_request(request)
    else:
        method, target, protocol = None, None, None
    rec["method"] = none_if_dash(g.get("method")) or method
    target = none_if_dash(g.get("target")) or target
    query = none_if_dash(g.get("query"))
    if query and target and "?" not in target:
        target = f"{target}?{query}"
    rec["target"] = target
    rec["protocol"] = none_if_dash(g.get("protocol")) or protocol
    rec["host"] = none_if_dash(g.get("host"))
    rec["status"] = _int("status", g.get("status"))
    rec["bytes"] = _int("bytes", g.get("bytes"))
    for key in ("referrer", "user_agent", "accept_language"):
        value = none_if_dash(g.get(key))
        if value is not None and "\\" in value:
            value = nginx_unescape(value)
        rec[key] = value
    rt = _float("request_time", g.get("request_time"))
    if rt is None and g.get("request_time_ms") is not None:
        rt = _float("request_time", g.get("request_time_ms"), 0.001)
    if rt is None and g.get("request_time_us") is not None:
        rt = _float("request_time", g.get("request_time_us"), 0.000001)
    rec["request_time"] = rt
    hint = none_if_dash(g.get("session_hint")) or cookie_session(g.get("cookie"))
    rec["session_hint"] = hint
    for key in ("dnt", "gpc"):
        value = none_if_dash(g.get(key))
        rec[key] = None if value is None else value.strip().lower() in ("1", "true", "yes")
    if rec["status"] is not None and not 0 <= rec["status"] <= 999:
        raise ParseError("status is out of range")
    return rec
