"""Real nginx → syslog → real `lethelog serve`: every request stored masked and enriched.

nginx runs with the recipe from deploy/nginx/lethelog.conf (only the syslog port templated). The
test makes a few hundred requests through nginx with varied client addresses (trusted
X-Forwarded-For + set_real_ip_from), paths, agents and session cookies. One server block ships
over syslog UDP straight from nginx; the other writes the same log_format to a file that
util-linux `logger` relays over syslog TCP (RFC 5424, octet counting) — nginx itself only speaks
UDP syslog. Every request must come back from GET /v1/records, masked and enriched, exactly
once, and no raw address, cookie or secret may be anywhere in the data directory or the log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from masking.ip import IPMasker
from tests.service import ROOT, ServiceProcess, all_files, files_containing, free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
LOGGER = shutil.which("logger")
RECIPE = ROOT / "deploy" / "nginx" / "lethelog.conf"

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15",
]
LANGS = ["de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9", "en-US,en;q=0.5", "pt-BR"]


def recipe_log_format() -> str:
    m = re.search(r"^log_format lethelog .*?;$", RECIPE.read_text(), re.S | re.M)
    assert m, "deploy/nginx/lethelog.conf has no log_format lethelog"
    return m.group(0)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def public_ipv4(rng: random.Random) -> str:
    while True:
        ip = ipaddress.IPv4Address(rng.randrange(1 << 24, 224 << 24))
        if ip.is_global and int(ip) & 0xFF not in (0, 255):
            return str(ip)


def public_ipv6(rng: random.Random) -> str:
    while True:
        ip = ipaddress.IPv6Address((0x2A02 << 112) | rng.getrandbits(112))
        if ip.is_global and int(ip) & 0xFFFF:
            return str(ip)


class Nginx:
    def __init__(self, root: Path, udp_port: int) -> None:
        assert NGINX is not None
        self.root = root
        self.udp_port = udp_port
        self.ports = {"udp.test": free_port(), "tcp.test": free_port()}
        self.tcp_log = root / "logs" / "tcp.log"
        for d in ("logs", "tmp", "html"):
            (root / d).mkdir(parents=True)
        recipe = RECIPE.read_text()
        assert "syslog:server=127.0.0.1:5514," in recipe
        (root / "lethelog.conf").write_text(
            recipe.replace("127.0.0.1:5514", f"127.0.0.1:{udp_port}"))
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "".join(f"    {k}_temp_path {root}/tmp/{k};\n"
                       for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        servers = ""
        for host, port in self.ports.items():
            extra = f"access_log {self.tcp_log} lethelog;" if host == "tcp.test" else ""
            servers += f"""
    server {{
        listen 127.0.0.1:{port};
        server_name {host};
        {extra}
        location /missing/ {{ return 404; }}
        location / {{ return 200 "ok\\n"; }}
    }}"""
        conf = root / "nginx.conf"
        conf.write_text(f"""{user}worker_processes 1;
events {{ worker_connections 256; }}
http {{
    include {root}/lethelog.conf;
{temp}{servers}
}}
""")
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(root), "-c", str(conf),
             "-g", f"daemon off; pid {root}/nginx.pid; error_log stderr;"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        for port in self.ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                        pytest.fail(f"nginx did not start: {err.strip()[:500]}")
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def nginx_and_service(tmp_path: Path) -> Iterator[tuple[Nginx, ServiceProcess, int]]:
    if NGINX is None:
        pytest.skip("nginx is not installed (tests/run.sh installs Debian's nginx)")
    if LOGGER is None:
        pytest.skip("util-linux logger is not installed")
    udp_port, tcp_port = free_udp_port(), free_port()
    config = tmp_path / "lethelog.toml"
    config.write_text(f"""
[sessions]
idle_timeout = "1d"

