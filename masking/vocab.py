"""What an aggregate dimension may keep: a closed vocabulary, or a value k sessions shared.

The aggregates outlive every session, so a value a client chose must not reach them as typed.
Every dimension has one rule (:data:`RULES`):

* ``closed``: the value is one of a fixed set, else it is stored as ``"other"``: HTTP methods
  (:data:`HTTP_METHODS`), browser and OS families the UA parser names from its own rules
  (``masking.ua_families``), device types, ISO country codes, AS numbers;
* ``masked``: the masked client network (``a.b.c.0/24``), checked to be one;
* ``operator``: a name the operator configured (the shipper's token name), or ``registry``: a
  name from the operator's GeoIP database (the ISP); either is dropped to ``"other"`` if it
  holds an address;
* ``k``: written under its own name only once ``k_anonymity`` distinct sessions used it, until
  then counted as ``"other"`` (the path template, and any dimension not listed here).

:func:`aggregate_value` is the one entry point the aggregates counter calls, once per distinct
(dimension, value): it returns the value to store, or :data:`NEEDS_K` when the counter must
apply the k rule. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Final

from masking.textaddr import holds_address
from masking.ua_families import BROWSERS, OSES

__all__ = ["HTTP_METHODS", "NEEDS_K", "OTHER", "RULES", "aggregate_value", "method_value"]

OTHER: Final = "other"
NEEDS_K: Final = "\0k"  # not a storable value: the counter applies the k rule

# RFC 9110 §9, PATCH (RFC 5789), WebDAV (RFC 4918, 3253, 3648, 3744, 5323, 5842), CalDAV /
# CardDAV (RFC 4791, 6352), PRI (RFC 9113), and the cache/proxy methods servers log (PURGE, BAN).
HTTP_METHODS: frozenset[str] = frozenset(
    """
    GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PRI
    PROPFIND PROPPATCH MKCOL COPY MOVE LOCK UNLOCK SEARCH ORDERPATCH ACL BIND UNBIND REBIND
    VERSION-CONTROL REPORT CHECKOUT CHECKIN UNCHECKOUT MKWORKSPACE UPDATE LABEL MERGE
    BASELINE-CONTROL MKACTIVITY MKCALENDAR MKREDIRECTREF UPDATEREDIRECTREF
    PURGE BAN
    """.split()
)
DEVICE_TYPES: frozenset[str] = frozenset({"desktop", "mobile", "tablet", "bot", "other"})

RULES: dict[str, str] = {
    "method": "closed",
    "browser": "closed",
    "os": "closed",
    "device_type": "closed",
    "country": "closed",
    "asn": "closed",
    "network": "masked",
    "isp": "registry",
    "source": "operator",
    "path_template": "k",
}


def method_value(method: str | None) -> str | None:
    """A request method as kept: a known method (upper case as sent), else ``"other"``."""
    if method is None or method == "":
        return method
    return method if method in HTTP_METHODS else OTHER


def _network(value: str) -> bool:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return net.prefixlen < net.max_prefixlen or net.network_address.is_unspecified


@lru_cache(maxsize=65536)
def aggregate_value(dim: str, value: str) -> str:
    """The value stored for ``dim``, or :data:`NEEDS_K`. ``""`` (unknown) stays ``""``."""
    if value == "" or value == OTHER:
        return value
    rule = RULES.get(dim, "k")
    if rule == "closed":
        if dim == "method":
            return value if value in HTTP_METHODS else OTHER
        if dim == "browser":
            return value if value in BROWSERS else OTHER
        if dim == "os":
            return value if value in OSES else OTHER
        if dim == "device_type":
            return value if value in DEVICE_TYPES else OTHER
        if dim == "country":
            return value if len(value) == 2 and value.isascii() and value.isupper() else OTHER
        if dim == "asn":
            return value if value.isdigit() and len(value) <= 10 else OTHER
        return OTHER
    if rule == "masked":
        return value if _network(value) else OTHER
    if rule in ("operator", "registry"):
        return OTHER if holds_address(value) else value
    return NEEDS_K
