"""The SQLite store's write path as it was before batches became DataFrames: every record
touches the session table on its own (``SessionTable.touch``) and is turned into its INSERT row
one at a time. :class:`OracleStore` is the store with that path, for the differential test
(``tests/test_store_differential.py``); everything else (schema, forgetting, sweep, aggregates'
storage) is the production store's.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from collector.aggregates.counter import Aggregator, Partial
from collector.metrics import Metrics
from collector.record import Record
from collector.sessions import Session
from collector.settings import Settings
from collector.store.base import WriteResult
from collector.store.frame import to_records
from collector.store.sqlite import _INSERT, _UPSERT_SESSION, COLUMNS, SQLiteStore

_BOOL = {"is_bot", "dnt", "is_anonymous_proxy", "is_vpn", "is_tor", "is_hosting"}
_LANGUAGES = COLUMNS.index("languages") + 1  # positions in a row, after sid
_BOOL_AT = tuple(COLUMNS.index(b) + 1 for b in sorted(_BOOL))


def row(sid: int, rec: Record) -> tuple[Any, ...]:
    """The INSERT parameters of one record."""
    out = [sid, *map(rec.get, COLUMNS)]
    langs = out[_LANGUAGES]
    if langs is not None:
        out[_LANGUAGES] = orjson.dumps(langs).decode()
    for i in _BOOL_AT:
        v = out[i]
        if v is not None and v.__class__ is not bool:
            out[i] = 1 if v else 0
    return tuple(out)


class OracleStore(SQLiteStore):
    """``SQLiteStore`` writing one record at a time, as before the columnar write, with the
    record-at-a-time aggregates counter (``collector.aggregates.counter.Aggregator``)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        super().__init__(settings, metrics)
        old = self.aggregates.counter
        self.aggregates.counter = Aggregator(old.v4, old.v6, old.k, old.site_k)

    def _write_batches(self, conn: sqlite3.Connection, batches: list[Any], wall: float
                       ) -> list[WriteResult]:
        return [self._write_batch(conn, b, wall) for b in batches]  # one after the other

    def _write_batch(self, conn: sqlite3.Connection, records: Any, wall: float,
                     partial: Partial | None = None) -> WriteResult:
        records = to_records(records)
        touched: dict[int, Session] = {}
        ended: list[Session] = []
        rows = []
        started = 0
        sids: list[int | None] = []
        held = self._held if self._hold is not None else None
        for rec in records:
            if rec.get("aggregate_only"):
                sids.append(None)
                continue
            touch = self.table.touch(rec["session_key"], rec["time"], wall,
                                     rec.get("source") or "local", rec.get("site") or "default")
            s = touch.session
            if s.records == 1:
                started += 1
            if touch.ended is not None:
                ended.append(touch.ended)
                touched.pop(touch.ended.sid, None)
            sids.append(s.sid)
            if held is not None:
                mine = held.get(s.sid)
                if mine is None and s.records == 1:
                    mine = held[s.sid] = []
                if mine is not None:
                    self._seq += 1
                    mine.append((self._seq, row(s.sid, rec)))
                    self._held_count += 1
                    self._records += 1
                    continue
            touched[s.sid] = s
            rows.append(row(s.sid, rec))
        self.aggregates.add(records, sids, partial)
        if rows:
            conn.executemany(_INSERT, rows)
            self.inserted += len(rows)
        self._records += len(rows)
        deleted = self._delete_sessions(conn, ended)
        conn.executemany(_UPSERT_SESSION, [
            (s.sid, s.id, s.key, s.source, s.site, s.first_log, s.last_log, s.last_wall, s.records)
            for s in touched.values() if s.sid in self.table.by_sid
        ])
        self.metrics.inc("lethelog_sessions_started_total", started)
        self._count_ended(len(ended), deleted)
        return WriteResult(stored=len(rows), sessions_ended=len(ended), records_deleted=deleted)
