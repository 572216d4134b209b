"""Admin endpoints (role ``admin``): sessions, data-subject export and erasure, the audit log.

* ``GET /v1/admin/sessions?limit=N`` — live sessions (id, site, source, first/last record time,
  record count), most recent first. Never the pseudonymous key.
* ``POST /v1/admin/export`` with ``{"session": "<id>"}`` or ``{"hint": "<value>"[, "site": S]}``
  — every live record of that session (access and portability), as one JSON document.
* ``POST /v1/admin/erase`` with the same body — ends those sessions now and deletes their
  records (overwritten, WAL truncated); answers what was erased.
* ``GET /v1/admin/audit?limit=N`` — the newest audit entries and whether the chain verifies.

A *hint* is the value that identified the session at ingest (e.g. a session cookie, see
``sessions.hint_fields``); it is turned into the session's key with every pseudonymisation key
still kept (``collector.keys.KeyRing.recent``) and never stored or logged: the audit log notes
"by hint" and the session ids found. All four are audited; all are scoped to the token's sites.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import orjson
from aiohttp import web

from collector.appkeys import KEYRING, STORE
from collector.audit import AUDIT, audit, verify
from collector.auth import PRINCIPAL, requires
from collector.store.sqlite import COLUMNS, row_to_record
from collector.timefmt import rfc3339
from masking.session import session_key

MAX_SESSIONS = 100_000
MAX_AUDIT = 10_000


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)


def _limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit", str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise web.HTTPBadRequest(text=f"limit: expected an integer 1..{most}, got {raw[:20]!r}")
    return int(raw)


def _scope(sites: frozenset[str] | None, column: str) -> tuple[str, list[Any]]:
    if sites is None:
        return "1", []
    if not sites:
        return "0", []
    return f"{column} IN ({', '.join('?' * len(sites))})", sorted(sites)


def _session_row(row: tuple[Any, ...]) -> dict[str, Any]:
    _sid, sid_public, site, source, first, last, count = row
    return {"id": sid_public, "site": site, "source": source, "first": rfc3339(first),
            "last": rfc3339(last), "records": count}


@requires("admin")
async def list_sessions(request: web.Request) -> web.Response:
    limit = _limit(request, 100, MAX_SESSIONS)
    where, args = _scope(request[PRINCIPAL].sites, "site")

    def fetch(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        sql = ("SELECT sid, id, site, source, first_log, last_log, records FROM sessions "
               f"WHERE {where} ORDER BY last_log DESC, sid DESC LIMIT ?")
        return [_session_row(r) for r in conn.execute(sql, [*args, limit])]

    rows = await request.app[STORE].read(fetch)
    audit(request, endpoint="/v1/admin/sessions", query=f"limit={limit}", rows=len(rows))
    return _json({"sessions": rows})


class _Subject:
    """Who a data-subject request is about: a session id, or a hint turned into keys."""

    def __init__(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text='body: expected a JSON object {"session": ID} or '
                                          '{"hint": VALUE}')
        session, hint, site = body.get("session"), body.get("hint"), body.get("site")
        if (session is None) == (hint is None):
            raise web.HTTPBadRequest(text='body: give exactly one of "session" or "hint"')
        for name, value in (("session", session), ("hint", hint), ("site", site)):
            if value is not None and (not isinstance(value, str) or not value or
                                      len(value) > 4096):
                raise web.HTTPBadRequest(text=f"{name}: expected a non-empty string")
        self.session: str | None = session
        self.hint: str | None = hint
        self.site: str | None = site

    def described(self, found: list[str]) -> str:
        """For the audit log: the session id, or "hint" (never its value) and what it found."""
        if self.session is not None:
            return f"session={self.session}"
        where = f" site={self.site}" if self.site is not None else ""
        return f"hint=[not recorded]{where} -> sessions={','.join(found) or 'none'}"


async def _resolve(request: web.Request, subject: _Subject) -> list[tuple[Any, ...]]:
    """The live sessions (rows of ``sessions``) the request is about, within the caller's sites."""
    sites = request[PRINCIPAL].sites
    if subject.site is not None and sites is not None and subject.site not in sites:
        raise web.HTTPForbidden(text=f"site: token {request[PRINCIPAL].name} may not see "
                                     f"site {subject.site!r}")
    where, args = _scope(sites, "site")
    cols = "sid, id, site, source, first_log, last_log, records"
    secrets = [k.secret for k in request.app[KEYRING].recent()] if subject.hint else []

    def fetch(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        if subject.session is not None:
            sql = f"SELECT {cols} FROM sessions WHERE id = ? AND {where}"
            return list(conn.execute(sql, [subject.session, *args]))
        if subject.site is not None:
            candidates = [subject.site]
        else:
            candidates = [r[0] for r in conn.execute(
                f"SELECT DISTINCT site FROM sessions WHERE {where}", args)]
        assert subject.hint is not None
        keys = sorted({session_key(secret, site, None, None, subject.hint)
                       for secret in secrets for site in candidates})
        if not keys:
            return []
        marks = ", ".join("?" * len(keys))
        sql = f"SELECT {cols} FROM sessions WHERE key IN ({marks}) AND {where} ORDER BY sid"
        return list(conn.execute(sql, [*keys, *args]))

    rows: list[tuple[Any, ...]] = await request.app[STORE].read(fetch)
    return rows


async def _body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"body: not valid JSON ({exc})") from None


