"""Sessionization: which records belong together, and when a session has ended.

Pure bookkeeping, no I/O: a store backend owns one :class:`SessionTable` and persists what it
decides. A session is identified by its pseudonymous *key* (``masking.session.session_key``):
records with the same key belong to the same session as long as no gap between them exceeds the
idle timeout, measured on the records' own timestamps. A session ends when

* its source's **log clock** (the newest record time that source has shipped, never beyond the
  wall clock plus the allowed skew) is more than ``idle_timeout`` past its last record, or
* the **wall clock** is more than ``idle_timeout`` past the moment its last record arrived
  (so sessions end even when traffic stops), or
* it is ended explicitly (erasure, explicit end).
"""

from __future__ import annotations

import heapq
import secrets
from dataclasses import dataclass, field


@dataclass(slots=True)
class Session:
    sid: int  # store-internal, monotonic: keeps the record index append-mostly
    id: str  # public pseudonymous id, random, unlinkable to the key
    key: str
    source: str
    site: str
    first_log: float
    last_log: float
    last_wall: float
    records: int = 0


@dataclass(slots=True)
class Touch:
    session: Session
    ended: Session | None  # a previous session of the same key that this record proved over


@dataclass
class SessionTable:
    """Open sessions by key, with deadline heaps so expiry costs O(ended · log n)."""

    idle_timeout: float
    site_timeouts: dict[str, float] = field(default_factory=dict)  # stricter per-site values
    next_sid: int = 1
    by_key: dict[str, Session] = field(default_factory=dict)
    by_sid: dict[int, Session] = field(default_factory=dict)
    clocks: dict[str, float] = field(default_factory=dict)  # source -> log clock
    # (deadline, sid): per source on log time, and one on the wall clock. Entries go stale when
    # a session moves on; a popped entry is checked against the session before it counts.
    _log_heaps: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    _wall_heap: list[tuple[float, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.by_sid)

    def timeout_for(self, session: Session) -> float:
        """Idle timeout of one session: its site's, else the global one."""
        return self.site_timeouts.get(session.site, self.idle_timeout)

    def restore(self, session: Session) -> None:
        """Re-register a session read back from durable storage at start-up."""
        self.by_key[session.key] = session
        self.by_sid[session.sid] = session
        self.next_sid = max(self.next_sid, session.sid + 1)
        clock = self.clocks.get(session.source, float("-inf"))
        self.clocks[session.source] = max(clock, session.last_log)
        self._push(session, log=True, wall=True)

    def _push(self, s: Session, log: bool, wall: bool) -> None:
        timeout = self.timeout_for(s)
        if log:
            heap = self._log_heaps.setdefault(s.source, [])
            heapq.heappush(heap, (s.last_log + timeout, s.sid))
        if wall:
            heapq.heappush(self._wall_heap, (s.last_wall + timeout, s.sid))

    def touch(self, key: str, t: float, wall: float, source: str, site: str) -> Touch:
        """Attach a record stamped ``t`` (arriving at ``wall``) to its session."""
        s = self.by_key.get(key)
        ended: Session | None = None
        if s is not None and (t - s.last_log > self.timeout_for(s) or s.site != site):
            ended = self._forget(s)
            s = None
        if s is None:
            s = Session(self.next_sid, secrets.token_hex(10), key, source, site, t, t, wall)
            self.next_sid += 1
            self.by_key[key] = s
            self.by_sid[s.sid] = s
            self._push(s, log=True, wall=True)
        else:
            moved_log = t > s.last_log
            moved_wall = wall > s.last_wall
            if moved_log:
                s.last_log = t
            if t < s.first_log:
                s.first_log = t
            if moved_wall:
                s.last_wall = wall
            if moved_log or moved_wall:
                self._push(s, log=moved_log, wall=moved_wall)
        s.records += 1
        clock = min(t, wall)  # a future-stamped record never moves the log clock past the wall
        if clock > self.clocks.get(source, float("-inf")):
            self.clocks[source] = clock
        return Touch(s, ended)

    def open(self, sid: int, key: str, source: str, site: str, first: float, last: float,
             wall: float, records: int) -> Session:
        """Open the session ``sid`` for ``key`` with ``records`` records already in it (the
        columnar write: :mod:`collector.store.sessionize`); the caller ended any previous one."""
        s = Session(sid, secrets.token_hex(10), key, source, site, first, last, wall, records)
        self.next_sid = max(self.next_sid, sid + 1)
        self.by_key[key] = s
        self.by_sid[sid] = s
        self._push(s, log=True, wall=True)
        return s

    def extend(self, s: Session, first: float, last: float, wall: float, records: int) -> None:
        """Add ``records`` records stamped ``first``..``last`` arriving at ``wall`` to ``s``."""
        moved_log = last > s.last_log
        moved_wall = wall > s.last_wall
        if moved_log:
            s.last_log = last
        if first < s.first_log:
            s.first_log = first
        if moved_wall:
            s.last_wall = wall
        if moved_log or moved_wall:
            self._push(s, log=moved_log, wall=moved_wall)
        s.records += records

    def expire(self, now_wall: float) -> list[Session]:
        """End every session idle on its source's log clock or on the wall clock."""
        out: list[Session] = []
        for source, heap in self._log_heaps.items():
            clock = self.clocks.get(source, float("-inf"))
            while heap and heap[0][0] < clock:
                _, sid = heapq.heappop(heap)
                s = self.by_sid.get(sid)
                if s is not None and clock - s.last_log > self.timeout_for(s):
                    out.append(self._forget(s))
        heap = self._wall_heap
        while heap and heap[0][0] < now_wall:
            _, sid = heapq.heappop(heap)
            s = self.by_sid.get(sid)
            if s is not None and now_wall - s.last_wall > self.timeout_for(s):
                out.append(self._forget(s))
        self._compact()
        return out

    def end(self, sid: int) -> Session | None:
        """End one session now (explicit end or erasure)."""
        s = self.by_sid.get(sid)
        return self._forget(s) if s is not None else None

    def _forget(self, s: Session) -> Session:
        self.by_sid.pop(s.sid, None)
        if self.by_key.get(s.key) is s:
            del self.by_key[s.key]
        return s

    def _compact(self) -> None:
        """Drop stale heap entries once they outnumber live sessions."""
        live = len(self.by_sid)
        if len(self._wall_heap) > 4 * live + 1024:
            self._wall_heap = []
            self._log_heaps = {}
            for s in self.by_sid.values():
                self._push(s, log=True, wall=True)
