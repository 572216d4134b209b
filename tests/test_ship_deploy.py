"""The recipes in deploy/ as shipped: nginx's JSON log through `lethelog ship`, the systemd unit,
the production example configuration, the Vector configuration."""

from __future__ import annotations

import configparser
import json
import os
import random
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from collector.cli import build_parser
from collector.parse import compile_format
from collector.settings import ServerSettings, load_settings
from masking.ip import IPMasker
from tests.service import ROOT, ServiceProcess, free_port
from tests.test_nginx_e2e import NGINX, public_ipv4

DEPLOY = ROOT / "deploy"


def test_systemd_unit_runs_serve_and_waits_longer_than_the_drain() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(DEPLOY / "systemd" / "lethelog.service")
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0].endswith("/lethelog")
    ns = build_parser().parse_args(argv[1:])
    assert ns.command == "serve" and ns.config == "/etc/lethelog/lethelog.toml"
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    stop = float(unit["Service"]["TimeoutStopSec"])
    assert stop > ServerSettings().shutdown_timeout + 5


def test_production_example_is_valid() -> None:
    s = load_settings(DEPLOY / "lethelog.example.toml", env={})
    assert s.tokens and s.syslog.udp and s.syslog.tcp
    recipe = (DEPLOY / "nginx" / "lethelog.conf").read_text()
    assert s.syslog.format.split("'", 1)[1].split()[0] == "$remote_addr"
    assert " ".join(s.syslog.format.split()) in " ".join(recipe.split()), \
        "the example's syslog.format is the nginx recipe's log_format"
    compile_format(s.syslog.format)


def test_vector_sink_posts_ndjson_with_a_bearer_token() -> None:
    doc = yaml.safe_load((DEPLOY / "vector" / "vector.yaml").read_text())
    sink = doc["sinks"]["lethelog"]
    assert sink["type"] == "http" and sink["uri"].endswith("/v1/logs")
    assert sink["encoding"]["codec"] == "json"
    assert sink["framing"]["method"] == "newline_delimited"
    assert sink["auth"]["strategy"] == "bearer"
    assert sink["request"]["headers"]["Content-Type"] == "application/x-ndjson"


def test_nginx_json_recipe_through_lethelog_ship(tmp_path: Path) -> None:
    if NGINX is None:
        pytest.skip("nginx is not installed")
    root = tmp_path / "nginx"
    for d in ("logs", "tmp"):
        (root / d).mkdir(parents=True)
    recipe = (DEPLOY / "nginx" / "lethelog-json.conf").read_text()
    json_log = root / "logs" / "lethelog.json"
    assert "/var/log/nginx/lethelog.json" in recipe
    (root / "lethelog-json.conf").write_text(
        recipe.replace("/var/log/nginx/lethelog.json", str(json_log)))
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(f"""{user}worker_processes 1;
events {{ worker_connections 64; }}
http {{
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    include {root}/lethelog-json.conf;
    client_body_temp_path {root}/tmp/b; proxy_temp_path {root}/tmp/p;
    fastcgi_temp_path {root}/tmp/f; uwsgi_temp_path {root}/tmp/u; scgi_temp_path {root}/tmp/s;
    server {{ listen 127.0.0.1:{port}; server_name json.test; location / {{ return 200; }} }}
}}
""")
    nginx = subprocess.Popen([NGINX, "-p", str(root), "-c", str(root / "nginx.conf"), "-g",
                              f"daemon off; pid {root}/nginx.pid; error_log stderr;"],
                             stderr=subprocess.PIPE)
    svc = ServiceProcess(tmp_path / "lethelog-data", tmp_path / "service.log",
                         env={"LETHELOG_SESSIONS_IDLE_TIMEOUT": "1d"})
    rng = random.Random(7)
    ips = [public_ipv4(rng) for _ in range(50)]
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1).read()
                break
            except OSError:
                assert nginx.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        for i, ip in enumerate(ips):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/json/{i}?email=a%40b.example",
                headers={"X-Forwarded-For": ip, "Cookie": f"session=c{i % 5}", "Host": "json.test",
                         "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0",
                         "Accept-Language": "nl-NL"})
            urllib.request.urlopen(req, timeout=5).read()
        ship = subprocess.run(
            [sys.executable, "-m", "collector", "ship", str(json_log), "--url", svc.url,
             "--format", "json", "--state-dir", str(tmp_path / "st"), "--progress", "never"],
            capture_output=True, env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"],
                                      "HOME": str(tmp_path)}, timeout=60)
        assert ship.returncode == 0, ship.stderr.decode()
        with urllib.request.urlopen(f"{svc.url}/v1/records?limit=1000", timeout=10) as resp:
            rows = [json.loads(x) for x in resp.read().splitlines() if x]
    finally:
        nginx.terminate()
        nginx.wait(10)
        assert svc.stop() == 0
    rows = [r for r in rows if (r["path"] or "").startswith("/json/")]
    assert len(rows) == 50
    masker = IPMasker(24, 48)
    by_path = {r["path"]: r for r in rows}
    for i, ip in enumerate(ips):
        r = by_path[f"/json/{i}"]
        assert r["ip"] == masker.mask(ip) and r["host"] == "json.test"
        assert r["language"] == "nl" and r["query"] == "email=[redacted]"
    assert len({r["session"] for r in rows}) == 5, "one session per cookie value"
