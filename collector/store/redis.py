"""Redis Cluster store: many stateless collectors share one state (``store.backend = "redis"``).

Data model (see ``collector.store.redis_lua`` for every key): sessions are spread over
``store.redis_buckets`` buckets by ``crc32(session key)``; each bucket's keys share the hash tag
``{b<n>}``, so one bucket is one slot, and one Lua script updates a bucket's sessions, records and
deadline sorted sets atomically. Any collector can therefore accept any record and any collector's
sweeper can end any session. Per-source log clocks live in one hash (``<prefix>:{clock}``) that
only moves forward.

Writes keep the SQLite store's semantics: a bounded queue (``ingest.queue_size`` batches, else
:class:`StoreBusy` → 503), one writer task that group-commits every waiting batch as one script
call per touched bucket, sent as one pipeline per node; a caller hears back only after every node
answered. Durability is what the cluster's persistence gives (see docs/scale-out.md).

Forgetting deletes with ``UNLINK``/``ZREM``/``HDEL`` inside the same scripts. Nothing raw is
stored: records arrive masked; keys name buckets and pseudonymous session keys only.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import re
import secrets
import ssl
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import structlog
from aiohttp import web
from redis import exceptions as rexc
from redis.asyncio.cluster import ClusterNode, RedisCluster

from collector.metrics import Metrics
from collector.record import STORED_FIELDS, Record
from collector.settings import Settings, SettingsError, split_hostport
from collector.store.base import (
    ReadScope,
    Store,
    StoreBusy,
    StoreStats,
    SweepResult,
    WriteResult,
)
from collector.store.frame import Batch, to_records
from collector.store.redis_agg import RedisAggregates, sid_of
from collector.store.redis_lua import AGG_SCRIPTS, SCRIPTS
from collector.timefmt import rfc3339

log = structlog.get_logger("lethelog.store.redis")

COLUMNS: tuple[str, ...] = tuple(f for f in STORED_FIELDS if f != "session")
_REAL = ("time", "request_time")
_INT = ("status", "bytes", "asn")
_BOOL = ("is_bot", "dnt", "is_anonymous_proxy", "is_vpn", "is_tor", "is_hosting")
CHUNK = 2000  # records per script call: bounds how long one call holds a node
SWEEP_MAX = 1000  # sessions ended per bucket per script call (the sweep loops while more)
REWRITE_EVERY = 3600.0  # seconds: ended sessions' bytes leave the nodes' AOF files this often
_UNAVAILABLE = (rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError,
                rexc.TryAgainError, rexc.MasterDownError, rexc.BusyLoadingError,
                rexc.ClusterError, rexc.RedisClusterException)


class StoreUnavailable(StoreBusy):
    """The cluster did not confirm the write: nothing was acknowledged, the shipper retries."""

    def __init__(self, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(retry_after)
        self.args = (f"shared store unavailable: {reason}",)


class ClusterUnreachable(web.HTTPServiceUnavailable):
    """``/healthz`` while the cluster does not answer: 503, naming no address."""

    def __init__(self, reason: str) -> None:
        super().__init__(text=orjson.dumps({"status": "unavailable",
                                            "store": f"redis cluster unreachable ({reason})"}
                                           ).decode(), content_type="application/json")


def _tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's TLS keywords for ``store.redis_tls*`` (nothing when TLS is off)."""
    st = settings.store
    if not st.redis_tls:
        return {}
    return {"ssl": True,
            "ssl_ca_certs": str(st.redis_tls_ca) if st.redis_tls_ca else None,
            "ssl_certfile": str(st.redis_tls_cert) if st.redis_tls_cert else None,
            "ssl_keyfile": str(st.redis_tls_key) if st.redis_tls_key else None,
            "ssl_cert_reqs": "none" if st.redis_tls_verify == "none" else "required",
            "ssl_check_hostname": st.redis_tls_verify == "full",
            "ssl_min_version": ssl.TLSVersion.TLSv1_2}


