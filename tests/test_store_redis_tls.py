"""The Redis hop authenticated and encrypted: Debian's redis-server as a three-primary cluster
that speaks TLS only (``tls-port``, ``tls-cluster yes``, ``tls-replication yes``, client
certificates required), with an ACL user limited to lethelog's key prefix and the commands of
``collector.store.redis_acl``. A real ``lethelog serve`` ingests, reads and forgets through it;
a wrong CA, a wrong password or a missing client certificate stop start-up with one line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from collector.store.redis_acl import acl_rules, commands
from tests.redis_cluster import REDIS_CLI, RedisClusterProcs, TlsFiles, make_ca, make_tls
from tests.service import ROOT, ServiceProcess, files_containing, free_port

PASSWORD = "lethelog-acl-password-0123"
ADMIN = "admin-password-4567"
PREFIX = "tlstest"


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[RedisClusterProcs, TlsFiles]]:
    root = tmp_path_factory.mktemp("redis-tls")
    tls = make_tls(root / "pki")
    user = f"lethelog on >{PASSWORD} {acl_rules(PREFIX)}"
    c = RedisClusterProcs.start(root / "nodes", tls=tls, users=[user], admin_password=ADMIN)
    try:
        yield c, tls
    finally:
        c.stop()


def env_for(c: RedisClusterProcs, tls: TlsFiles, **more: str) -> dict[str, str]:
    return {"LETHELOG_STORE_BACKEND": "redis", "LETHELOG_STORE_REDIS_NODES": c.nodes[0],
            "LETHELOG_STORE_REDIS_PREFIX": PREFIX, "LETHELOG_STORE_REDIS_TLS": "true",
            "LETHELOG_STORE_REDIS_TLS_CA": str(tls.ca),
            "LETHELOG_STORE_REDIS_TLS_CERT": str(tls.client_cert),
            "LETHELOG_STORE_REDIS_TLS_KEY": str(tls.client_key),
            "LETHELOG_STORE_REDIS_USERNAME": "lethelog",
            "LETHELOG_STORE_REDIS_PASSWORD": PASSWORD, "LETHELOG_STORE_REDIS_TIMEOUT": "2s",
            **more}


def clf(ip: str, t: float, path: str) -> str:
    ts = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))
    return (f'{ip} - - [{ts}] "GET {path} HTTP/1.1" 200 5 "-" '
            f'"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"')


def http(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read()


def test_serve_over_tls_as_a_limited_acl_user(
        tls_cluster: tuple[RedisClusterProcs, TlsFiles], tmp_path: Path) -> None:
    c, tls = tls_cluster
    svc = ServiceProcess(tmp_path / "d", tmp_path / "svc.log",
                         env=env_for(c, tls, LETHELOG_SESSIONS_IDLE_TIMEOUT="2s",
                                     LETHELOG_SESSIONS_SWEEP_INTERVAL="200ms"))
    ips = [f"198.51.100.{i}" for i in range(10, 40)]
    try:
        now = time.time()
        body = "\n".join(clf(ip, now, f"/tls/{n}") for n, ip in enumerate(ips)).encode()
        status, out = http(f"{svc.url}/v1/logs?format=combined", body)
        assert status == 200 and orjson.loads(out)["accepted"] == 30
        _, out = http(f"{svc.url}/v1/records?limit=100")
        rows = [orjson.loads(x) for x in out.splitlines() if x]
        assert sorted(r["path"] for r in rows) == sorted(f"/tls/{n}" for n in range(30))
        assert {r["ip"] for r in rows} == {"198.51.100.0"}
        _, out = http(f"{svc.url}/healthz")
        assert orjson.loads(out)["store"]["records"] == 30
        # the sweeper ends the sessions (2 s idle) and deletes them, as the same user
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _, out = http(f"{svc.url}/v1/records?limit=100")
            if not out.strip():
                break
            time.sleep(0.2)
        assert out.strip() == b"", "ended sessions are forgotten"
    finally:
        assert svc.stop() == 0
    log = (tmp_path / "svc.log").read_text()
    assert "NOPERM" not in log and "Traceback" not in log, log[-3000:]
    assert '"store_closed"' in log
    assert PASSWORD not in log
    # every key lethelog wrote is under its prefix; nothing raw reached Redis
    keys = set()
    for port in c.ports:
        keys |= set(c.cli(port, "--scan").split())
    assert keys and all(k.startswith(f"{PREFIX}:") for k in keys), keys
    assert files_containing(c.files(), ips) == {}


def as_lethelog(c: RedisClusterProcs, tls: TlsFiles, *args: str) -> str:
    out = subprocess.run(
        [REDIS_CLI, "--tls", "--cacert", str(tls.ca), "--cert", str(tls.client_cert),
         "--key", str(tls.client_key), "--user", "lethelog", "--pass", PASSWORD,
         "--no-auth-warning", "-p", str(c.ports[0]), *args],
        capture_output=True, timeout=30)
    return (out.stdout + out.stderr).decode()


def test_the_acl_user_is_limited_to_its_prefix_and_commands(
        tls_cluster: tuple[RedisClusterProcs, TlsFiles]) -> None:
    c, tls = tls_cluster
    # {tlstest} and {other} hash to some slot; ask the node that owns it (-c follows MOVED)
    assert "NOPERM" in as_lethelog(c, tls, "-c", "SET", "other:{x}", "1")
    assert "NOPERM" in as_lethelog(c, tls, "FLUSHALL")
    assert "NOPERM" in as_lethelog(c, tls, "KEYS", "*")
    assert "NOPERM" in as_lethelog(c, tls, "CONFIG", "GET", "requirepass")
    assert "NOPERM" in as_lethelog(c, tls, "-c", "DEL", f"{PREFIX}:{{meta}}")  # not granted
    assert "OK" in as_lethelog(c, tls, "-c", "SET", f"{PREFIX}:{{probe}}", "1")
    # plain TCP is not served at all: the port speaks TLS only
    out = subprocess.run([REDIS_CLI, "-p", str(c.ports[0]), "PING"], capture_output=True,
                         timeout=30)
    assert b"PONG" not in out.stdout


def test_acl_command_list_is_documented() -> None:
    doc = (ROOT / "docs" / "scale-out.md").read_text(encoding="utf-8")
    missing = [cmd for cmd in commands() if f"+{cmd}" not in doc]
    assert missing == [], f"docs/scale-out.md does not list {missing}"
    assert acl_rules("lethelog") in doc, "docs/scale-out.md prints the rules for the default prefix"


def start_up_error(c: RedisClusterProcs, tls: TlsFiles, tmp_path: Path, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    full.update({"PYTHONPATH": str(ROOT), **env_for(c, tls, **env)})
    full = {k: v for k, v in full.items() if v != ""}
    out = subprocess.run([sys.executable, "-m", "collector", "serve", "--listen",
                          f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d")],
                         capture_output=True, env=full, timeout=60)
    err = out.stderr.decode()
    assert out.returncode == 2, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [x for x in err.strip().splitlines() if x.startswith("lethelog: bad setting:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def test_wrong_ca_fails_start_up_with_one_line(
        tls_cluster: tuple[RedisClusterProcs, TlsFiles], tmp_path: Path) -> None:
    c, tls = tls_cluster
    other_ca, _ = make_ca(tmp_path / "other", "some-other-ca")
    line = start_up_error(c, tls, tmp_path, LETHELOG_STORE_REDIS_TLS_CA=str(other_ca))
    assert line.startswith("lethelog: bad setting: store.redis_tls_ca: the certificate of the "
                           "Redis Cluster at"), line
    assert "certificate verify failed" in line and str(other_ca) in line


def test_wrong_password_fails_start_up_with_one_line(
        tls_cluster: tuple[RedisClusterProcs, TlsFiles], tmp_path: Path) -> None:
    c, tls = tls_cluster
    line = start_up_error(c, tls, tmp_path, LETHELOG_STORE_REDIS_PASSWORD="not-the-password")
    assert line.startswith("lethelog: bad setting: store.redis_password: the Redis Cluster at "
                           f"{c.nodes[0]} refused the credentials of 'lethelog'"), line
    assert "not-the-password" not in line


def test_missing_client_certificate_fails_start_up_with_one_line(
        tls_cluster: tuple[RedisClusterProcs, TlsFiles], tmp_path: Path) -> None:
    """In-process (the CLI's one-line path is shown by the two tests above)."""
    import asyncio

    from collector.settings import SettingsError, load_settings
    from collector.store.redis import connected

    c, tls = tls_cluster
    env = {k: v for k, v in env_for(c, tls).items()
           if k not in ("LETHELOG_STORE_REDIS_TLS_CERT", "LETHELOG_STORE_REDIS_TLS_KEY")}
    settings = load_settings(None, env=env, overrides={"server.data_dir": str(tmp_path / "d")})
    with pytest.raises(SettingsError) as err:
        asyncio.run(connected(settings))
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith("store.redis_tls: the TLS handshake with the Redis Cluster at"), line


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    from collector.settings import SettingsError, load_settings

    cfg = tmp_path / "l.toml"
    (tmp_path / "ca.pem").write_text("x")
    cfg.write_text(f'[store]\nredis_tls_ca = "{tmp_path / "ca.pem"}"\n')
    with pytest.raises(SettingsError, match=r"^store\.redis_tls_ca: set store\.redis_tls = true"):
        load_settings(cfg, env={})
    cfg.write_text(f'[store]\nredis_tls = true\nredis_tls_cert = "{tmp_path / "ca.pem"}"\n')
    with pytest.raises(SettingsError, match=r"^store\.redis_tls_cert: redis_tls_cert and "):
        load_settings(cfg, env={})
    cfg.write_text(f'[store]\nredis_tls = true\nredis_tls_ca = "{tmp_path / "nope.pem"}"\n')
    with pytest.raises(SettingsError, match=r"^store\.redis_tls_ca: file .* does not exist"):
        load_settings(cfg, env={})
    cfg.write_text('[store]\nredis_tls_verify = "maybe"\n')
    with pytest.raises(SettingsError, match=r"^store\.redis_tls_verify"):
        load_settings(cfg, env={})



def test_acl_covers_every_command_the_store_sends() -> None:
    """Every redis-py call of collector/store/redis*.py is in the documented ACL: a new one
    must be added to collector.store.redis_acl.CLIENT_COMMANDS (and docs/scale-out.md)."""
    from collector.store.redis_acl import CLIENT_COMMANDS, METHOD_COMMANDS, NOT_COMMANDS

    sent: set[str] = set()
    for path in (ROOT / "collector" / "store").glob("redis*.py"):
        text = path.read_text()
        for name in re.findall(r"\b(?:client|pipe|p)\.([a-z_]+)\(", text):
            if name not in NOT_COMMANDS:
                sent.add(METHOD_COMMANDS.get(name, name))
        sent.update(c.lower() for c in re.findall(r'execute_command\(\s*"([A-Z]+)"', text))
    lua = (ROOT / "collector" / "store" / "redis_lua.py").read_text()
    assert len(re.findall(r"redis\.p?call\(", lua)) == len(
        re.findall(r"""redis\.p?call\(\s*['"][A-Za-z]+['"]""", lua)), \
        "every redis.call names its command literally (redis_acl reads them)"
    missing = sorted(sent - set(CLIENT_COMMANDS))
    assert missing == [], f"collector.store.redis_acl.CLIENT_COMMANDS lacks {missing}"
