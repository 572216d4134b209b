"""The detectors on a Redis Cluster shared by two collectors: one lease, one report.

Two collectors (``create_app``) on one real cluster (three primaries, three replicas): exactly
one holds the detector lease; a scan shipped through the other is reported, and both
collectors' ``/v1/anomalies`` and live streams see it. Then the lease holder dies without
handing over (its lease is left to expire): the other takes over within the stated time
(``LEASE_TTL + RENEW``), continues from the cursors and open anomalies in the cluster, and the
ongoing scan is still ONE anomaly, opened once and closed once. A write fenced by a stale token
is refused.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from collector.appkeys import DETECTOR
from collector.detect.shared import LEASE_TTL, RENEW, LeaseLost, RedisBook
from tests.aggtools import ship, start, wait_for
from tests.backends import Backend
from tests.test_detect_service import T0, replay


@pytest.fixture(scope="module")
def redis_backend(redis_cluster: Any) -> Backend:
    return Backend("redis", redis_cluster)


async def test_one_lease_holder_takeover_and_one_report(tmp_path: Path,
                                                        redis_backend: Backend) -> None:
    values = {**redis_backend.values(tmp_path / "shared"), "detect.interval": "100ms",
              "sessions.idle_timeout": "10m"}
    a = await start(tmp_path / "a", **values)
    b = await start(tmp_path / "b", **values)
    clients = {"a": a, "b": b}
    try:
        runners = {n: c.server.app[DETECTOR] for n, c in clients.items()}

        async def one_holder() -> bool:
            return sum(r.sharing.holding for r in runners.values()) == 1
        await wait_for(one_holder, timeout=LEASE_TTL + 2 * RENEW)
        holder = next(n for n, r in runners.items() if r.sharing.holding)
        other = "b" if holder == "a" else "a"
        streams = {n: r.subscribe() for n, r in runners.items()}
        records = replay(scan_from=12, scan_minutes=6, total=26)
        first = [r for r in records if r["time"] < T0 + 14 * 60]
        await ship(clients[other], first)  # through the collector that does not detect

        async def opened() -> bool:
            body = await (await clients[other].get("/v1/anomalies?status=open")).json()
            return any(x["kind"] == "scan" for x in body["anomalies"])
        await wait_for(opened, timeout=20)
        for n in clients:  # every collector's API and live stream see it
            body = await (await clients[n].get("/v1/anomalies")).json()
            assert [x["kind"] for x in body["anomalies"]] == ["scan"]
        for q in streams.values():
            async def streamed(q: Any = q) -> bool:
                while not q.empty():
                    if q.get_nowait()["type"] == "anomaly_opened":
                        return True
                return False
            await wait_for(streamed, timeout=5)

        # the holder dies without handing over: its lease expires, the other takes it
        dead = runners[holder]
        dead.shared.release = _no_release  # type: ignore[method-assign]
        died = time.monotonic()
        await clients.pop(holder).close()
        survivor = runners[other]

        async def taken() -> bool:
            return survivor.sharing.holding
        await wait_for(taken, timeout=LEASE_TTL + 2 * RENEW + 5)
        assert time.monotonic() - died <= LEASE_TTL + RENEW + 2, "takeover within the stated time"
        assert survivor.sharing.takeovers >= 1
        rest = [r for r in records if r["time"] >= T0 + 14 * 60]
        await ship(clients[other], rest)  # the scan goes on, then stops

        async def closed() -> bool:
            body = await (await clients[other].get("/v1/anomalies?status=closed")).json()
            return any(x["kind"] == "scan" for x in body["anomalies"])
        await wait_for(closed, timeout=30)
        body = await (await clients[other].get("/v1/anomalies")).json()
        scans = [x for x in body["anomalies"] if x["kind"] == "scan"]
        assert len(scans) == 1, "the ongoing incident is one anomaly across the takeover"
        assert scans[0]["start_epoch"] == T0 + 12 * 60 and scans[0]["end_epoch"] == T0 + 18 * 60
        seen: list[str] = []
        q = streams[other]

        async def streamed_close() -> bool:
            while not q.empty():
                seen.append(q.get_nowait()["type"])
            return "anomaly_closed" in seen
        await wait_for(streamed_close, timeout=5)
        await asyncio.sleep(1.0)  # anything more would arrive within a poll or two
        await streamed_close()
        assert seen.count("anomaly_opened") == 0, "not reported again after the takeover"
        assert seen.count("anomaly_closed") == 1

        # fencing: a writer with the dead holder's token (a paused process waking up) is refused
        stale = RedisBook(survivor.store)
        stale.holder, stale.token = dead.shared.holder, dead.shared.token
        with pytest.raises(LeaseLost):
            await asyncio.to_thread(stale.flush, None, {"*": 0})
        cursors, _ = await asyncio.to_thread(stale.cursors)
        assert cursors["*"] > 0, "the refused write changed nothing"
    finally:
        for c in clients.values():
            await c.close()


async def _no_release() -> None:
    """A collector killed with -9 hands nothing over."""
