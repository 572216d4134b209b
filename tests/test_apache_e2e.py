"""Real Apache httpd (deploy/apache/lethelog.conf) → logger → real `lethelog serve`.

Debian's apache2 runs as a self-contained instance (its own ServerRoot, pid file, error log and
an unprivileged port; the system's Apache is not touched) that includes the recipe as shipped,
only the syslog port templated. The recipe's piped CustomLog starts util-linux ``logger``, which
relays every line over syslog TCP (RFC 5424, octet counting) to lethelog, configured with the
recipe's LogFormat line as ``syslog.format``. Requests come with varied client addresses behind
a trusted X-Forwarded-For (mod_remoteip, enabled by the recipe when the module is loaded),
agents, languages and session cookies; each must be stored exactly once, masked.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from masking.ip import IPMasker
from tests.service import ROOT, ServiceProcess, all_files, files_containing, free_port
from tests.test_nginx_e2e import LOGGER, get_records, make_requests

APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
RECIPE = ROOT / "deploy" / "apache" / "lethelog.conf"
PAGE = Path("/usr/share/apache2/default-site/index.html")  # readable by Apache's user
# the LogFormat nicknames Debian's /etc/apache2/apache2.conf defines (as of apache2 2.4 in
# bookworm), which the recipe's alternative relies on
_UA_REF = r'\"%{Referer}i\" \"%{User-Agent}i\"'
DEBIAN_LOGFORMATS = (rf'LogFormat "%v:%p %h %l %u %t \"%r\" %>s %O {_UA_REF}" vhost_combined'
                     "\n" + rf'LogFormat "%h %l %u %t \"%r\" %>s %O {_UA_REF}" combined')


def recipe_log_format() -> str:
    m = re.search(r'^LogFormat ".*" lethelog$', RECIPE.read_text(), re.M)
    assert m, "deploy/apache/lethelog.conf has no LogFormat ... lethelog"
    return m.group(0)


class Apache:
    def __init__(self, root: Path, syslog_port: int, recipe: str | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.ports = {"apache.test": self.port}  # what make_requests reads
        (root / "run").mkdir(parents=True)
        if recipe is None:
            recipe = RECIPE.read_text()
            assert "--port 5514 " in recipe
            recipe = recipe.replace("--port 5514 ", f"--port {syslog_port} ")
        (root / "lethelog.conf").write_text(recipe)
        user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
        mods = "".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so\n"
                       for m in ("mpm_event", "authz_core", "alias", "remoteip"))
        (root / "apache2.conf").write_text(f"""ServerRoot "{root}"
ServerName apache.test
Listen 127.0.0.1:{self.port}
PidFile {root}/run/apache2.pid
DefaultRuntimeDir {root}/run
Mutex file:{root}/run default
ErrorLog {root}/error.log
{user}{mods}
{DEBIAN_LOGFORMATS}
DocumentRoot {PAGE.parent}
<Directory />
    Require all denied
</Directory>
<Directory {PAGE.parent}>
    Require all granted
</Directory>
AliasMatch ^/shop/ {PAGE}
RedirectMatch 404 ^/missing/
Include {root}/lethelog.conf
""")
        # the environment of a service manager: no HOME, a plain PATH
        self.proc = subprocess.Popen([APACHE, "-d", str(root), "-f", str(root / "apache2.conf"),
                                      "-DFOREGROUND"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT,
                                     env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                    err = (root / "error.log").read_text() if (root / "error.log").exists() else ""
                    pytest.fail(f"apache2 did not start: {out[-800:]} {err[-800:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def apache_and_service(tmp_path: Path) -> Iterator[tuple[Apache, ServiceProcess]]:
    if not Path(APACHE).exists() or not (MODULES / "mod_remoteip.so").exists():
        pytest.skip("apache2 is not installed (tests/run.sh installs Debian's apache2)")
    if LOGGER is None or LOGGER != "/usr/bin/logger":
        pytest.skip("util-linux logger is not at /usr/bin/logger, where the recipe calls it")
    tcp_port = free_port()
    config = tmp_path / "lethelog.toml"
    config.write_text(f"""
[sessions]
idle_timeout = "1d"

