"""``GET /v1/records``: live (masked, enriched) records as NDJSON, newest first.

Scoped to the caller's sites in the SQL itself; every listing is written to the audit log
(``limit``, ``session`` and the number of rows, never the records) before it is sent.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from collector.appkeys import STORE
from collector.audit import audit
from collector.auth import PRINCIPAL, requires

MAX_LIMIT = 10_000_000


@requires("sre")
async def get_records(request: web.Request) -> web.StreamResponse:
    raw = request.query.get("limit", "100")
    # isdecimal + isascii: "¹" is a digit to isdigit() but not to int()
    if not (raw.isascii() and raw.isdecimal()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"limit: expected an integer 1..{MAX_LIMIT}, "
                                      f"got {raw[:20]!r}")
    session = request.query.get("session") or None
    rows = await request.app[STORE].records(int(raw), session=session,
                                            sites=request[PRINCIPAL].sites)
    asked = f"limit={raw}" + (f" session={session}" if session is not None else "")
    audit(request, endpoint="/v1/records", query=asked, rows=len(rows))
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    buf: list[bytes] = []
    for rec in rows:
        buf.append(orjson.dumps(rec))
        if len(buf) >= 1000:
            await resp.write(b"\n".join(buf) + b"\n")
            buf.clear()
    if buf:
        await resp.write(b"\n".join(buf) + b"\n")
    await resp.write_eof()
    return resp
