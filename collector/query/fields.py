"""The fields a query may name: the stored record columns plus the public ``session`` id.

This is the allowlist: a name that is not here never reaches SQL, and every SQL expression
below is a fixed string, never built from query text.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.store.sqlite import COLUMNS

# Kinds decide which operands a field accepts and how values are shown.
TEXT, INT, REAL, BOOL, TIME, JSON = "text", "int", "real", "bool", "time", "json"
NUMERIC = frozenset({INT, REAL})

_KINDS = {
    "time": TIME, "status": INT, "bytes": INT, "asn": INT, "request_time": REAL,
    "is_bot": BOOL, "dnt": BOOL, "is_anonymous_proxy": BOOL, "is_vpn": BOOL, "is_tor": BOOL,
    "is_hosting": BOOL, "languages": JSON,
}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    sql: str  # expression over ``records r`` (and ``sessions s`` when ``joins``)
    kind: str
    joins: bool = False  # needs the sessions table


FIELDS: dict[str, Field] = {c: Field(c, f"r.{c}", _KINDS.get(c, TEXT)) for c in COLUMNS}
FIELDS["session"] = Field("session", "s.id", TEXT, joins=True)

# Output order of a whole record: the stored columns, then the session id.
RECORD_FIELDS: tuple[str, ...] = (*COLUMNS, "session")
