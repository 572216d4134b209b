"""``GET /v1/records``: live (masked, enriched) records as NDJSON, newest first."""

from __future__ import annotations

import orjson
from aiohttp import web

from collector.appkeys import STORE
from collector.auth import PRINCIPAL, requires

MAX_LIMIT = 10_000_000


@requires("sre")
async def get_records(request: web.Request) -> web.StreamResponse:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"limit: expected an integer 1..{MAX_LIMIT}, got {raw!r}")
    session = request.query.get("session") or None
    rows = await request.app[STORE].records(int(raw), session=session,
                                            sites=request[PRINCIPAL].sites)
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
