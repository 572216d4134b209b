"""Real nginx → real rsyslog (deploy/rsyslog/lethelog.conf) → real `lethelog serve`.

rsyslog runs the recipe as shipped (only its ports and the target host templated, plus a
``global(workDirectory=…)`` of its own and a pid file: a self-contained instance on unprivileged
ports that leaves the system's rsyslog alone). nginx runs deploy/nginx/lethelog.conf with its
syslog server pointed at rsyslog's UDP input, as the recipe's comment says.

The relay must survive lethelog being down: requests made while lethelog is stopped wait in
rsyslog's queue; rsyslog itself is restarted while they wait, so they go through its disk queue
(``queue.saveOnShutdown``); lethelog comes back and every request arrives exactly once, masked.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from masking.ip import IPMasker
from tests.service import ROOT, ServiceProcess, all_files, files_containing, free_port
from tests.test_nginx_e2e import (
    NGINX,
    Nginx,
    free_udp_port,
    get_records,
    make_requests,
    recipe_log_format,
)

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
RECIPE = ROOT / "deploy" / "rsyslog" / "lethelog.conf"


def udp_bound(port: int) -> bool:
    """Whether some process has a UDP socket bound to ``port`` (IPv4)."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        local = line.split()[1]
        if int(local.rsplit(":", 1)[1], 16) == port:
            return True
    return False


