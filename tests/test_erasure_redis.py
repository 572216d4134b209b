"""Erasure is complete on the Redis Cluster: gone from every node's memory and, after the
rewrite lethelog triggers, from every node's append-only files (primaries and replicas).

The subject's records (one session cookie, a marker in every URL) go through ``POST /v1/logs``
into a real three-primary, three-replica cluster with ``appendonly yes``; the marker is first
found in the nodes' files (so the search can see it), then ``POST /v1/admin/erase`` by hint ends
the session: no key or value of any node holds it, and once the ``BGREWRITEAOF`` lethelog asked
every node for has finished, no file of any node holds it either — while the other visitors'
records are still there.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from collector.appkeys import STORE
from tests.backends import Backend
from tests.querytools import client_for
from tests.service import files_containing, make_settings
from tests.test_erasure import HINT, MARKER, batch

# this test's own marker and hint: other tests on the same cluster keep test_erasure's
NONCE = secrets.token_hex(4)
MY_MARKER, MY_HINT = f"{MARKER}{NONCE}x", f"{HINT}-{NONCE}"


def my_batch(now: float) -> bytes:
    return batch(now).replace(MARKER.encode(), MY_MARKER.encode()).replace(
        HINT.encode(), MY_HINT.encode())


@pytest.fixture(scope="module")
def redis_backend(redis_cluster: Any) -> Backend:
    return Backend("redis", redis_cluster)


async def node_values(backend: Backend, prefix: str) -> bytes:
    """Every key and value under ``prefix`` on every node, as bytes."""
    assert backend.cluster is not None
    out = []
    for port in backend.cluster.ports:
        node = Redis(host="127.0.0.1", port=port)
        try:
            await node.execute_command("READONLY")  # a replica answers for its primary's slots
            async for key in node.scan_iter(match=f"{prefix}:*", count=1000):
                out.append(key + b"=" + ((await node.dump(key)) or b""))
        finally:
            await node.aclose()
    return b"\n".join(out)


def rewritten(backend: Backend) -> bool:
    assert backend.cluster is not None
    for port in backend.cluster.ports:
        info = backend.cluster.cli(port, "info", "persistence")
        if "aof_rewrite_in_progress:0" not in info or "aof_rewrite_scheduled:0" not in info:
            return False
    return True


async def test_erased_bytes_leave_memory_and_every_aof(tmp_path: Path,
                                                       redis_backend: Backend) -> None:
    assert redis_backend.cluster is not None
    for port in redis_backend.cluster.ports:  # rewritten files in plain commands (no RDB
        # preamble, whose compressed strings a byte search could not see either way)
        redis_backend.cluster.cli(port, "config", "set", "aof-use-rdb-preamble", "no")
    data = tmp_path / "data"
    values = redis_backend.values(data)
    client = await client_for(make_settings(data, **values, **{"sessions.idle_timeout": "1h"}))
    try:
        resp = await client.post("/v1/logs", data=my_batch(time.time()),
                                 headers={"Content-Type": "application/x-ndjson"})
        assert (await resp.json())["accepted"] == 42
        prefix = values["store.redis_prefix"]
        assert MY_MARKER.encode() in await node_values(redis_backend, prefix)
        deadline = time.time() + 10  # appendfsync everysec, and the replicas catch up
        while time.time() < deadline:
            found = files_containing(redis_backend.files(), [MY_MARKER + "3", "/shop/item/7"])
            if len(found) == 2:
                break
            await asyncio.sleep(0.2)
        assert set(found) == {MY_MARKER + "3", "/shop/item/7"}, "the search sees the nodes' files"

        resp = await client.post("/v1/admin/erase", data=orjson.dumps({"hint": MY_HINT}))
        body = await resp.json()
        assert resp.status == 200 and body["records_deleted"] == 12, body
        assert MY_MARKER.encode() not in await node_values(redis_backend, prefix), "memory"
        store = client.server.app[STORE]
        assert store._rewriting is not None
        assert await asyncio.wait_for(store._rewriting, 60) == len(redis_backend.cluster.ports)
        deadline = time.time() + 60
        while not rewritten(redis_backend) and time.time() < deadline:
            await asyncio.sleep(0.1)
        assert rewritten(redis_backend)
        await asyncio.sleep(1.5)  # the replicas' own rewrites of what they had replicated
        left = files_containing(redis_backend.files(), [MY_MARKER, MY_HINT, "/shop/item/7"])
        assert MY_MARKER not in left and MY_HINT not in left, left
        assert "/shop/item/7" in left, "the other visitors' records are still in the files"
    finally:
        await client.close()
