"""One contract, two backends: the store backend the API-level tests of a module run against.

A module that says ``pytestmark = pytest.mark.usefixtures("backend")`` runs every test twice:
on the embedded SQLite store and on a real Redis Cluster (three primaries, three replicas, from
Debian's ``redis-server``, started once per test session: ``tests/conftest.py``). The tests do
not change: while a module runs on redis, :func:`values_for` adds ``store.backend = "redis"``, the
cluster's nodes and a store prefix of its own for each data directory to the settings that
``tests.service.make_settings`` and ``tests.querytools.settings_with_tokens`` build, and
:func:`copy_store` copies a filled store (the data directory, and on redis every key of its
prefix, with ``COPY`` inside each slot) so each test starts from the same data.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.redis_cluster import RedisClusterProcs

_numbers = itertools.count()


@dataclass
class Backend:
    name: str  # "sqlite" or "redis"
    cluster: RedisClusterProcs | None = None
    prefixes: dict[Path, str] = field(default_factory=dict)

    def values(self, data_dir: Path) -> dict[str, Any]:
        """Settings overrides that put ``data_dir``'s store on this backend."""
        if self.cluster is None:
            return {}
        key = Path(data_dir).resolve()
        prefix = self.prefixes.get(key)
        if prefix is None:
            prefix = self.prefixes[key] = f"t{next(_numbers)}"
        return {"store.backend": "redis", "store.redis_nodes": ",".join(self.cluster.nodes),
                "store.redis_prefix": prefix}

    def copy(self, src: Path, dst: Path) -> None:
        """Copy the store of ``src`` to ``dst`` (the caller copies the directory itself)."""
        if self.cluster is None:
            return
        from redis.cluster import ClusterNode, RedisCluster

        old = self.prefixes[Path(src).resolve()]
        new = self.values(dst)["store.redis_prefix"]
        host, port = self.cluster.nodes[0].split(":")
        rc = RedisCluster(startup_nodes=[ClusterNode(host, int(port))])
        try:
            for key in rc.scan_iter(match=f"{old}:*", count=1000,
                                    target_nodes=RedisCluster.PRIMARIES):
                name = key.decode()
                rc.copy(name, new + name[len(old):])
        finally:
            rc.close()

    def files(self) -> list[Path]:
        """Every file the store's servers keep (the nodes' AOF/RDB files), for byte searches."""
        return self.cluster.files() if self.cluster is not None else []

    def rewrite(self) -> None:
        """Rewrite every node's append-only file now and wait until it is done."""
        if self.cluster is None:
            return
        import time

        for port in self.cluster.ports:
            self.cluster.cli(port, "bgrewriteaof")
        deadline = time.time() + 30
        for port in self.cluster.ports:
            while time.time() < deadline:
                info = self.cluster.cli(port, "info", "persistence")
                if ("aof_rewrite_in_progress:0" in info
                        and "aof_rewrite_scheduled:0" in info):
                    break
                time.sleep(0.05)


CURRENT: Backend | None = None


def values_for(data_dir: Path) -> dict[str, Any]:
    return CURRENT.values(data_dir) if CURRENT is not None else {}


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    if CURRENT is not None:
        CURRENT.copy(src, dst)
    return dst