class Rsyslog:
    def __init__(self, root: Path, udp_port: int, tcp_port: int,
                 recipe_path: Path = RECIPE, more: dict[str, str] | None = None) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        recipe = recipe_path.read_text()
        port = re.search(r'target="lethelog\.example" port="(\d+)"', recipe)
        assert port and 'port="5515"' in recipe
        swaps = {'port="5515"': f'port="{udp_port}"',
                 f'target="lethelog.example" port="{port.group(1)}"':
                 f'target="127.0.0.1" port="{tcp_port}"', **(more or {})}
        for old, new in swaps.items():
            assert old in recipe, old
            recipe = recipe.replace(old, new)
        (root / "lethelog.conf").write_text(recipe)
        (root / "rsyslog.conf").write_text(
            f'global(workDirectory="{self.work}")\ninclude(file="{root}/lethelog.conf")\n')
        self.udp_port = udp_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = open(self.root / "rsyslogd.out", "ab")
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.root / "rsyslog.conf"),
             "-i", str(self.root / "rsyslogd.pid")], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not udp_bound(self.udp_port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("rsyslogd did not start: "
                            + (self.root / "rsyslogd.out").read_text()[-1500:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Nginx, Rsyslog, Path, int]]:
    if NGINX is None:
        pytest.skip("nginx is not installed (tests/run.sh installs Debian's nginx)")
    if not Path(RSYSLOGD).exists():
        pytest.skip("rsyslogd is not installed (tests/run.sh installs Debian's rsyslog)")
    tcp_port, rs_udp = free_port(), free_udp_port()
    config = tmp_path / "lethelog.toml"
    config.write_text(f"""
[sessions]
idle_timeout = "1d"

[syslog]
tcp = "127.0.0.1:{tcp_port}"
source = "nginx"
format = '''{recipe_log_format()}'''
""")
    rs = Rsyslog(tmp_path / "rsyslog", rs_udp, tcp_port)
    rs.start()
    ngx = Nginx(tmp_path / "nginx", rs_udp)
    try:
        yield ngx, rs, config, tcp_port
    finally:
        ngx.stop()
        rs.stop()


def marker(row: dict[str, Any]) -> str:
    m = re.search(r"/(mudp\d{5})", row["path"] or "")
    assert m, row["path"]
    return m.group(1)


def wait_records(url: str, n: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = get_records(url)
        if len(rows) >= n:
            break
        time.sleep(0.2)
    return rows


def test_rsyslog_relays_through_a_lethelog_restart(
        relay: tuple[Nginx, Rsyslog, Path, int], tmp_path: Path) -> None:
    ngx, rs, config, _ = relay
    data, logs = tmp_path / "lethelog-data", tmp_path / "service.log"
    rng = random.Random(19)
    svc = ServiceProcess(data, logs, args=["--config", str(config)])
    try:
        up = asyncio.run(make_requests(ngx, rng, {"udp.test": 80}))
        assert len(wait_records(svc.url, 80, 20)) == 80
    finally:
        assert svc.stop() == 0

    # lethelog is down: nginx keeps logging to rsyslog, which holds on to the lines
    down = asyncio.run(make_requests(ngx, rng, {"udp.test": 80}))
    time.sleep(1.0)
    rs.stop()  # rsyslog restarts meanwhile: the waiting lines go to its disk queue
    spooled = [p.name for p in rs.work.iterdir()]
    assert any(name.startswith("lethelog") for name in spooled), spooled
    rs.start()

    svc = ServiceProcess(data, tmp_path / "service2.log", args=["--config", str(config)])
    try:
        after = asyncio.run(make_requests(ngx, rng, {"udp.test": 40}))
        sent = up + down + after
        rows = wait_records(svc.url, len(sent), 40)
        time.sleep(0.5)  # a duplicate would arrive now
        rows = get_records(svc.url)
    finally:
        assert svc.stop() == 0

    # make_requests numbers each call's requests from 0: a request is its marker and address
    masker = IPMasker(24, 48)
    want = Counter((s["marker"], masker.mask(s["ip"])) for s in sent)
    got = Counter((marker(r), r["ip"]) for r in rows)
    assert len(sent) == 200 and len(rows) == 200, len(rows)
    assert got == want, "every request exactly once, including the 80 sent while lethelog was down"
    for r in rows:
        assert r["source"] == "nginx" and r["host"] == "udp.test"
        assert r["query"] in (None, "ref=home&token=[redacted]")
    files = all_files(data, logs, tmp_path / "service2.log")
    needles = {s["ip"] for s in sent} | {s["cookie"] for s in sent} | {s["secret"] for s in sent}
    assert files_containing(files, needles) == {}, "no raw address, cookie or secret kept"


TLS_RECIPE = ROOT / "deploy" / "rsyslog" / "lethelog-tls.conf"


def test_rsyslog_relays_over_tls_with_client_certificates(tmp_path: Path) -> None:
    """deploy/rsyslog/lethelog-tls.conf: rsyslog checks lethelog's certificate and name,
    lethelog requires rsyslog's client certificate (syslog.tls_client_ca)."""
    if NGINX is None:
        pytest.skip("nginx is not installed (tests/run.sh installs Debian's nginx)")
    if not Path(RSYSLOGD).exists() or not any(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so")):
        pytest.skip("rsyslog-gnutls is not installed (tests/run.sh installs it)")
    from tests.redis_cluster import make_tls

    tls = make_tls(tmp_path / "pki")  # server cert names localhost / 127.0.0.1, + client cert
    tcp_port, rs_udp = free_port(), free_udp_port()
    config = tmp_path / "lethelog.toml"
    config.write_text(f"""
[sessions]
idle_timeout = "1d"

[syslog]
tcp = "127.0.0.1:{tcp_port}"
tls_cert = "{tls.cert}"
tls_key = "{tls.key}"
tls_client_ca = "{tls.ca}"
source = "nginx"
format = '''{recipe_log_format()}'''
""")
    data, logs = tmp_path / "lethelog-data", tmp_path / "service.log"
    svc = ServiceProcess(data, logs, args=["--config", str(config)])
    rs = Rsyslog(tmp_path / "rsyslog", rs_udp, tcp_port, TLS_RECIPE, {
        'StreamDriverPermittedPeers="lethelog.example"': 'StreamDriverPermittedPeers="localhost"',
        "/etc/rsyslog.d/lethelog-ca.pem": str(tls.ca),
        "/etc/rsyslog.d/lethelog-client.pem": str(tls.client_cert),
        "/etc/rsyslog.d/lethelog-client.key": str(tls.client_key)})
    ngx = None
    try:
        rs.start()
        ngx = Nginx(tmp_path / "nginx", rs_udp)
        sent = asyncio.run(make_requests(ngx, random.Random(29), {"udp.test": 60}))
        rows = wait_records(svc.url, 60, 30)
        time.sleep(0.5)  # a duplicate would arrive now
        rows = get_records(svc.url)
    finally:
        if ngx is not None:
            ngx.stop()
        rs.stop()
        assert svc.stop() == 0
    masker = IPMasker(24, 48)
    assert Counter((marker(r), r["ip"]) for r in rows) == Counter(
        (s["marker"], masker.mask(s["ip"])) for s in sent), "every request exactly once"
    text = logs.read_text()
    assert '"tls":true' in text.replace(" ", "")
    assert "TLS handshake failed" not in text and '"refused":0' in text.replace(" ", "")
    needles = {s["ip"] for s in sent} | {s["cookie"] for s in sent} | {s["secret"] for s in sent}
    assert files_containing(all_files(data, logs), needles) == {}
