"""The pseudonymisation keys: one random secret per rotation period, deleted after retention.

Session keys are ``HMAC(secret, site + client + agent)``; once a secret is deleted, nobody —
including us — can recompute which visitor a stored key belonged to. Secrets live in
``<data_dir>/session-keys.json`` (mode 0600), rewritten atomically on rotation; an expired secret
is removed from the file and the file is rewritten, so it is gone, not just unused.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True, slots=True)
class Key:
    period: int  # floor(created / rotation)
    secret: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"Key(period={self.period}, secret=<{len(self.secret)} bytes>)"


class KeyRing:
    """Current and recent secrets. ``current()`` rotates when the period changes."""

    def __init__(self, path: Path, rotation: float, retention: float) -> None:
        self.path = path
        self.rotation = rotation
        self.retention = retention
        self._keys: dict[int, Key] = {}
        self._load()

    def _load(self) -> None:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        for item in raw.get("keys", []):
            k = Key(int(item["period"]), bytes.fromhex(item["secret"]))
            self._keys[k.period] = k

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        keys = [{"period": k.period, "secret": k.secret.hex()} for k in self._keys.values()]
        data = {"keys": keys}
        try:  # all or nothing: a full disk leaves the previous file as it was
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(data))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def current(self, now: float | None = None) -> Key:
        now = time.time() if now is None else now
        period = int(now // self.rotation)
        key = self._keys.get(period)
        if key is None:
            key = Key(period, secrets.token_bytes(32))
            self._keys[period] = key
            self.prune(now, save=False)
            try:
                self._save()
            except OSError:  # not kept unless saved: the next record tries again
                del self._keys[period]
                raise
        return key

    def recent(self, now: float | None = None) -> list[Key]:
        """Every key still kept, newest first (erasure by hint tries each)."""
        self.prune(now)
        return sorted(self._keys.values(), key=lambda k: -k.period)

    def prune(self, now: float | None = None, save: bool = True) -> int:
        now = time.time() if now is None else now
        oldest = now - self.retention
        dead = [p for p in self._keys if (p + 1) * self.rotation < oldest]
        for p in dead:
            del self._keys[p]
        if dead and save:
            self._save()
        return len(dead)
