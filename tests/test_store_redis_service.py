"""Scale-out end to end: collectors (``create_app``) sharing one real three-node Redis Cluster.

* Records of one visitor posted alternately to two collectors form ONE session; a session ended
  by either collector's sweeper is gone for both.
* The elastic sample log leaves exactly the same live records on Redis as on SQLite.
* No raw client address in any Redis key or value, nor in the nodes' files (AOF on).
* Every read route answers on the redis backend (none 501); /healthz and /metrics work.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from collector.app import create_app
from collector.appkeys import STORE
from tests.conftest import log_fixture
from tests.redis_cluster import RedisClusterProcs
from tests.service import (
    ROOT,
    ServiceProcess,
    all_files,
    files_containing,
    free_port,
    make_settings,
)
from tests.test_service_ingest import expected_live, parse_elastic

_prefix = itertools.count()
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcs]:
    c = RedisClusterProcs.start(tmp_path_factory.mktemp("redis-service"))
    try:
        yield c
    finally:
        c.stop()


def redis_values(cluster: RedisClusterProcs, prefix: str | None = None,
                 **more: Any) -> dict[str, Any]:
    return {"store.backend": "redis", "store.redis_nodes": ",".join(cluster.nodes),
            "store.redis_prefix": prefix or f"svc{next(_prefix)}", **more}


class Collectors:
    def __init__(self) -> None:
        self.clients: list[TestClient[Any, Any]] = []

    async def start(self, data_dir: Path, **values: Any) -> TestClient[Any, Any]:
        app: web.Application = create_app(make_settings(data_dir, **values))
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        self.clients.append(client)
        return client


@pytest.fixture
async def collectors() -> AsyncIterator[Collectors]:
    c = Collectors()
    yield c
    for client in c.clients:
        await client.close()


def clf(ip: str, t: float, path: str, agent: str = AGENT) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))
    return f'{ip} - - [{stamp}] "GET {path} HTTP/1.1" 200 512 "-" "{agent}"'


async def post(client: TestClient[Any, Any], lines: list[str]) -> dict[str, Any]:
    resp = await client.post("/v1/logs?format=combined", data="\n".join(lines).encode(),
                             headers={"Content-Type": "text/plain"})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def records(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    resp = await client.get("/v1/records?limit=1000000")
    assert resp.status == 200
    return [orjson.loads(line) for line in (await resp.read()).splitlines() if line]


async def metric(client: TestClient[Any, Any], name: str) -> float:
    text = await (await client.get("/metrics")).text()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"metric {name} missing from /metrics"
    return float(m.group(1))


async def test_two_collectors_share_sessions_and_forgetting(
        tmp_path: Path, cluster: RedisClusterProcs, collectors: Collectors) -> None:
    shared = redis_values(cluster, **{"sessions.idle_timeout": "3s"})
    a = await collectors.start(tmp_path / "a", **shared, **{"sessions.sweep_interval": "1h"})
    b = await collectors.start(tmp_path / "b", **shared, **{"sessions.sweep_interval": "0.1s"})
    now = time.time()
    for i in range(6):  # one visitor, shipped alternately through both collectors
        body = await post((a, b)[i % 2], [clf("203.0.113.77", now, f"/step{i}")])
        assert body["accepted"] == 1
    await post(a, [clf("203.0.113.78", now, "/someone-else")])
    for client in (a, b):
        rows = await records(client)
        mine = [r for r in rows if r["path"].startswith("/step")]
        assert sorted(r["path"] for r in mine) == [f"/step{i}" for i in range(6)]
        assert len({r["session"] for r in mine}) == 1, "one visitor, one session"
        assert {r["ip"] for r in mine} == {"203.0.113.0"}
        other = [r for r in rows if r["path"] == "/someone-else"]
        assert len(other) == 1 and other[0]["session"] != mine[0]["session"]
    # b's sweeper (a never sweeps) ends both sessions on the wall clock: gone for both.
    deadline = time.time() + 10
    while await records(a) and time.time() < deadline:
        await asyncio.sleep(0.2)
    assert await records(a) == [] and await records(b) == []
    assert await metric(b, "lethelog_sessions_ended_total") == 2
    assert await metric(a, "lethelog_sessions_ended_total") == 0
    # And the other way round: a's sweep ends what b accepted.
    await post(b, [clf("198.51.100.9", time.time(), "/late")])
    assert [r["path"] for r in await records(a)] == ["/late"]
    result = await a.server.app[STORE].sweep(time.time() + 60)
    assert (result.sessions_ended, result.records_deleted) == (1, 1)
    assert await records(b) == []


async def test_elastic_log_leaves_the_same_live_records_as_sqlite(
        tmp_path: Path, cluster: RedisClusterProcs, collectors: Collectors) -> None:
    path = log_fixture("elastic-examples_apache_logs")
    lines = path.read_bytes().splitlines()
    prefix = f"elastic{next(_prefix)}"
    lite = await collectors.start(tmp_path / "sqlite")
    red = await collectors.start(tmp_path / "redis", **redis_values(cluster, prefix))
    # In chunks, so sessions cross batches: joins, splits and log-clock expiry between writes.
    for start in range(0, len(lines), 1500):
        chunk = b"\n".join(lines[start:start + 1500])
        for client in (lite, red):
            resp = await client.post("/v1/logs", data=chunk,
                                     headers={"Content-Type": "text/plain"})
            assert resp.status == 200
    for client in (lite, red):
        await client.server.app[STORE].sweep(time.time())
    got_lite, got_red = await records(lite), await records(red)
    want = expected_live(parse_elastic(path), 1800.0)
    assert 0 < len(got_red) < 1000 and len(got_red) == len(got_lite)
    assert len(got_red) == want, (len(got_red), want)

    def fingerprint(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((r["time"], r["ip"], r["path"], r["status"], r["browser"]) for r in rows)

    assert fingerprint(got_red) == fingerprint(got_lite)
    # Sessions group the same records on both backends (ids differ, the partition must not).
    def partition(rows: list[dict[str, Any]]) -> set[frozenset[tuple[Any, ...]]]:
        groups: dict[str, set[tuple[Any, ...]]] = {}
        for r in rows:
            groups.setdefault(r["session"], set()).add((r["time"], r["ip"], r["path"]))
        return {frozenset(g) for g in groups.values()}

    assert partition(got_red) == partition(got_lite)
    assert await metric(red, "lethelog_records_live") == len(got_lite)
    assert (await metric(red, "lethelog_records_deleted_total")
            == await metric(lite, "lethelog_records_deleted_total") == 9999 - len(got_lite))
    health = await (await red.get("/healthz")).json()
    assert health["store"]["backend"] == "RedisStore"
    assert health["store"]["records"] == len(got_lite)

    # No raw client address anywhere in Redis: every key of every node, every value dumped.
    ips = sorted({ip for ip, _, _ in parse_elastic(path)})
    dump = tmp_path / "redis-dump.bin"
    with open(dump, "wb") as out:
        for port in cluster.ports:
            node = Redis(host="127.0.0.1", port=port)
            try:
                async for key in node.scan_iter(match=f"{prefix}:*", count=1000):
                    kind = (await node.type(key)).decode()
                    out.write(key + b"\n" + kind.encode() + b"\n")
                    out.write((await node.dump(key)) or b"")
                    value: Any
                    if kind == "string":
                        value = await node.get(key)
                    elif kind == "hash":
                        value = await node.hgetall(key)
                    elif kind == "list":
                        value = await node.lrange(key, 0, -1)
                    elif kind == "zset":
                        value = await node.zrange(key, 0, -1, withscores=True)
                    elif kind == "stream":  # the detectors' live messages
                        value = await node.xrange(key)
                    else:
                        value = await node.smembers(key)
                    out.write(repr(value).encode() + b"\n")
            finally:
                await node.aclose()
    text = dump.read_bytes()
    assert text.count(b"\nlist\n") >= 1 and b'"ip":"' in text, "the dump holds the records"
    masked = {r["ip"] for r in got_red}
    assert any(m.encode() in text for m in masked), "masked addresses are there"
    files = [dump, *cluster.files(), *all_files(tmp_path / "redis")]
    assert any("appendonly" in str(f) for f in files), "the nodes' AOF files are searched"
    leaked = files_containing(files, ips)
    # A raw address that equals its own masked form (x.y.z.0) is not a leak.
    leaked = {ip: f for ip, f in leaked.items() if not ip.endswith(".0")}
    assert leaked == {}


async def test_every_read_route_answers_and_operations_work(
        tmp_path: Path, cluster: RedisClusterProcs, collectors: Collectors) -> None:
    red = await collectors.start(tmp_path / "r", **redis_values(cluster))
    await post(red, [clf(f"192.0.{i}.10", time.time(), "/x") for i in range(6)])  # k = 5
    for url in ("/v1/aggregates?by=country", "/v1/query?q=%7C%20count", "/v1/admin/sessions",
                "/v1/anomalies", "/dashboard/api/summary", "/v1/records"):
        resp = await red.get(url)
        assert resp.status == 200, (url, resp.status, await resp.text())
    resp = await red.get("/v1/query?q=%7C%20count&format=json")
    assert (await resp.json())["data"] == [{"count": 6}]
    resp = await red.get("/v1/aggregates")
    assert [(r["requests"], r["sessions"]) for r in (await resp.json())["rows"]] == [(6, 6)]
    health = await red.get("/healthz")
    assert health.status == 200
    assert (await health.json())["store"]["records"] == 6
    assert await metric(red, "lethelog_records_accepted_total") == 6
    assert await metric(red, "lethelog_sessions_live") == 6  # counted by /healthz just above


async def test_unreachable_cluster_stops_start_up_with_one_line(tmp_path: Path) -> None:
    from collector.settings import SettingsError

    settings = make_settings(tmp_path / "d", **{"store.backend": "redis",
                                                "store.redis_nodes": "127.0.0.1:1",
                                                "store.redis_timeout": "0.5s"})
    app = create_app(settings)
    with pytest.raises(SettingsError, match=r"^store\.redis_nodes: cannot use the Redis"):
        async with TestServer(app):
            pass


def _http(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read()


def test_two_serve_processes_share_one_cluster(tmp_path: Path,
                                               cluster: RedisClusterProcs) -> None:
    env = {"LETHELOG_STORE_BACKEND": "redis", "LETHELOG_STORE_REDIS_NODES": cluster.nodes[0],
           "LETHELOG_STORE_REDIS_PREFIX": f"proc{next(_prefix)}"}
    one = ServiceProcess(tmp_path / "one", tmp_path / "one.log", env=env)
    two = ServiceProcess(tmp_path / "two", tmp_path / "two.log", env=env)
    try:
        now = time.time()
        for i, svc in enumerate((one, two, one)):
            status, body = _http(f"{svc.url}/v1/logs?format=combined",
                                 clf("203.0.113.200", now, f"/p{i}").encode())
            assert status == 200 and orjson.loads(body)["accepted"] == 1
        status, body = _http(f"{two.url}/v1/records?limit=10")
        rows = [orjson.loads(x) for x in body.splitlines() if x]
        assert sorted(r["path"] for r in rows) == ["/p0", "/p1", "/p2"]
        assert len({r["session"] for r in rows}) == 1
        status, body = _http(f"{one.url}/healthz")
        assert orjson.loads(body)["store"]["records"] == 3
    finally:
        codes = [one.stop(), two.stop()]
    assert codes == [0, 0], "SIGTERM is a clean shutdown"
    logs = [p.read_text() for p in (tmp_path / "one.log", tmp_path / "two.log")]
    assert all('"store_closed"' in log for log in logs)
    files = all_files(tmp_path / "one", tmp_path / "two", tmp_path / "one.log",
                      tmp_path / "two.log")
    assert files_containing(files, ["203.0.113.200"]) == {}


def test_serve_with_an_unreachable_cluster_exits_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    env.update({"PYTHONPATH": str(ROOT), "LETHELOG_STORE_BACKEND": "redis",
                "LETHELOG_STORE_REDIS_NODES": "127.0.0.1:1",
                "LETHELOG_STORE_REDIS_TIMEOUT": "0.5s"})
    out = subprocess.run([sys.executable, "-m", "collector", "serve", "--listen",
                          f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d")],
                         capture_output=True, env=env, timeout=60)
    assert out.returncode == 2
    last = out.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("lethelog: bad setting: store.redis_nodes: cannot use the Redis")
    assert "Traceback" not in out.stderr.decode()


async def test_local_cli_query_reads_the_cluster(
        tmp_path: Path, cluster: RedisClusterProcs, collectors: Collectors) -> None:
    """``lethelog query --data-dir`` on a redis deployment answers from the cluster (audited in
    the local data directory), not from a SQLite file that is not there."""
    prefix = f"cli{next(_prefix)}"
    red = await collectors.start(tmp_path / "r", **redis_values(cluster, prefix))
    await post(red, [clf(f"192.0.{i}.10", time.time(), f"/p{i % 2}") for i in range(5)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    env.update({"PYTHONPATH": str(ROOT), "LETHELOG_STORE_BACKEND": "redis",
                "LETHELOG_STORE_REDIS_NODES": cluster.nodes[0],
                "LETHELOG_STORE_REDIS_PREFIX": prefix})
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "collector", "query", "--data-dir",
                         str(tmp_path / "cli"), "| count by path", "--format", "ndjson"],
        capture_output=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    rows = [orjson.loads(x) for x in out.stdout.splitlines() if x.startswith(b"{")]
    assert sorted((r["path"], r["count"]) for r in rows) == [("/p0", 3), ("/p1", 2)]
    audit = (tmp_path / "cli" / "audit.log").read_text()
    assert '"endpoint":"cli:query"' in audit and '"rows":2' in audit