[syslog]
udp = "127.0.0.1:{udp_port}"
tcp = "127.0.0.1:{tcp_port}"
source = "nginx"
format = '''{recipe_log_format()}'''
""")
    svc = ServiceProcess(tmp_path / "lethelog-data", tmp_path / "service.log",
                         args=["--config", str(config)])
    ngx = Nginx(tmp_path / "nginx", udp_port)
    try:
        yield ngx, svc, tcp_port
    finally:
        ngx.stop()
        svc.stop()


def get_records(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/v1/records?limit=100000", timeout=30) as resp:
        return [json.loads(line) for line in resp.read().splitlines() if line]


async def make_requests(ngx: Nginx, rng: random.Random, per_host: dict[str, int]
                        ) -> list[dict[str, Any]]:
    """Visitors (address, agent, cookie, language) making requests through nginx."""
    visitors = []
    for i in range(60):
        ip = public_ipv6(rng) if i % 6 == 5 else public_ipv4(rng)
        visitors.append({"ip": ip, "agent": AGENTS[i % len(AGENTS)],
                         "cookie": f"sess{rng.getrandbits(64):016x}", "lang": LANGS[i % 4]})
    sent: list[dict[str, Any]] = []
    sem = asyncio.Semaphore(16)

    async def one(session: aiohttp.ClientSession, host: str, n: int) -> None:
        v = visitors[n % len(visitors)]
        marker = f"m{host[:3]}{n:05d}"
        secret = f"sec{rng.getrandbits(48):012x}"
        missing = n % 10 == 7
        path = (f"/missing/{marker}" if missing
                else f"/shop/{marker}/item/{n}?ref=home&token={secret}")
        headers = {"Host": host, "X-Forwarded-For": v["ip"], "User-Agent": v["agent"],
                   "Cookie": f"theme=dark; session={v['cookie']}",
                   "Accept-Language": v["lang"]}
        async with sem, session.get(f"http://127.0.0.1:{ngx.ports[host]}{path}",
                                    headers=headers) as resp:
            assert resp.status == (404 if missing else 200)
            await resp.read()
        sent.append({**v, "host": host, "marker": marker, "secret": secret,
                     "status": 404 if missing else 200})

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, host, n)
                               for host, count in per_host.items() for n in range(count)))
    return sent


def test_nginx_ships_over_syslog_udp_and_tcp(nginx_and_service: tuple[Nginx, ServiceProcess, int],
                                             tmp_path: Path) -> None:
    ngx, svc, tcp_port = nginx_and_service
    rng = random.Random(5)
    per_host = {"udp.test": 240, "tcp.test": 160}
    sent = asyncio.run(make_requests(ngx, rng, per_host))
    assert len(sent) == 400
    # the TCP leg: the same nginx lines, relayed over syslog TCP with octet counting
    lines = ngx.tcp_log.read_text().splitlines()
    assert len(lines) == per_host["tcp.test"]
    subprocess.run([str(LOGGER), "--tcp", "--octet-count", "--rfc5424", "--server", "127.0.0.1",
                    "--port", str(tcp_port), "--tag", "nginx", "--size", "65536",
                    "-f", str(ngx.tcp_log)], check=True, timeout=30)

    deadline = time.monotonic() + 20
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = get_records(svc.url)
        if len(rows) >= len(sent):
            break
        time.sleep(0.2)
    time.sleep(0.5)  # anything extra (a duplicate) would arrive now
    rows = get_records(svc.url)

    by_marker: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        m = re.search(r"/(m(?:udp|tcp)\d{5})", r["path"] or "")
        assert m, r["path"]
        by_marker.setdefault(m.group(1), []).append(r)
    assert Counter(r["host"] for r in rows) == Counter(per_host), "every request, once"
    assert {k for k, v in by_marker.items() if len(v) != 1} == set(), "no duplicates"
    assert set(by_marker) == {s["marker"] for s in sent}, "no request lost"

    masker = IPMasker(24, 48)
    sessions: dict[str, set[str]] = {}
    for s in sent:
        r = by_marker[s["marker"]][0]
        assert r["ip"] == masker.mask(s["ip"]) and r["ip"] != s["ip"]
        assert r["status"] == s["status"] and r["method"] == "GET"
        assert r["source"] == "nginx"
        assert s["secret"] not in (r["query"] or "")
        if s["status"] == 200:
            assert r["query"] == "ref=home&token=[redacted]"
            assert r["path_template"] == f"/shop/{s['marker']}/item/:id"
        assert r["language"] == s["lang"][:2]
        assert r["browser"] is not None and r["device_type"] is not None
        sessions.setdefault(s["cookie"], set()).add(r["session"])
    # enriched: GeoIP found a country for (nearly) every public address
    # (the default database is GeoLite2 of 2018 on a fresh install: ~85 % of masked /24s)
    assert sum(r["country"] is not None for r in rows) >= 0.75 * len(rows)
    assert {r["device_type"] for r in rows} >= {"desktop", "mobile", "bot"}
    assert sum(r["is_bot"] is True for r in rows) == sum(
        "Googlebot" in s["agent"] for s in sent)
    # the session cookie made the session: one session per cookie, distinct across cookies
    assert all(len(ids) == 1 for ids in sessions.values())
    assert len({next(iter(ids)) for ids in sessions.values()}) == len(sessions)

    with urllib.request.urlopen(f"{svc.url}/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert re.search(r"^lethelog_syslog_udp_datagrams 240(\.0)?$", metrics, re.M), metrics
    assert re.search(r"^lethelog_syslog_udp_dropped 0(\.0)?$", metrics, re.M)
    assert re.search(r"^lethelog_syslog_tcp_messages 160(\.0)?$", metrics, re.M)

    assert svc.stop() == 0
    files = all_files(tmp_path / "lethelog-data", tmp_path / "service.log")
    needles = ({s["ip"] for s in sent} | {s["cookie"] for s in sent}
               | {s["secret"] for s in sent})
    assert files_containing(files, needles) == {}, "no raw address, cookie or secret kept"
    closed = [json.loads(line) for line in (tmp_path / "service.log").read_text().splitlines()
              if '"syslog_closed"' in line]
    assert closed and closed[0]["udp"]["stored"] == 240 and closed[0]["tcp"]["stored"] == 160