[syslog]
tcp = "127.0.0.1:{tcp_port}"
source = "apache"
format = '''{recipe_log_format()}'''
""")
    svc = ServiceProcess(tmp_path / "lethelog-data", tmp_path / "service.log",
                         args=["--config", str(config)])
    apache = Apache(tmp_path / "apache", tcp_port)
    try:
        yield apache, svc
    finally:
        apache.stop()
        svc.stop()


def test_apache_ships_through_logger(apache_and_service: tuple[Apache, ServiceProcess],
                                     tmp_path: Path) -> None:
    apache, svc = apache_and_service
    sent = asyncio.run(make_requests(apache, random.Random(23),  # type: ignore[arg-type]
                                     {"apache.test": 150}))
    deadline = time.monotonic() + 20
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(rows) < len(sent):
        rows = get_records(svc.url)
        time.sleep(0.2)
    time.sleep(0.5)  # a duplicate would arrive now
    rows = get_records(svc.url)

    def marker(r: dict[str, Any]) -> str:
        m = re.search(r"/(mapa\d{5})", r["path"] or "")
        assert m, r["path"]
        return m.group(1)

    by_marker = {marker(r): r for r in rows}
    assert len(rows) == len(sent) == 150
    assert Counter(marker(r) for r in rows) == Counter(s["marker"] for s in sent), \
        "every request exactly once"
    masker = IPMasker(24, 48)
    sessions: dict[str, set[str]] = {}
    for s in sent:
        r = by_marker[s["marker"]]
        assert r["ip"] == masker.mask(s["ip"]) and r["ip"] != s["ip"]
        assert r["status"] == s["status"] and r["method"] == "GET"
        assert r["source"] == "apache" and r["host"] == "apache.test"
        if s["status"] == 200:
            assert r["query"] == "ref=home&token=[redacted]"
            assert r["path_template"] == f"/shop/{s['marker']}/item/:id"
        assert r["browser"] is not None and r["device_type"] is not None
        sessions.setdefault(s["cookie"], set()).add(r["session"])
    assert all(len(ids) == 1 for ids in sessions.values()), "one session per cookie"
    assert len({next(iter(ids)) for ids in sessions.values()}) == len(sessions)

    apache.stop()
    assert svc.stop() == 0
    files = all_files(tmp_path / "lethelog-data", tmp_path / "service.log")
    needles = ({s["ip"] for s in sent} | {s["cookie"] for s in sent}
               | {s["secret"] for s in sent})
    assert files_containing(files, needles) == {}, "no raw address, cookie or secret kept"


def test_apache_ships_through_lethelog_ship(tmp_path: Path) -> None:
    """The recipe's at-least-once alternative: a piped `lethelog ship -` posting Apache's
    vhost_combined lines over HTTP with a shipper token (the active logger line commented out,
    the commented ship line enabled; its binary, URL and token file templated)."""
    if not Path(APACHE).exists() or not (MODULES / "mod_remoteip.so").exists():
        pytest.skip("apache2 is not installed (tests/run.sh installs Debian's apache2)")
    exe = Path(sys.executable).with_name("lethelog")
    if not exe.exists():
        pytest.skip("the lethelog console script is not installed next to this python")
    from collector.auth import new_token

    ship_token, ship_hash = new_token()
    read_token, read_hash = new_token()
    cfg = tmp_path / "lethelog.toml"
    cfg.write_text('[sessions]\nidle_timeout = "1d"\n'
                   f'[[tokens]]\nname = "apache"\nroles = ["shipper"]\nsha256 = "{ship_hash}"\n'
                   'operator = true\n'
                   f'[[tokens]]\nname = "reader"\nroles = ["sre"]\nsha256 = "{read_hash}"\n'
                   'operator = true\n')
    token_file = tmp_path / "apache.token"
    token_file.write_text(ship_token + "\n")
    token_file.chmod(0o600)
    svc = ServiceProcess(tmp_path / "lethelog-data", tmp_path / "service.log",
                         args=["--config", str(cfg)])
    recipe = RECIPE.read_text()
    active = re.search(r'^CustomLog "\|/usr/bin/logger .*$', recipe, re.M)
    alternative = re.search(r'^# (CustomLog "\|/opt/lethelog/.*)$', recipe, re.M)
    assert active and alternative
    line = (alternative.group(1)
            .replace("/opt/lethelog/.venv/bin/lethelog", str(exe))
            .replace("https://lethelog.example:8780", svc.url)
            .replace("/etc/lethelog/apache.token", str(token_file)))
    assert line.count(str(tmp_path)) == 1 and str(exe) in line
    recipe = recipe.replace(active.group(0), "# " + active.group(0)).replace(
        alternative.group(0), line)
    apache = None
    try:
        apache = Apache(tmp_path / "apache", 0, recipe)
        sent = asyncio.run(make_requests(apache, random.Random(31),  # type: ignore[arg-type]
                                         {"apache.test": 60}))
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(rows) < len(sent):
            rows = _records(svc.url, read_token)
            time.sleep(0.3)
        time.sleep(0.5)
        rows = _records(svc.url, read_token)
    finally:
        if apache is not None:
            apache.stop()
        svc.stop()
    got = Counter(re.search(r"/(mapa\d{5})", r["path"] or "").group(1)  # type: ignore[union-attr]
                  for r in rows)
    assert got == Counter(s["marker"] for s in sent), "every request exactly once"
    masker = IPMasker(24, 48)
    by = {re.search(r"/(mapa\d{5})", r["path"]).group(1): r for r in rows}  # type: ignore[union-attr]
    for s in sent:
        r = by[s["marker"]]
        assert r["ip"] == masker.mask(s["ip"]), "the client behind X-Forwarded-For, masked"
        assert r["host"] == "apache.test:80"  # vhost_combined: %v:%p
        assert r["status"] == s["status"]


def _records(url: str, token: str) -> list[dict[str, Any]]:
    req = urllib.request.Request(f"{url}/v1/records?limit=1000",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return [json.loads(x) for x in resp.read().splitlines() if x]