def connect(settings: Settings) -> RedisCluster:
    """A cluster client for ``store.redis_nodes`` (not yet connected)."""
    st = settings.store
    nodes = [ClusterNode(*split_hostport(n)) for n in st.redis_nodes]
    password = st.redis_password.reveal() if st.redis_password else None
    return RedisCluster(startup_nodes=nodes, username=st.redis_username or None,
                        password=password, socket_timeout=st.redis_timeout,
                        socket_connect_timeout=st.redis_timeout, require_full_coverage=True,
                        **_tls_options(settings))


def _chain(exc: BaseException) -> list[BaseException]:
    out = [exc]
    while (nxt := out[-1].__cause__ or out[-1].__context__) is not None and len(out) < 8:
        out.append(nxt)
    return out


def _why(settings: Settings, exc: BaseException) -> str:
    """One line for a failed start-up: which setting to look at, and what Redis said."""
    st = settings.store
    chain = _chain(exc)
    text = f"{type(exc).__name__}: {exc}"
    every = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    where = ", ".join(st.redis_nodes)
    user = repr(st.redis_username) if st.redis_username else "the default user"
    if any(isinstance(e, rexc.AuthenticationError) for e in chain) or any(
            w in every for w in ("WRONGPASS", "NOAUTH", "invalid username-password")):
        return (f"store.redis_password: the Redis Cluster at {where} refused the credentials of "
                f"{user} (wrong user name or password, or the user is disabled)")
    if any(isinstance(e, rexc.NoPermissionError) for e in chain) or "NOPERM" in every:
        return (f"store.redis_username: {user} may not run what lethelog needs under the key "
                f"prefix {st.redis_prefix!r} (docs/scale-out.md lists the ACL): {exc}")
    verify = re.search(r"certificate verify failed: [^()\]'\"]*", every)
    if verify is not None:
        ca = str(st.redis_tls_ca) if st.redis_tls_ca else "the system CAs"
        return (f"store.redis_tls_ca: the certificate of the Redis Cluster at {where} does not "
                f"verify against {ca} (redis_tls_verify = {st.redis_tls_verify!r}): "
                f"{verify.group(0).strip()}")
    if st.redis_tls and any(w in every for w in ("SSL", "TLS", "EOF occurred", "reset by peer")):
        return (f"store.redis_tls: the TLS handshake with the Redis Cluster at {where} failed "
                f"(a client certificate needed, or the nodes do not speak TLS on these ports): "
                f"{text}")
    hint = (" (do the nodes expect TLS? store.redis_tls)"
            if not st.redis_tls and "reset by peer" in every else "")
    return f"store.redis_nodes: cannot use the Redis Cluster at {where}: {text}{hint}"


async def connected(settings: Settings) -> RedisCluster:
    """Connect, or stop start-up with one line naming the setting (never a traceback).

    Besides the slot map, one read under the key prefix proves the credentials, the certificate
    and the ACL's key pattern before anything else runs."""
    client = connect(settings)
    try:
        await client.initialize()
        await client.hget(f"{settings.store.redis_prefix}:{{meta}}", "buckets")
    except Exception as exc:
        with contextlib.suppress(Exception):
            await client.aclose()
        raise SettingsError(" ".join(_why(settings, exc).split())[:500]) from None
    return client


def encode(rec: Record) -> bytes:
    """A stored record as compact JSON: its columns, nulls left out (SQLite's column types)."""
    out = {c: v for c in COLUMNS if (v := rec.get(c)) is not None}
    for c in _REAL:
        if c in out:
            out[c] = float(out[c])
    for c in _INT:
        v = out.get(c)
        if isinstance(v, float) and v.is_integer():
            out[c] = int(v)
    for c in _BOOL:
        if c in out:
            out[c] = bool(out[c])
    return orjson.dumps(out)


def decode(raw: bytes, session: str | None) -> Record:
    d = orjson.loads(raw)
    rec: Record = {c: d.get(c) for c in COLUMNS}
    rec["session"] = session
    rec["time"] = rfc3339(rec["time"])
    return rec


