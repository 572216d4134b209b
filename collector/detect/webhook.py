"""Optional webhook: each anomaly opened or closed is POSTed as JSON, retried with backoff."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

log = structlog.get_logger("lethelog.detect.webhook")


class Webhook:
    """A queue and one sender task. ``send`` never blocks the detector (full queue: dropped)."""

    def __init__(self, url: str, retries: int, timeout: float, backoff: float = 0.5) -> None:
        self.url = url
        self.host = urlsplit(url).hostname or "?"  # logged instead of the URL (may hold a key)
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self, drain: float = 2.0) -> None:
        if self._task is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.queue.join(), drain)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def send(self, payload: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.failed += 1
            log.warning("webhook_dropped", host=self.host, reason="queue full")

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                payload = await self.queue.get()
                try:
                    await self._deliver(http, payload)
                except Exception as exc:  # never let one payload stop the sender
                    self.failed += 1
                    log.error("webhook_failed", host=self.host, error=type(exc).__name__)
                finally:
                    self.queue.task_done()

    async def _deliver(self, http: aiohttp.ClientSession, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)
        for attempt in range(1, self.retries + 1):
            reason = ""
            try:
                async with http.post(self.url, data=body,
                                     headers={"Content-Type": "application/json"}) as resp:
                    if 200 <= resp.status < 300:
                        self.delivered += 1
                        return
                    reason = f"HTTP {resp.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                reason = type(exc).__name__
            log.warning("webhook_attempt_failed", host=self.host, attempt=attempt,
                        reason=reason, anomaly=payload.get("anomaly", {}).get("id"))
            if attempt < self.retries:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        self.failed += 1
        log.error("webhook_failed", host=self.host, attempts=self.retries,
                  anomaly=payload.get("anomaly", {}).get("id"))
