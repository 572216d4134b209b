"""Store backends: ``open_store(settings)`` picks the one named by ``[store] backend``;
``open_keyring(settings)`` the matching home of the pseudonymisation secrets (a file next to the
SQLite database, or Redis, shared by every collector of the cluster)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from collector.keys import KeyRing
from collector.metrics import Metrics
from collector.settings import Settings
from collector.store.base import Store, StoreBusy, StoreStats, SweepResult, WriteResult

__all__ = ["Store", "StoreBusy", "StoreStats", "SweepResult", "WriteResult", "open_keyring",
           "open_store"]


def open_store(settings: Settings, metrics: Metrics) -> Store:
    if settings.store.backend == "sqlite":
        from collector.store.sqlite import SQLiteStore

        return SQLiteStore(settings, metrics)
    if settings.store.backend == "redis":
        from collector.store.redis import RedisStore

        return RedisStore(settings, metrics)
    raise ValueError(f"store.backend: unknown backend {settings.store.backend!r}")


@contextlib.asynccontextmanager
async def open_keyring(settings: Settings) -> AsyncIterator[KeyRing]:
    s = settings.sessions
    if settings.store.backend == "redis":
        from collector.store.redis import connected
        from collector.store.redis_keys import shared_keyring

        client = await connected(settings)
        try:
            async with shared_keyring(client, settings.store.redis_prefix, s.key_rotation,
                                      s.key_retention) as ring:
                yield ring
        finally:
            await client.aclose()
        return
    local = KeyRing(settings.server.data_dir / "session-keys.json", s.key_rotation,
                   s.key_retention)
    local.current()
    yield local