class RedisStore(Store):
    shared = True  # many collectors: the detectors run under a lease (collector.detect.lease)

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        st = settings.store
        self.prefix = st.redis_prefix
        self.nbuckets = st.redis_buckets
        self.client: RedisCluster | None = None
        self._sha: dict[str, str] = {}
        self._queue: asyncio.Queue[tuple[list[Record], asyncio.Future[WriteResult]] | None] = (
            asyncio.Queue())
        self._pending = 0
        self._writer: asyncio.Task[None] | None = None
        self._live = (0, 0)  # (records, sessions) as of the last sweep
        self._site_timeouts = {s.name: float(settings.for_site(s.name, "idle_timeout"))
                               for s in settings.sites}
        self._clock_key = f"{self.prefix}:{{clock}}"
        self.agg = RedisAggregates(settings, self.prefix)
        self.loop: asyncio.AbstractEventLoop | None = None  # for callers in other threads
        self.table = _Clocks()  # the shippers' log clocks as last seen (the detectors read them)
        self._rewriting: asyncio.Task[int] | None = None
        self._rewrite_again = False
        self.last_read: tuple[int, int, float] = (0, 0, 0.0)  # records, agg rows, seconds

    # ------------------------------------------------------------------ naming

    def bucket_of(self, key: str) -> int:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % self.nbuckets

    def bucket(self, n: int) -> str:
        return f"{self.prefix}:{{b{n}}}:"

    def _timeout(self, site: str) -> float:
        return self._site_timeouts.get(site, self.settings.sessions.idle_timeout)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.client = await connected(self.settings)
        meta = f"{self.prefix}:{{meta}}"
        await self.client.hsetnx(meta, "buckets", self.nbuckets)
        have = int(await self.client.hget(meta, "buckets") or 0)
        if have != self.nbuckets:
            await self.client.aclose()
            raise SettingsError(
                f"store.redis_buckets: the data under prefix {self.prefix!r} was written with "
                f"{have} buckets, not {self.nbuckets}; keep {have} (or use another redis_prefix)")
        await self._load_scripts()
        self.loop = asyncio.get_running_loop()
        from collector.store.redis_read import snapshot

        conn = await snapshot(self, ReadScope())
        try:
            self.agg.rebuild(conn)
        finally:
            conn.close()
        self._writer = asyncio.create_task(self._run())
        await self.sweep_counts()
        self.metrics.gauge("lethelog_sessions_live", "Open sessions.", lambda: self._live[1])
        self.metrics.gauge("lethelog_records_live", "Records held.", lambda: self._live[0])
        self.metrics.gauge("lethelog_queue_depth", "Batches waiting for the writer.",
                           lambda: self._pending)
        log.info("store_opened", backend="redis", nodes=len(self.client.get_nodes()),
                 prefix=self.prefix, buckets=self.nbuckets, records=self._live[0],
                 sessions=self._live[1])

    async def _load_scripts(self) -> None:
        assert self.client is not None
        from collector.detect.shared import SCRIPTS as DETECT_SCRIPTS

        for name, src in {**SCRIPTS, **AGG_SCRIPTS, **DETECT_SCRIPTS}.items():
            sha = await self.client.script_load(src)  # loads on every primary
            self._sha[name] = sha.decode() if isinstance(sha, bytes) else str(sha)

    async def close(self) -> None:
        if self._rewriting is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._rewriting, 30)
        if self._writer is not None:
            self._queue.put_nowait(None)  # after every batch already accepted
            await self._writer
            self._writer = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        log.info("store_closed", records=self._live[0], sessions=self._live[1])

    # ------------------------------------------------------------------ script calls

    async def _calls(self, name: str, calls: Sequence[tuple[int | str, Sequence[Any]]]
                     ) -> list[Any]:
        """Run script ``name`` once per (bucket or key, args), pipelined per node; results in
        order (a bucket number names its ``ids`` key, -1 the clocks hash).

        A node that lost its script cache (restart, failover) gets the scripts again and only
        the calls it refused are repeated (a refused call changed nothing)."""
        assert self.client is not None, "store not started"
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for j in todo:
                        b, args = calls[j]
                        key = (b if isinstance(b, str) else
                               self.bucket(b) + "ids" if b >= 0 else self._clock_key)
                        pipe.execute_command("EVALSHA", self._sha[name], 1, key, *args)
                    out = await pipe.execute(raise_on_error=False)
            except _UNAVAILABLE as exc:
                raise StoreUnavailable(type(exc).__name__) from exc
            retry = []
            for j, res in zip(todo, out, strict=True):
                if isinstance(res, rexc.NoScriptError) and attempt == 0:
                    retry.append(j)
                elif isinstance(res, _UNAVAILABLE):
                    raise StoreUnavailable(type(res).__name__) from res
                elif isinstance(res, Exception):
                    raise res
                else:
                    results[j] = res
            if not retry:
                break
            await self._load_scripts()
            todo = retry
        return results

    # ------------------------------------------------------------------ writes

    async def write(self, records: Batch) -> WriteResult:
        records = to_records(records)
        if not records:
            return WriteResult()
        if self._writer is None:
            raise RuntimeError("store not started")
        if self._pending >= self.settings.ingest.queue_size:
            raise StoreBusy(retry_after=1.0)
        self._pending += 1
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((records, fut))
        return await asyncio.shield(fut)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            jobs = [item]
            stop = False
            while len(jobs) < 256 and not self._queue.empty():  # group commit
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            try:
                results = await self._write_jobs([batch for batch, _ in jobs])
            except BaseException as exc:
                log.error("store_write_failed", error=type(exc).__name__)
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                for (_, fut), res in zip(jobs, results, strict=True):
                    if not fut.done():
                        fut.set_result(res)
            finally:
                self._pending -= len(jobs)
            if stop:
                return

    async def _write_jobs(self, batches: list[list[Record]]) -> list[WriteResult]:
        wall = time.time()
        results = [WriteResult() for _ in batches]
        groups: dict[int, list[Record]] = defaultdict(list)
        newest: dict[str, float] = {}
        for res, batch in zip(results, batches, strict=True):
            for rec in batch:
                if rec.get("aggregate_only"):
                    continue  # DNT/GPC: counted in the aggregates, never kept
                src = rec.get("source") or "local"
                log_t = min(float(rec["time"]), wall)  # never past the wall clock
                if log_t > newest.get(src, float("-inf")):
                    newest[src] = log_t
                groups[self.bucket_of(rec["session_key"])].append(rec)
                res.stored += 1
        if not groups:
            await self._count(batches, {}, wall)
            return results
        old, new = await self._advance_clocks(newest)
        clock_args: list[Any] = [len(new)]
        for src, clock in new.items():
            clock_args += [src, old.get(src, ""), clock]
        calls: list[tuple[int | str, list[Any]]] = []
        sent: list[list[Record]] = []
        timeouts: dict[str, str] = defaultdict(lambda: "")
        for site in {r.get("site") or "default" for recs in groups.values() for r in recs}:
            timeouts[site] = repr(float(self._timeout(site)))
        for b, recs in groups.items():
            for start in range(0, len(recs), CHUNK):
                part = recs[start:start + CHUNK]
                rows = []
                for rec in part:
                    site = rec.get("site") or "default"
                    rows.append((rec["session_key"], repr(float(rec["time"])),
                                 rec.get("source") or "local", site, timeouts[site],
                                 encode(rec).decode()))
                calls.append((b, [self.bucket(b), repr(wall), secrets.token_hex(16), SWEEP_MAX,
                                  *clock_args, orjson.dumps(rows)]))
                sent.append(part)
        started = ended = deleted = 0
        sids: dict[int, int] = {}  # id(record) -> its session, for the aggregates
        for part, out in zip(sent, await self._calls("write", calls), strict=True):
            started, ended, deleted = started + out[1], ended + out[2], deleted + out[3]
            for rec, sid in zip(part, out[5], strict=True):
                sids[id(rec)] = sid_of(_str(sid))
        await self._count(batches, sids, wall)
        results[-1].sessions_ended += ended
        results[-1].records_deleted += deleted
        self.metrics.inc("lethelog_sessions_started_total", started)
        self._count_ended(ended, deleted)
        return results

    async def _count(self, batches: list[list[Record]], sids: dict[int, int],
                     wall: float) -> None:
        """Count the written records (and DNT/GPC ones, without a session) into the cluster's
        aggregates: one ``agg_add`` call per site and hour touched, pipelined per node."""
        for batch in batches:
            self.agg.add(batch, [sids.get(id(r)) for r in batch], wall)
        calls = self.agg.take(wall)
        if not calls:
            return
        await self._calls("agg_add", [(key, args) for key, args, _, _, _ in calls])
        assert self.client is not None
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for _, _, site, hour, minute in calls:
                    pipe.zadd(self.agg.index_key(site), {hour: minute}, gt=True)
                for site in {c[2] for c in calls}:
                    pipe.sadd(self.agg.sites_key, site)
                await pipe.execute()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def maintain_aggregates(self, wall: float, force: bool = False) -> tuple[int, int]:
        """Roll minutes up into hours and delete past the retention (any collector may run it:
        each hour's hash is changed by one atomic script). Returns (rolled up, deleted)."""
        self.agg.forget_idle(wall)
        if not self.agg.due(wall, force):
            return 0, 0
        assert self.client is not None
        sites = [_str(s) for s in await self.client.smembers(self.agg.sites_key)]
        async with self.client.pipeline(transaction=False) as pipe:
            for site in sites:
                pipe.zrange(self.agg.index_key(site), 0, -1, withscores=True)
            indexes = await pipe.execute()
        hours = [(site, int(_str(h)), float(score))
                 for site, idx in zip(sites, indexes, strict=True) for h, score in idx]
        if not hours:
            return 0, 0
        newest = max(score for _, _, score in hours)
        calls: list[tuple[int | str, list[Any]]] = [
            (self.agg.data_key(site, h), self.agg.maintain_args(h, newest, wall, site))
            for site, h, _ in hours]
        rolled = deleted = 0
        gone: list[tuple[str, int]] = []
        for (site, h, _), (r, d, left) in zip(hours, await self._calls("agg_maintain", calls),
                                               strict=True):
            rolled, deleted = rolled + r, deleted + d
            if not left:
                gone.append((site, h))
        if gone:
            async with self.client.pipeline(transaction=False) as pipe:
                for site, h in gone:
                    pipe.zrem(self.agg.index_key(site), str(h))
                await pipe.execute()
        if rolled or deleted:
            log.info("aggregates_maintained", rolled_up=rolled, deleted=deleted)
        return rolled, deleted

    async def _advance_clocks(self, newest: dict[str, float]
                              ) -> tuple[dict[str, str], dict[str, str]]:
        args: list[Any] = []
        for src, t in newest.items():
            args += [src, repr(t)]
        old, new = (await self._calls("clocks", [(-1, args)]))[0]
        new_clocks = _pairs(new)
        self.table.clocks = {src: float(c) for src, c in new_clocks.items()}
        return _pairs(old), new_clocks

    def _count_ended(self, sessions: int, records: int) -> None:
        if sessions:
            self.metrics.inc("lethelog_sessions_ended_total", sessions)
        if records:
            self.metrics.inc("lethelog_records_deleted_total", records)

    # ------------------------------------------------------------------ forgetting

    async def sweep(self, now: float) -> SweepResult:
        assert self.client is not None, "store not started"
        try:
            clocks = _pairs(await self.client.hgetall(self._clock_key))
            self.table.clocks = {src: float(c) for src, c in clocks.items()}
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        clock_args: list[Any] = [len(clocks)]
        for src, c in clocks.items():
            clock_args += [src, c]
        result = SweepResult()
        todo = list(range(self.nbuckets))
        live: dict[int, tuple[int, int]] = {}
        while todo:
            calls = [(b, [self.bucket(b), repr(now), SWEEP_MAX, *clock_args]) for b in todo]
            outs = await self._calls("sweep", calls)
            again = []
            for b, (ended, deleted, more, recs, sess) in zip(todo, outs, strict=True):
                result.sessions_ended += ended
                result.records_deleted += deleted
                live[b] = (recs, sess)
                if more:
                    again.append(b)
            todo = again
        self._live = (sum(r for r, _ in live.values()), sum(s for _, s in live.values()))
        self._count_ended(result.sessions_ended, result.records_deleted)
        try:
            if result.sessions_ended:
                await self._rewrite_due()
            await self.maintain_aggregates(now)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return result

    async def sweep_counts(self) -> None:
        """Refresh the live record and session counts (also done by every sweep)."""
        assert self.client is not None
        async with self.client.pipeline(transaction=False) as pipe:
            for b in range(self.nbuckets):
                pipe.hmget(self.bucket(b) + "stat", ["records", "sessions"])
            out = await pipe.execute()
        self._live = (sum(int(r or 0) for r, _ in out), sum(int(s or 0) for _, s in out))

    async def erase(self, session_ids: list[str] | None = None, keys: list[str] | None = None
                    ) -> SweepResult:
        ids, by_bucket = list(session_ids or []), defaultdict(list)
        for k in keys or []:
            by_bucket[self.bucket_of(k)].append(k)
        buckets = range(self.nbuckets) if ids else sorted(by_bucket)
        calls = [(b, [self.bucket(b), len(ids), *ids, len(by_bucket[b]), *by_bucket[b]])
                 for b in buckets]
        result = SweepResult()
        for ended, deleted in await self._calls("erase", calls) if calls else []:
            result.sessions_ended += ended
            result.records_deleted += deleted
        self._count_ended(result.sessions_ended, result.records_deleted)
        if result.sessions_ended:  # the erased bytes leave the AOF files now, not in an hour
            self._spawn_rewrite()
        return result

    # ------------------------------------------------------------------ the nodes' files

    def _spawn_rewrite(self) -> None:
        if self._rewriting is None or self._rewriting.done():
            self._rewriting = asyncio.create_task(self.rewrite_files())
        else:
            self._rewrite_again = True

    async def rewrite_files(self) -> int:
        """``BGREWRITEAOF`` on every node (primaries and replicas): the append-only files are
        rewritten from memory, so the bytes of deleted sessions leave them. A node already
        rewriting (from a fork taken before the deletion, perhaps) is asked again until it
        accepts. Returns how many nodes started a rewrite."""
        assert self.client is not None
        started = 0
        nodes, extra = await self._every_node()
        try:
            while True:
                self._rewrite_again = False
                started += await self._rewrite(nodes)
                if not self._rewrite_again:
                    break
        finally:
            for node in extra:
                with contextlib.suppress(Exception):
                    await node.disconnect()
        log.info("aof_rewrite_requested", nodes=started)
        return started

    async def _every_node(self) -> tuple[list[ClusterNode], list[ClusterNode]]:
        """Every node of the cluster, replicas included (the client may not have met them):
        (all, those made here and to be disconnected after)."""
        assert self.client is not None
        known = {n.name: n for n in self.client.get_nodes()}
        extra: list[ClusterNode] = []
        with contextlib.suppress(Exception):
            raw = await self.client.execute_command("CLUSTER NODES",
                                                    target_nodes=self.client.get_random_node())
            if isinstance(raw, bytes | str):
                addrs = [_str(line).split()[1].split("@")[0]
                         for line in _str(raw).splitlines() if line.strip()]
            else:
                addrs = [_str(a) for a in raw]
            kwargs = self.client.nodes_manager.connection_kwargs
            for addr in addrs:
                host, _, port = addr.rpartition(":")
                if addr not in known and port.isdigit() and int(port) > 0:
                    node = ClusterNode(host, int(port), "replica", **kwargs)
                    known[addr] = node
                    extra.append(node)
        return list(known.values()), extra

    async def _rewrite(self, nodes: list[ClusterNode]) -> int:
        """Ask each node to rewrite, again every 0.5 s (at most a minute) while it is busy. A
        replica first catches up with its primary (replication is asynchronous: a rewrite forked
        before the deletion reached it would keep the deleted bytes)."""
        started = 0
        offsets: dict[str, int] = {}
        for node in nodes:
            with contextlib.suppress(Exception):
                info = _info(await node.execute_command("INFO", "replication"))
                if info.get("role") == "master":
                    offsets[node.name] = int(info.get("master_repl_offset", 0))
        for node in nodes:
            for _ in range(100):
                try:
                    info = _info(await node.execute_command("INFO", "replication"))
                except Exception:
                    break
                if info.get("role") != "slave":
                    break
                primary = f"{info.get('master_host')}:{info.get('master_port')}"
                if int(info.get("slave_repl_offset", 0)) >= offsets.get(primary, 0):
                    break
                await asyncio.sleep(0.1)
        pending = list(nodes)
        for _ in range(120):
            again = []
            for node in pending:
                try:
                    await node.execute_command("BGREWRITEAOF")
                    started += 1
                except rexc.ResponseError as exc:
                    if "progress" in str(exc):
                        again.append(node)
                except _UNAVAILABLE:
                    again.append(node)
            if not again:
                break
            pending = again
            await asyncio.sleep(0.5)
        return started

    async def _rewrite_due(self) -> None:
        """Sessions ended by the sweeps: one collector of the cluster (whoever sets the marker
        first) has the files rewritten every ``REWRITE_EVERY`` seconds."""
        assert self.client is not None
        marker = f"{self.prefix}:{{meta}}:aof-rewrite"
        if await self.client.set(marker, "1", nx=True, ex=int(REWRITE_EVERY)):
            self._spawn_rewrite()

    # ------------------------------------------------------------------ reads

    async def records(self, limit: int, session: str | None = None,
                      sites: frozenset[str] | None = None) -> list[Record]:
        if sites is not None and not sites:
            return []
        if session is not None:
            return await self._session_records(limit, session, sites)
        wanted = sorted(sites) if sites is not None else []
        calls = [(b, [self.bucket(b), limit, len(wanted), *wanted])
                 for b in range(self.nbuckets)]
        cands: list[tuple[float, int, bytes]] = []
        for b, flat in enumerate(await self._calls("top", calls)):
            cands.extend((float(flat[j + 1]), b, flat[j]) for j in range(0, len(flat), 2))
        top = heapq.nlargest(limit, cands, key=lambda c: c[0])
        by_bucket: dict[int, list[int]] = defaultdict(list)
        for pos, (_, b, _) in enumerate(top):
            by_bucket[b].append(pos)
        fetch = [(b, [self.bucket(b), *(top[p][2] for p in ps)]) for b, ps in by_bucket.items()]
        found: dict[int, Record] = {}
        for (b, _), flat in zip(fetch, await self._calls("fetch", fetch), strict=True):
            for j, pos in enumerate(by_bucket[b]):
                raw, sid = flat[2 * j], flat[2 * j + 1]
                if raw:  # gone since the first round trip: skipped
                    found[pos] = decode(raw, sid.decode() if sid else None)
        return [found[p] for p in range(len(top)) if p in found]

    async def _session_records(self, limit: int, session: str, sites: frozenset[str] | None
                               ) -> list[Record]:
        calls = [(b, [self.bucket(b), session]) for b in range(self.nbuckets)]
        rows = [r for out in await self._calls("session", calls) for r in out]
        times = [orjson.loads(raw) for raw in rows]
        order = sorted(range(len(rows)), key=lambda j: -times[j]["time"])
        recs = [decode(rows[j], session) for j in order]
        if sites is not None:
            recs = [r for r in recs if r.get("site") in sites]
        return recs[:limit]

    async def read(self, fn: Callable[[Any], Any], scope: ReadScope | None = None) -> Any:
        """``fn(conn)`` on an in-memory SQLite snapshot of what ``scope`` needs
        (:mod:`collector.store.redis_read`): the same SQL as on the embedded store."""
        from collector.store.redis_read import snapshot

        try:
            conn = await snapshot(self, scope or ReadScope())
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        try:
            return await asyncio.to_thread(fn, conn)
        finally:
            conn.close()

    async def stats(self) -> StoreStats:
        try:
            await self.sweep_counts()
        except _UNAVAILABLE as exc:
            raise ClusterUnreachable(type(exc).__name__) from None
        return StoreStats(records=self._live[0], sessions=self._live[1],
                          queue_depth=self._pending,
                          extra={"prefix": self.prefix, "buckets": self.nbuckets})


def _info(raw: Any) -> dict[str, Any]:
    """``INFO`` as a dict (parsed by the client, or its text)."""
    if isinstance(raw, dict):
        return {_str(k): v if isinstance(v, int | float) else _str(v) for k, v in raw.items()}
    out: dict[str, Any] = {}
    for line in _str(raw).splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


class _Clocks:
    """The newest record time of each source, as this collector last saw the cluster's."""

    def __init__(self) -> None:
        self.clocks: dict[str, float] = {}


def _str(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _pairs(flat: Iterable[Any] | dict[Any, Any]) -> dict[str, str]:
    if isinstance(flat, dict):
        return {_str(k): _str(v) for k, v in flat.items()}
    items = [_str(x) for x in flat]
    return dict(zip(items[::2], items[1::2], strict=True))
