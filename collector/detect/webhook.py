"""Optional webhook: each anomaly opened or closed is POSTed as JSON, retried with backoff.

With ``detect.webhook_secret`` every attempt is signed (a fresh timestamp per attempt):

* ``X-Lethelog-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` —
  Stripe's scheme: the receiver recomputes the HMAC over the timestamp and the raw body, compares
  in constant time and refuses a timestamp older than its tolerance (a replay);
* ``X-Lethelog-Timestamp: <t>`` (the same ``t``, for receivers that read it separately);
* ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`` — GitHub's scheme, for
  receivers that already verify it; it covers the body only, so it does not stop a replay.

:func:`verify` is the receiver's side (docs/detection.md prints a stdlib-only copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

log = structlog.get_logger("lethelog.detect.webhook")

SIGNATURE_HEADER = "X-Lethelog-Signature"
TIMESTAMP_HEADER = "X-Lethelog-Timestamp"
GITHUB_HEADER = "X-Hub-Signature-256"
TOLERANCE = 300.0  # seconds a receiver accepts a signed timestamp for (Stripe's default)


def sign(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The signature headers of one POST of ``body`` at ``timestamp`` (unix seconds)."""
    key = secret.encode()
    v1 = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    hub = hmac.new(key, body, hashlib.sha256).hexdigest()
    return {SIGNATURE_HEADER: f"t={timestamp},v1={v1}", TIMESTAMP_HEADER: str(timestamp),
            GITHUB_HEADER: f"sha256={hub}"}


def verify(secret: str, header: str, body: bytes, tolerance: float = TOLERANCE,
           now: float | None = None) -> bool:
    """True if ``header`` (X-Lethelog-Signature) signs ``body`` with ``secret`` and its
    timestamp is within ``tolerance`` seconds of ``now``. Any malformed header is False."""
    try:
        parts = dict(p.strip().split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


class Webhook:
    """A queue and one sender task. ``send`` never blocks the detector (full queue: dropped)."""

    def __init__(self, url: str, retries: int, timeout: float, backoff: float = 0.5,
                 secret: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._secret = secret or None  # never logged
        self._clock = clock
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
                headers = {"Content-Type": "application/json"}
                if self._secret is not None:
                    headers.update(sign(self._secret, body, int(self._clock())))
                async with http.post(self.url, data=body, headers=headers) as resp:
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
