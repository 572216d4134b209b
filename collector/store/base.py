"""The store backend contract. SQLite (embedded) implements it today; a shared backend (Redis
Cluster) implements the same methods so that many stateless collectors can share one state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector.record import Record
from collector.store.frame import Batch


class StoreBusy(Exception):
    """The store's bounded write queue is full: the caller should answer 503 + Retry-After."""

    def __init__(self, retry_after: float = 1.0) -> None:
        super().__init__("store write queue is full")
        self.retry_after = retry_after


@dataclass(slots=True)
class WriteResult:
    stored: int = 0
    sessions_ended: int = 0
    records_deleted: int = 0


@dataclass(slots=True)
class SweepResult:
    sessions_ended: int = 0
    records_deleted: int = 0
    checkpointed: bool = False


@dataclass(frozen=True, slots=True)
class ReadScope:
    """What a ``read(fn, scope)`` needs, so a shared backend fetches only that: records of log
    time ``[start, end)`` (None: open) of ``sites`` (None: all), whether ``fn`` reads the records
    (and ``sessions``) and/or the aggregates, and ``timeout`` (seconds) for fetching them. A
    backend may hand ``fn`` more than the scope (the embedded store hands it everything); ``fn``
    still filters in its own SQL."""

    start: float | None = None
    end: float | None = None
    sites: frozenset[str] | None = None
    records: bool = True
    aggregates: bool = True
    timeout: float | None = None


@dataclass(slots=True)
class StoreStats:
    records: int = 0
    sessions: int = 0
    queue_depth: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Store(ABC):
    """Where live records and their sessions live, and where they are forgotten.

    Contract, for every backend:

    * ``write(records)`` returns only after every record is durable (committed); it raises
      :class:`StoreBusy` at once, storing nothing, when the bounded write queue is full.
      Each record is a stored record (``collector.record.STORED_FIELDS``, ``time`` as epoch
      seconds) plus ``session_key`` (the pseudonymous key, never output) and ``source``.
      ``records`` is a ``list[Record]`` or a polars DataFrame with those columns (plus
      ``aggregate_only``; ``collector.store.frame``); a backend that works record by record
      converts the DataFrame with ``collector.store.frame.to_records``.
    * The store assigns sessions: a record joins the open session of its ``session_key`` unless
      its time is more than the idle timeout past that session's last record, which ends the
      old session and opens a new one.
    * ``sweep(now)`` ends every session idle on its source's log clock or on the wall clock and
      deletes its records for good (the bytes are overwritten, not just unlinked).
    * ``records(limit, sites=...)`` returns live records newest first, each with its public
      ``session`` id and never its ``session_key``, only of the given sites (tenant scope).
    * ``erase(session_ids=..., keys=...)`` ends the named sessions now and deletes their records.
    * ``read(fn, scope)`` runs ``fn(conn)`` on a read-only SQLite connection holding the tables
      ``records``, ``sessions`` and ``agg`` (at least what ``scope`` names) and returns its
      result: every SQL feature (query language, aggregates, detectors, admin) is the same code
      on every backend.
    * Nothing raw reaches the store: callers pass masked, scrubbed records only.
    """

    #: Whether SQL features (query language, aggregates, detectors, admin) can run on this
    #: backend via ``read(fn)`` (both backends can; a backend that can't says so, and those
    #: features check it instead of failing on every request).
    supports_sql: bool = True
    #: Whether many collectors share this store (then one of them runs the detectors, under a
    #: lease: ``collector.detect.lease``).
    shared: bool = False

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None:
        """Commit everything already accepted, then release resources."""

    @abstractmethod
    async def write(self, records: Batch) -> WriteResult: ...

    @abstractmethod
    async def sweep(self, now: float) -> SweepResult: ...

    @abstractmethod
    async def records(self, limit: int, session: str | None = None,
                      sites: frozenset[str] | None = None) -> list[Record]:
        """Live records newest first; ``sites`` (None: all) limits them in the query itself."""

    @abstractmethod
    async def erase(
        self, session_ids: list[str] | None = None, keys: list[str] | None = None
    ) -> SweepResult: ...

    @abstractmethod
    async def read(self, fn: Callable[[Any], Any], scope: ReadScope | None = None) -> Any:
        """``fn(conn)`` on a read-only connection (see the class docstring)."""

    @abstractmethod
    async def stats(self) -> StoreStats: ...
