"""Secrets shipped in URLs and referrers never reach the stored record, nor any file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import orjson
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from tests.service import all_files, files_containing, make_settings
from tests.test_masking_url import NAMES, SECRETS, fragments


async def test_no_secret_survives_ingest(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", **{"masking.secret_params": "customer_ref"})
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    now = datetime.now(UTC).isoformat()
    batch = []
    for i, (kind, secret) in enumerate(sorted(SECRETS.items())):
        enc = quote(secret, safe="")
        named = "&".join(f"{n}={enc}" for n in NAMES)
        # plain words (a password, a reference) are secrets only by their parameter's name;
        # the other kinds are recognised by shape wherever they stand
        by_shape = kind not in ("password", "ref")
        target = f"/reset/{enc}?q={enc}&{named}" if by_shape else f"/login?{named}"
        where = f"/p/{enc}" if by_shape else "/p"
        batch.append({"time": now, "client": f"192.0.2.{i + 1}", "status": 200,
                      "target": target,
                      "referrer": f"https://u:pw@ref.example{where}?token={enc}#{kind}",
                      "user_agent": "Mozilla/5.0"})
    try:
        resp = await client.post("/v1/logs", data=b"\n".join(orjson.dumps(r) for r in batch),
                                 headers={"Content-Type": "application/x-ndjson"})
        assert (await resp.json())["accepted"] == len(batch)
        body = await (await client.get("/v1/records?limit=100")).read()
        assert body.count(b"\n") == len(batch)
        for secret in SECRETS.values():
            for frag in fragments(secret):
                assert frag.encode() not in body, secret
        assert b"pw@" not in body and b"u:pw" not in body
        for line in body.splitlines():
            rec = orjson.loads(line)
            assert rec["referrer"].startswith("https://ref.example/p")
            assert "?" not in rec["referrer"] and "#" not in rec["referrer"]
    finally:
        await client.close()
    needles = [f for s in SECRETS.values() for f in fragments(s) if len(f) >= 6]
    assert files_containing(all_files(tmp_path / "data"), needles) == {}
