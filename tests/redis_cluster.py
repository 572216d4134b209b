"""A real three-node Redis Cluster for tests: Debian's redis-server on free loopback ports.

``RedisCluster.start(dir)`` runs three ``redis-server --cluster-enabled yes`` processes (AOF on,
``appendfsync everysec``, so their files on disk can be searched too), joins them with
``redis-cli --cluster create``, waits for ``cluster_state:ok``; ``stop()`` ends exactly those
processes. ``require_redis()`` skips with the reason when redis-server is not installed.

``start(dir, tls=make_tls(dir))`` serves TLS only (``tls-port``, ``tls-cluster yes``,
``tls-replication yes``, client certificates required); ``users=[...]`` adds ACL users (lines of
``ACL SETUSER``) and ``admin_password`` protects the default user the helper itself runs as.
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


OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, a server certificate for 127.0.0.1/localhost (server and client use, as Redis
    also uses it on the cluster bus) and a client certificate, all signed by the CA."""

    ca: Path
    ca_key: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    ca, key = d / f"{name}.crt", d / f"{name}.key"
    _openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-keyout", key, "-out", ca, "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return ca, key


def _leaf(d: Path, name: str, ca: Path, ca_key: Path, ext: str) -> tuple[Path, Path]:
    crt, key, csr, extf = (d / f"{name}.crt", d / f"{name}.key", d / f"{name}.csr",
                           d / f"{name}.ext")
    _openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    extf.write_text(ext)
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", crt, "-days", "2", "-extfile", extf)
    return crt, key


def make_tls(d: Path) -> TlsFiles:
    """Generate the CA and certificates with Debian's openssl (EC P-256: fast)."""
    if not Path(OPENSSL).exists():
        pytest.skip("openssl is not installed (Debian package openssl; tests/run.sh installs it)")
    ca, ca_key = make_ca(d, "test-ca")
    cert, key = _leaf(d, "redis-node", ca, ca_key,
                      "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                      "extendedKeyUsage=serverAuth,clientAuth\n")
    ccert, ckey = _leaf(d, "lethelog-client", ca, ca_key, "extendedKeyUsage=clientAuth\n")
    return TlsFiles(ca, ca_key, cert, key, ccert, ckey)


def require_redis() -> None:
    if not Path(REDIS_SERVER).exists() or not Path(REDIS_CLI).exists():
        pytest.skip("redis-server/redis-cli not installed (Debian package redis-server; "
                    "tests/run.sh installs it)")


@dataclass
class RedisClusterProcs:
    root: Path
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    tls: TlsFiles | None = None
    admin_password: str | None = None

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def _cli_args(self) -> list[str]:
        args: list[str] = []
        if self.tls is not None:
            args += ["--tls", "--cacert", str(self.tls.ca), "--cert", str(self.tls.cert),
                     "--key", str(self.tls.key)]
        if self.admin_password is not None:
            args += ["--user", "default", "--pass", self.admin_password, "--no-auth-warning"]
        return args

    def cli(self, port: int, *args: str) -> str:
        out = subprocess.run([REDIS_CLI, *self._cli_args(), "-p", str(port), *args],
                             capture_output=True, timeout=30, check=True)
        return out.stdout.decode("utf-8", "replace")

    @classmethod
    def start(cls, root: Path, n: int = 3, tls: TlsFiles | None = None,
              users: list[str] | tuple[str, ...] = (),
              admin_password: str | None = None, replicas: int = 0) -> RedisClusterProcs:
        """``n`` primaries, each with ``replicas`` replicas."""
        require_redis()
        self = cls(root, tls=tls, admin_password=admin_password)
        try:
            for port in cluster_ports(n * (1 + replicas)):
                d = root / f"node-{port}"
                d.mkdir(parents=True)
                log = open(d / "redis.log", "wb")
                if tls is None:
                    listen = ["--port", str(port)]
                else:
                    listen = ["--port", "0", "--tls-port", str(port),
                              "--tls-cert-file", str(tls.cert), "--tls-key-file", str(tls.key),
                              "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "yes",
                              "--tls-cluster", "yes", "--tls-replication", "yes"]
                auth: list[str] = []
                if admin_password is not None:
                    auth += ["--requirepass", admin_password, "--masterauth", admin_password]
                for user in users:
                    auth += ["--user", *user.split()]
                self.procs.append(subprocess.Popen(
                    [REDIS_SERVER, *listen, "--bind", "127.0.0.1",
                     "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                     "--dir", str(d), "--save", "", "--appendonly", "yes",
                     "--appendfsync", "everysec", "--protected-mode", "yes",
                     # replicas load a full sync from the socket: no dump.rdb of old data on disk
                     "--repl-diskless-load", "swapdb", *auth],
                    stdout=log, stderr=subprocess.STDOUT))
                log.close()
                self.ports.append(port)
            for port in self.ports:
                self._wait_ping(port)
            subprocess.run(
                [REDIS_CLI, *self._cli_args(), "--cluster", "create", *self.nodes,
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                capture_output=True, timeout=60, check=True)
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ping(self, port: int, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run([REDIS_CLI, *self._cli_args(), "-p", str(port), "ping"],
                               capture_output=True)
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

    def primaries(self) -> list[int]:
        return [p for p in self.ports if "role:master" in self.cli(p, "info", "replication")]

    def flush(self) -> None:
        for port in self.primaries():
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
