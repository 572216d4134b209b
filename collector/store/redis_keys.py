"""The pseudonymisation secrets shared by every collector of one Redis Cluster.

Collectors must agree on the secret of each period, or one visitor shipped through two collectors
would get two session keys. Each period's secret is one Redis string ``<prefix>:{keys}:<period>``,
created by whichever collector asks first (``SET NX``) and read by all; it carries an absolute
expiry at the end of its retention (``PXAT``), so Redis deletes it on time even if no collector
runs. A refresher task fetches the current and the next period's secret ahead of need, so
``current()`` (called on the hot path) never waits for the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

import structlog
from redis.asyncio.cluster import RedisCluster

from collector.keys import Key, KeyRing

log = structlog.get_logger("lethelog.store.redis")


class SharedKeyUnavailable(RuntimeError):
    """The current period's secret could not be fetched from Redis (yet)."""


class RedisKeyRing(KeyRing):
    """A :class:`KeyRing` whose secrets live in Redis instead of ``session-keys.json``."""

    def __init__(self, client: RedisCluster, prefix: str, rotation: float,
                 retention: float) -> None:
        # Not KeyRing.__init__: there is no file.
        self.client = client
        self.prefix = prefix
        self.rotation = rotation
        self.retention = retention
        self._keys: dict[int, Key] = {}

    def _load(self) -> None:  # pragma: no cover - nothing on disk
        return

    def _save(self) -> None:
        return  # Redis holds the secrets; expiry there deletes them

    def redis_key(self, period: int) -> str:
        return f"{self.prefix}:{{keys}}:{period}"

    def current(self, now: float | None = None) -> Key:
        now = time.time() if now is None else now
        key = self._keys.get(int(now // self.rotation))
        if key is None:
            raise SharedKeyUnavailable(
                "the current session-key secret has not been fetched from Redis yet")
        return key

    async def refresh(self, now: float | None = None) -> None:
        """Create (if nobody has) and fetch the current and next period's secrets; read every
        older secret still retained; forget in memory what Redis has expired."""
        now = time.time() if now is None else now
        period = int(now // self.rotation)
        oldest = int((now - self.retention) // self.rotation) - 1
        for p in (period, period + 1):
            expire_ms = int(((p + 1) * self.rotation + self.retention) * 1000)
            await self.client.set(self.redis_key(p), secrets.token_bytes(32).hex(), nx=True,
                                  pxat=expire_ms)
        periods = list(range(max(oldest, 0), period + 2))
        values = await self.client.mget([self.redis_key(p) for p in periods])
        fresh: dict[int, Key] = {}
        for p, v in zip(periods, values, strict=True):
            if v is not None:
                fresh[p] = Key(p, bytes.fromhex(v.decode() if isinstance(v, bytes) else v))
        self._keys = fresh
        self.prune(now)


@contextlib.asynccontextmanager
async def shared_keyring(client: RedisCluster, prefix: str, rotation: float, retention: float
                         ) -> AsyncIterator[RedisKeyRing]:
    """A :class:`RedisKeyRing`, refreshed in the background while the context is open."""
    ring = RedisKeyRing(client, prefix, rotation, retention)
    await ring.refresh()
    interval = max(0.05, min(30.0, rotation / 8))

    async def refresh_forever() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await ring.refresh()
            except Exception as exc:  # keep trying; the next period was fetched ahead
                log.warning("session_keys_refresh_failed", error=type(exc).__name__)

    task = asyncio.create_task(refresh_forever())
    try:
        yield ring
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
