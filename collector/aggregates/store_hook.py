"""What the SQLite store's writer thread calls: set up, count, flush, recover, maintain."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Container, Sequence

import polars as pl
import structlog

from collector.aggregates.counter import Aggregator, Partial
from collector.aggregates.frame_counter import FrameAggregator
from collector.aggregates.maintain import maintain
from collector.aggregates.schema import SCHEMA, migrate
from collector.record import Record
from collector.settings import Settings

log = structlog.get_logger("lethelog.aggregates")


class StoreAggregates:
    """The aggregates' life inside one store: every call runs on the writer thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        site_k = {s.name: int(s.overrides["k_anonymity"]) for s in settings.sites
                  if "k_anonymity" in s.overrides}
        m = settings.masking
        self.counter: Aggregator = FrameAggregator(
            m.ipv4_keep_bits, m.ipv6_keep_bits, settings.aggregates.k_anonymity, site_k)
        self._next_maintain = 0.0
        self.rows_written = 0

    def setup(self, conn: sqlite3.Connection) -> None:
        for stmt in SCHEMA:
            conn.execute(stmt)
        migrate(conn)
        self.counter.rebuild(conn)

    def add(self, records: Sequence[Record], sids: Sequence[int | None],
            partial: Partial | None = None) -> None:
        self.counter.add(records, sids, partial)

    def add_frame(self, df: pl.DataFrame, sids: pl.Series) -> None:
        """Count a batch given as columns (``collector.store.frame``); ``sids``: each row's
        session (null: none)."""
        counter = self.counter
        if isinstance(counter, FrameAggregator):
            counter.add_frame(df, sids)
        else:
            from collector.store.frame import to_records

            counter.add(to_records(df), sids.to_list())

    def flush(self, conn: sqlite3.Connection, wall: float) -> None:
        self.rows_written += self.counter.flush(conn, wall)

    def rolled_back(self, conn: sqlite3.Connection) -> None:
        self.counter.rebuild(conn)

    def maintain(self, conn: sqlite3.Connection, wall: float, live: Container[int],
                 force: bool = False) -> None:
        """Forget ended sessions' bookkeeping; every ``maintain_interval``, roll up and delete."""
        self.counter.forget(live)
        if not force and wall < self._next_maintain:
            return
        a = self.settings.aggregates
        self._next_maintain = wall + a.maintain_interval
        per_site = {s.name: float(s.overrides["retention"]) for s in self.settings.sites
                    if "retention" in s.overrides}
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = maintain(conn, wall, a.minute_retention, a.retention, per_site)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if result.rolled_up or result.deleted:
            log.info("aggregates_maintained", rolled_up=result.rolled_up, deleted=result.deleted,
                     seconds=round(time.perf_counter() - started, 4))
