"""A global memory budget for ingest: bytes of bodies in flight and of their records being
prepared and queued for the store, across every request (``ingest.memory_budget``).

A request reserves its ``Content-Length`` (or ``ingest.max_body_size`` when the length is not
known: chunked or compressed) before its body is read, then, once read, its estimated cost: the
body plus ``RECORD_COST`` bytes per record it may hold (lines, or JSON objects). It keeps the
reservation until the store has committed (or refused) its records. A request that does not fit
next to the others gets ``503`` + ``Retry-After``; one whose estimate alone exceeds the budget
gets ``413`` (send smaller batches). So the memory the service holds for ingest stays under the
budget, whatever the concurrency: ``bench/memory_ceiling.py`` measures the resulting peak RSS.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

from aiohttp import web

# Bytes of memory one record costs from parsing to commit (Python dicts of the parsed and the
# prepared record, the store's frame, sessionization and aggregate counting), measured with
# bench/memory_ceiling.py on 99,000 short records (~6.5 KiB each) and rounded up.
RECORD_COST = 8 * 1024


def estimate(body: bytes, max_records: int) -> int:
    """Upper estimate of the memory ``body``'s records cost (newlines or JSON objects)."""
    records = min(max(body.count(b"\n") + 1, body.count(b"{")), max_records + 1)
    return len(body) + records * RECORD_COST


class MemoryBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def fits(self, n: int) -> bool:
        return self.used + n <= self.limit

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes if they fit; False (nothing reserved) if not."""
        if not self.fits(n):
            return False
        self.used += n
        self.peak = max(self.peak, self.used)
        return True

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)
        if self.used == 0 and n > 1 << 20:
            _trim()


def _trim() -> None:
    """Hand freed heap back to the system after a large request (glibc keeps it otherwise)."""
    if _LIBC is not None:
        with contextlib.suppress(Exception):
            _LIBC.malloc_trim(0)


_name = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_name) if _name else None

BUDGET: web.AppKey[MemoryBudget] = web.AppKey("memory_budget", MemoryBudget)
