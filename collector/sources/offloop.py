"""Parse a shipped body off the event loop, under a deadline.

Parsing is pure CPU (JSON decoding, line patterns): done on the loop, a large body would hold up
every other request and ``/healthz`` for as long as it takes. :func:`take` runs the next chunk of
a body's item iterator in a small thread pool (the loop gets the GIL back between bytecodes, at
least every few milliseconds) and gives up once the request's parse deadline
(``ingest.parse_timeout``) has passed. Every parser is linear in its input
(``tests/test_hostile_time.py``), so one chunk's work is bounded; an abandoned chunk finishes in
its thread and is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lethelog-parse")


class ParseTimeout(Exception):
    """The body was not parsed within its deadline."""


async def take(items: Iterator[T], n: int, deadline: float) -> list[T]:
    """The next ``n`` items (fewer at the end), computed in the parse pool; ``deadline`` is on
    the loop's clock. Raises ParseTimeout when it passes first."""
    loop = asyncio.get_running_loop()
    remaining = deadline - loop.time()
    if remaining <= 0:
        raise ParseTimeout
    future = loop.run_in_executor(_POOL, lambda: list(islice(items, n)))
    try:
        return await asyncio.wait_for(future, remaining)
    except TimeoutError:
        raise ParseTimeout from None


async def run(fn: Callable[[], T], deadline: float) -> T:
    """``fn()`` in the parse pool; ``deadline`` is on the loop's clock. Raises ParseTimeout when
    it passes first (the abandoned call finishes in its thread and its result is dropped)."""
    loop = asyncio.get_running_loop()
    remaining = deadline - loop.time()
    if remaining <= 0:
        raise ParseTimeout
    try:
        return await asyncio.wait_for(loop.run_in_executor(_POOL, fn), remaining)
    except TimeoutError:
        raise ParseTimeout from None
