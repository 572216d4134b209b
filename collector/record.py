"""The record's two shapes: what a source hands to the pipeline, and what the store keeps.

A **raw record** is a ``dict`` produced by a parser (``collector.parse``) or by the JSON field
mapping. It may hold the raw client address; it lives only in memory, inside one pipeline pass.
Its keys are the ``RAW_FIELDS`` below (all optional except ``time`` and ``client``).

A **stored record** is what the pipeline emits after masking and enrichment; its keys are
``STORED_FIELDS``. Unknown values are ``None``, never an empty-string guess.
"""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]


class RecordError(ValueError):
    """A record is rejected. The message is the reason shown to the shipper.

    It must never contain a raw client address: build it from field names and masked values.
    """


RAW_FIELDS: dict[str, str] = {
    "time": "float, seconds since the epoch, UTC (parsers convert time zones)",
    "client": "str, the client field as logged: IP, IP:port, [IPv6]:port, unix:, hostname, "
    "or an X-Forwarded-For chain 'a, b, c'",
    "forwarded_for": "str | None, the X-Forwarded-For header value",
    "method": "str | None",
    "target": "str | None, the request target as logged (path and query)",
    "protocol": "str | None, e.g. HTTP/1.1",
    "host": "str | None, virtual host",
    "status": "int | None",
    "bytes": "int | None, response body bytes",
    "referrer": "str | None",
    "user_agent": "str | None",
    "accept_language": "str | None",
    "request_time": "float | None, seconds",
    "session_hint": "str | None, e.g. a session cookie value (used for the key, never stored)",
    "dnt": "bool | None, DNT: 1",
    "gpc": "bool | None, Sec-GPC: 1",
}

STORED_FIELDS: tuple[str, ...] = (
    "time",  # RFC 3339 UTC on output; epoch float in the store
    "ip",  # masked
    "method",
    "host",
    "path",
    "path_template",
    "query",  # scrubbed
    "protocol",
    "status",
    "bytes",
    "referrer",  # scheme://host/path only
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device",
    "device_type",  # desktop, mobile, tablet, bot, other
    "is_bot",
    "language",
    "languages",
    "timezone",
    "country",
    "region",
    "city",
    "asn",
    "isp",
    "connection_type",
    "is_anonymous_proxy",
    "is_vpn",
    "is_tor",
    "is_hosting",
    "request_time",
    "dnt",
    "source",  # name of the shipper that sent it
    "site",
    "session",  # pseudonymous session id
)
