"""A real three-node Redis Cluster for tests: Debian's redis-server on free loopback ports.

``RedisCluster.start(dir)`` runs three ``redis-server --cluster-enabled yes`` processes (AOF on,
``appendfsync everysec``, so their files on disk can be searched too), joins them with
``redis-cli --cluster create``, waits for ``cluster_state:ok``; ``stop()`` ends exactly those
processes. ``require_redis()`` skips with the reason when redis-server is not installed.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(n: int) -> list[int]:
    """Distinct free ports P whose cluster-bus port P + 10000 is free too (and below 65536)."""
    out: list[int] = []
    while len(out) < n:
        port = random.randint(20000, 45000)
        if port not in out and _bindable(port) and _bindable(port + 10000):
            out.append(port)
    return out


def require_redis() -> None:
    if not Path(REDIS_SERVER).exists() or not Path(REDIS_CLI).exists():
        pytest.skip("redis-server/redis-cli not installed (Debian package redis-server; "
                    "tests/run.sh installs it)")


@dataclass
class RedisClusterProcs:
    root: Path
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def cli(self, port: int, *args: str) -> str:
        out = subprocess.run([REDIS_CLI, "-p", str(port), *args], capture_output=True,
                             timeout=30, check=True)
        return out.stdout.decode("utf-8", "replace")

    @classmethod
    def start(cls, root: Path, n: int = 3) -> RedisClusterProcs:
        require_redis()
        self = cls(root)
        try:
            for port in cluster_ports(n):
                d = root / f"node-{port}"
                d.mkdir(parents=True)
                log = open(d / "redis.log", "wb")
                self.procs.append(subprocess.Popen(
                    [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                     "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                     "--dir", str(d), "--save", "", "--appendonly", "yes",
                     "--appendfsync", "everysec", "--protected-mode", "yes"],
                    stdout=log, stderr=subprocess.STDOUT))
                log.close()
                self.ports.append(port)
            for port in self.ports:
                self._wait_ping(port)
            subprocess.run(
                [REDIS_CLI, "--cluster", "create", *self.nodes, "--cluster-replicas", "0",
                 "--cluster-yes"], capture_output=True, timeout=60, check=True)
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ping(self, port: int, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run([REDIS_CLI, "-p", str(port), "ping"], capture_output=True)
            if r.stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {port} did not start")

    def _wait_ok(self, timeout: float = 20.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all("cluster_state:ok" in self.cli(p, "cluster", "info") for p in self.ports):
                return
            time.sleep(0.1)
        raise RuntimeError("redis cluster did not reach cluster_state:ok")

    def flush(self) -> None:
        for port in self.ports:
            self.cli(port, "flushall")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def files(self) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.is_file()]
