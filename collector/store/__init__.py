"""Store backends: ``open_store(settings)`` picks the one named by ``[store] backend``."""

from __future__ import annotations

from collector.metrics import Metrics
from collector.settings import Settings
from collector.store.base import Store, StoreBusy, StoreStats, SweepResult, WriteResult

__all__ = ["Store", "StoreBusy", "StoreStats", "SweepResult", "WriteResult", "open_store"]


def open_store(settings: Settings, metrics: Metrics) -> Store:
    if settings.store.backend == "sqlite":
        from collector.store.sqlite import SQLiteStore

        return SQLiteStore(settings, metrics)
    raise ValueError(f"store.backend: unknown backend {settings.store.backend!r}")
