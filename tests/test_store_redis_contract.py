"""The ``Store`` contract, the same scenarios on both backends: SQLite and a real Redis Cluster.

Each scenario runs once per backend (``store`` is parametrized); the Redis runs share one
three-node cluster started for this module, each test under its own key prefix.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.metrics import Metrics
from collector.record import Record
from collector.store import Store, StoreBusy, open_store
from collector.timefmt import rfc3339
from tests.redis_cluster import RedisClusterProcs
from tests.service import make_settings

IDLE = 1800.0
T0 = 1_700_000_000.0
_prefix = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcs]:
    c = RedisClusterProcs.start(tmp_path_factory.mktemp("redis-contract"))
    try:
        yield c
    finally:
        c.stop()


def settings_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                 **values: Any) -> Any:
    if backend == "redis":
        c: RedisClusterProcs = request.getfixturevalue("cluster")
        values = {"store.backend": "redis", "store.redis_nodes": ",".join(c.nodes),
                  "store.redis_prefix": f"t{next(_prefix)}", "store.redis_buckets": "16",
                  **values}
    return make_settings(tmp_path / "data", **values)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def opened(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                 **values: Any) -> Store:
    store = open_store(settings_for(backend, tmp_path, request, **values), Metrics())
    await store.start()
    return store


@pytest.fixture
async def store(backend: str, tmp_path: Path, request: pytest.FixtureRequest
                ) -> AsyncIterator[Store]:
    s = await opened(backend, tmp_path, request)
    yield s
    await s.close()


def rec(key: str, t: float, source: str = "edge-1", site: str = "default", **more: Any
        ) -> Record:
    return {"time": t, "ip": "198.51.100.0", "method": "GET", "host": "example.org",
            "path": more.pop("path", "/"), "status": 200, "bytes": 512, "is_bot": False,
            "languages": ["en", "de"], "request_time": 0.25, "source": source, "site": site,
            "session_key": key, **more}


async def live(store: Store, **kw: Any) -> list[Record]:
    return await store.records(1_000_000, **kw)


def sessions_of(rows: list[Record]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["path"], set()).add(r["session"])
    return out


async def test_records_round_trip_in_the_documented_shape(store: Store) -> None:
    await store.write([rec("k1", T0, path="/a", browser="Firefox", country=None, asn=64500)])
    [r] = await live(store)
    assert r["time"] == rfc3339(T0) and r["time"].endswith("Z")
    assert r["ip"] == "198.51.100.0" and r["browser"] == "Firefox" and r["country"] is None
    assert r["languages"] == ["en", "de"] and r["is_bot"] is False and r["asn"] == 64500
    assert r["request_time"] == 0.25 and r["source"] == "edge-1" and r["site"] == "default"
    assert isinstance(r["session"], str) and len(r["session"]) == 20
    assert "session_key" not in r
    stats = await store.stats()
    assert (stats.records, stats.sessions) == (1, 1)


async def test_same_key_joins_until_a_gap_longer_than_the_idle_timeout(store: Store) -> None:
    await store.write([rec("k1", T0, path="/a"), rec("k2", T0, "edge-2", path="/other")])
    await store.write([rec("k1", T0 + 60, path="/a")])
    rows = await live(store)
    assert len(rows) == 3
    first = sessions_of(rows)["/a"]
    assert len(first) == 1, "two records 60 s apart are one session"
    assert sessions_of(rows)["/other"] != first
    # A gap longer than the idle timeout ends the session (its records go) and opens a new one.
    res = await store.write([rec("k1", T0 + 60 + IDLE + 1, path="/b")])
    assert res.stored == 1
    rows = await live(store)
    assert sorted(r["path"] for r in rows) == ["/b", "/other"]
    assert sessions_of(rows)["/b"].isdisjoint(first)


async def test_a_split_inside_one_batch_keeps_only_the_new_session(store: Store) -> None:
    await store.write([rec("k1", T0, path="/a"), rec("k1", T0 + 10, path="/a"),
                       rec("k1", T0 + 10 + IDLE + 5, path="/b"),
                       rec("k1", T0 + 20 + IDLE, path="/b")])
    rows = await live(store)
    assert [r["path"] for r in rows] == ["/b", "/b"]
    assert len({r["session"] for r in rows}) == 1
    assert (await store.stats()).sessions == 1


async def test_log_clock_ends_idle_sessions_per_source(store: Store) -> None:
    await store.write([rec("old", T0, "edge-1", path="/old"),
                       rec("other-source", T0, "edge-2", path="/edge2")])
    # edge-1's log clock moves past old's deadline; edge-2's clock stays where it was.
    await store.write([rec("new", T0 + IDLE + 1, "edge-1", path="/new")])
    await store.sweep(time.time())  # the wall clock has not passed anything's deadline
    assert sorted(r["path"] for r in await live(store)) == ["/edge2", "/new"]
    # A late record of an ended session starts a new one rather than reviving the old.
    await store.write([rec("old", T0 + 5, "edge-1", path="/late")])
    rows = await live(store)
    assert sorted(r["path"] for r in rows) == ["/edge2", "/late", "/new"]


async def test_wall_clock_ends_sessions_when_traffic_stops(store: Store) -> None:
    now = time.time()
    await store.write([rec("k1", now, path="/a"), rec("k2", now, path="/b")])
    assert (await store.sweep(now + IDLE - 5)).sessions_ended == 0
    assert len(await live(store)) == 2
    result = await store.sweep(now + IDLE + 5)
    assert (result.sessions_ended, result.records_deleted) == (2, 2)
    assert await live(store) == []
    stats = await store.stats()
    assert (stats.records, stats.sessions) == (0, 0)


async def test_erase_by_session_id_and_by_key(store: Store) -> None:
    await store.write([rec("k1", T0, path="/a"), rec("k1", T0 + 1, path="/a"),
                       rec("k2", T0, path="/b"), rec("k3", T0, path="/c")])
    sid = next(iter(sessions_of(await live(store))["/a"]))
    result = await store.erase(session_ids=[sid])
    assert (result.sessions_ended, result.records_deleted) == (1, 2)
    assert sorted(r["path"] for r in await live(store)) == ["/b", "/c"]
    result = await store.erase(keys=["k2"])
    assert (result.sessions_ended, result.records_deleted) == (1, 1)
    assert [r["path"] for r in await live(store)] == ["/c"]
    nothing = await store.erase(session_ids=[sid, "0" * 20], keys=["nobody"])
    assert (nothing.sessions_ended, nothing.records_deleted) == (0, 0)
    # The key's next record opens a fresh session.
    await store.write([rec("k1", T0 + 2, path="/again")])
    again = sessions_of(await live(store))["/again"]
    assert sid not in again


async def test_records_newest_first_limited_and_scoped_to_sites(store: Store) -> None:
    site = ["b", "a", "a"]  # a key belongs to one site (the site is part of its HMAC)
    batch = [rec(f"{site[i % 3]}{i % 7}", T0 + i, site=site[i % 3], path=f"/{i}")
             for i in range(60)]
    await store.write(batch[:30])
    await store.write(batch[30:])
    rows = await live(store)
    assert [r["path"] for r in rows] == [f"/{i}" for i in reversed(range(60))]
    top = await store.records(5)
    assert [r["path"] for r in top] == ["/59", "/58", "/57", "/56", "/55"]
    only_b = await live(store, sites=frozenset({"b"}))
    assert [r["path"] for r in only_b] == [f"/{i}" for i in reversed(range(60)) if i % 3 == 0]
    assert await live(store, sites=frozenset()) == []
    assert len(await live(store, sites=frozenset({"a", "b"}))) == 60
    sid = rows[0]["session"]
    mine = await live(store, session=sid)
    assert mine and all(r["session"] == sid for r in mine)
    assert [r["path"] for r in mine] == [r["path"] for r in rows if r["session"] == sid]
    assert await live(store, session=sid, sites=frozenset({"nowhere"})) == []


async def test_consent_records_are_never_kept(store: Store) -> None:
    res = await store.write([rec("k1", T0, aggregate_only=True), rec("k2", T0, path="/kept")])
    assert res.stored == 1
    assert [r["path"] for r in await live(store)] == ["/kept"]


async def test_full_queue_answers_busy_and_stores_nothing(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store = await opened(backend, tmp_path, request, **{"ingest.queue_size": "1"})
    try:
        big = [rec(f"k{i}", T0 + i / 100, path=f"/{i}") for i in range(5000)]
        first = asyncio.ensure_future(store.write(big))
        await asyncio.sleep(0)  # the first batch now waits for the writer
        with pytest.raises(StoreBusy) as err:
            await store.write([rec("refused", T0, path="/refused")])
        assert err.value.retry_after >= 1
        assert (await first).stored == 5000
        rows = await live(store)
        assert len(rows) == 5000 and all(r["path"] != "/refused" for r in rows)
        assert (await store.write([rec("later", T0, path="/later")])).stored == 1
    finally:
        await store.close()


async def test_close_commits_what_was_accepted_and_reopen_sees_it(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    settings = settings_for(backend, tmp_path, request)
    store = open_store(settings, Metrics())
    await store.start()
    pending = asyncio.ensure_future(store.write([rec("k1", T0, path="/a")]))
    await asyncio.sleep(0)
    await store.close()
    assert (await pending).stored == 1
    again = open_store(settings, Metrics())
    await again.start()
    try:
        assert [r["path"] for r in await live(again)] == ["/a"]
        await again.write([rec("k1", T0 + 1, path="/a")])
        assert len({r["session"] for r in await live(again)}) == 1, "session survives restart"
    finally:
        await again.close()
