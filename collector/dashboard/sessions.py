"""Dashboard logins: the token typed into the login form is kept in server memory only, behind a
random id in an ``HttpOnly; SameSite=Strict`` cookie scoped to ``/dashboard``.

The browser never holds the token (no script can read the cookie, and it is not in any URL);
each dashboard request is checked exactly as a ``Bearer`` request would be, so a token that is
removed from the configuration stops working at once. Sessions end after ``IDLE`` without use
or at logout, and all of them at restart.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

COOKIE = "lethelog_dashboard"
IDLE = 8 * 3600.0
MAX_SESSIONS = 1000


@dataclass(slots=True)
class Login:
    token: str
    name: str
    last_used: float


class DashboardLogins:
    def __init__(self, idle: float = IDLE) -> None:
        self.idle = idle
        self._by_id: dict[str, Login] = {}

    def create(self, token: str, name: str) -> str:
        now = time.monotonic()
        self._expire(now)
        if len(self._by_id) >= MAX_SESSIONS:  # drop the stalest login
            oldest = min(self._by_id, key=lambda k: self._by_id[k].last_used)
            del self._by_id[oldest]
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = Login(token, name, now)
        return sid

    def token(self, sid: str | None) -> str | None:
        if not sid:
            return None
        login = self._by_id.get(sid)
        now = time.monotonic()
        if login is None or now - login.last_used > self.idle:
            self._by_id.pop(sid or "", None)
            return None
        login.last_used = now
        return login.token

    def end(self, sid: str | None) -> None:
        self._by_id.pop(sid or "", None)

    def _expire(self, now: float) -> None:
        for sid in [s for s, v in self._by_id.items() if now - v.last_used > self.idle]:
            del self._by_id[sid]
