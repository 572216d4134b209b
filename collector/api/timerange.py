"""Reading ``start``/``end`` query parameters: RFC 3339 or epoch seconds, or a clear 400."""

from __future__ import annotations

import math

from aiohttp import web

from collector.timefmt import parse_rfc3339

YEAR_1, YEAR_9999 = -62135596800.0, 253402300799.0  # epoch seconds of 0001-01-01, 9999-12-31


def bad_request(message: str) -> web.HTTPBadRequest:
    import orjson

    return web.HTTPBadRequest(text=orjson.dumps({"error": message}).decode(),
                              content_type="application/json")


def time_param(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            value = parse_rfc3339(raw)
        except ValueError:
            raise bad_request(f"{name}: expected RFC 3339 time or epoch seconds, got "
                              f"{raw[:40]!r}") from None
    if not math.isfinite(value):
        raise bad_request(f"{name}: expected a finite time")
    if not YEAR_1 <= value <= YEAR_9999:  # beyond, SQLite integers and datetime overflow
        raise bad_request(f"{name}: expected a time between years 1 and 9999")
    return value
