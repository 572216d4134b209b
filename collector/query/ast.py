"""The syntax tree of a query. Every node keeps the position of its text for error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Regex:
    pattern: str


@dataclass(frozen=True, slots=True)
class Cmp:
    """``field op value``; ``op`` is one of = != < <= > >= ~ ^= in."""

    field: str
    op: str
    value: Any  # str | int | float | bool | None | Regex | tuple (for ``in``)
    pos: int


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node = Cmp | And | Or | Not


@dataclass(frozen=True, slots=True)
class Name:
    """A column named in a stage, where it was written."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Count:
    by: tuple[Name, ...] = ()


@dataclass(frozen=True, slots=True)
class Distinct:
    fields: tuple[Name, ...]


@dataclass(frozen=True, slots=True)
class Percentile:
    p: int  # 50, 95 or 99
    field: Name
    by: tuple[Name, ...] = ()


@dataclass(frozen=True, slots=True)
class SortKey:
    column: str
    descending: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Sort:
    keys: tuple[SortKey, ...]


@dataclass(frozen=True, slots=True)
class Limit:
    n: int


Stage = Count | Distinct | Percentile | Sort | Limit


@dataclass(frozen=True, slots=True)
class StageAt:
    stage: Stage
    pos: int


@dataclass(frozen=True)
class Query:
    text: str
    filter: Node | None = None
    since: float | None = None  # inclusive, epoch seconds
    until: float | None = None  # exclusive
    last: float | None = None  # seconds before "now"
    stages: tuple[StageAt, ...] = field(default_factory=tuple)

    def bounds(self, now: float) -> tuple[float | None, float | None]:
        """The time range ``[start, end)`` the query covers (``None``: open)."""
        start = self.since
        if self.last is not None:
            start = now - self.last if start is None else max(start, now - self.last)
        return start, self.until