@requires("admin")
async def export_session(request: web.Request) -> web.Response:
    subject = _Subject(await _body(request))
    sessions = await _resolve(request, subject)
    sids = [r[0] for r in sessions]
    cols = ", ".join(f"r.{c}" for c in COLUMNS)

    def fetch(conn: sqlite3.Connection) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {sid: [] for sid in sids}
        for i in range(0, len(sids), 500):
            chunk = sids[i:i + 500]
            sql = (f"SELECT {cols}, s.id, r.sid FROM records r JOIN sessions s ON s.sid = r.sid "
                   f"WHERE r.sid IN ({', '.join('?' * len(chunk))}) ORDER BY r.time, r.rid")
            for row in conn.execute(sql, chunk):
                out[row[-1]].append(row_to_record(row[:-1]))
        return out

    by_sid = await request.app[STORE].read(fetch) if sids else {}
    exported = [{**_session_row(r), "records": by_sid.get(r[0], [])} for r in sessions]
    total = sum(len(s["records"]) for s in exported)
    audit(request, endpoint="/v1/admin/export",
          query=subject.described([s["id"] for s in exported]), rows=total)
    body = {"exported": rfc3339(round(time.time(), 3)),
            "by": "session" if subject.session is not None else "hint",
            "sessions": exported, "records": total}
    if not exported:
        body["note"] = "no live session matches: nothing about this subject is held"
    return _json(body, headers={"Content-Disposition": 'attachment; filename="export.json"'})


@requires("admin")
async def erase_session(request: web.Request) -> web.Response:
    subject = _Subject(await _body(request))
    sessions = await _resolve(request, subject)
    ids = [r[1] for r in sessions]
    result = await request.app[STORE].erase(session_ids=ids) if ids else None
    ended = result.sessions_ended if result else 0
    deleted = result.records_deleted if result else 0
    audit(request, endpoint="/v1/admin/erase", query=subject.described(ids), rows=deleted,
          outcome="erased")
    return _json({"by": "session" if subject.session is not None else "hint",
                  "sessions": ids, "sessions_ended": ended, "records_deleted": deleted})


@requires("admin")
async def audit_log(request: web.Request) -> web.Response:
    limit = _limit(request, 100, MAX_AUDIT)
    book = request.app[AUDIT]
    loop = asyncio.get_running_loop()
    check = await loop.run_in_executor(None, verify, book.path, book.key_path)
    entries = await loop.run_in_executor(None, book.entries)
    sites = request[PRINCIPAL].sites
    if sites is not None:  # a site-scoped admin sees the reads of its own sites only
        entries = [e for e in entries
                   if e.get("sites") is not None and set(e["sites"]) <= sites]
    shown = entries[-limit:]
    audit(request, endpoint="/v1/admin/audit", query=f"limit={limit}", rows=len(shown))
    return _json({"verified": check.ok, "verification": check.message, "entries": shown})
