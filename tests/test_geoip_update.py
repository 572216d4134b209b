"""``lethelog geoip update`` against a local server speaking MaxMind's download protocol.

The server serves real .mmdb files (the MaxMind test databases) packed as MaxMind packs them
(``EDITION_YYYYMMDD/EDITION.mmdb`` in a tar.gz), checks HTTP Basic auth, and can corrupt or cut
its answers. Each case runs the real command in a subprocess.
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import orjson
import pytest

from collector.enrich.geo import GeoEnricher
from collector.settings import EnrichSettings

MMDB = Path(__file__).parent / "data" / "mmdb"
ACCOUNT, KEY = "123456", "s3cr3t-licence-key"
EDITIONS = {"GeoLite2-City": MMDB / "GeoLite2-City-Test.mmdb",
            "GeoLite2-ASN": MMDB / "GeoLite2-ASN-Test.mmdb"}
DATE = "2026-11-24"


def _archive(edition: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folder = f"{edition}_{DATE.replace('-', '')}"
        for name, payload in ((f"{folder}/COPYRIGHT.txt", b"test data\n"),
                              (f"{folder}/{edition}.mmdb", data)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


class Server:
    def __init__(self) -> None:
        self.mode = "good"  # good | corrupt | cut | wrong_md5
        self.downloads: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                want = "Basic " + base64.b64encode(f"{ACCOUNT}:{KEY}".encode()).decode()
                if self.headers.get("Authorization") != want:
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b'{"code":"UNAUTHORIZED"}')
                    return
                url = urlparse(self.path)
                q = parse_qs(url.query)
                if url.path == "/geoip/updates/metadata":
                    edition = q["edition_id"][0]
                    md5 = hashlib.md5(EDITIONS[edition].read_bytes()).hexdigest()
                    if server.mode == "wrong_md5":
                        md5 = "0" * 32
                    body = orjson.dumps({"databases": [
                        {"edition_id": edition, "md5": md5, "date": DATE}]})
                    self._send(body)
                    return
                parts = url.path.split("/")  # /geoip/databases/E/download
                edition = parts[3]
                server.downloads.append(edition)
                assert q["date"] == [DATE.replace("-", "")] and q["suffix"] == ["tar.gz"]
                body = _archive(edition, EDITIONS[edition].read_bytes())
                if server.mode == "corrupt":
                    body = body[:40] + bytes(64) + body[104:]
                if server.mode == "cut":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self._send(body, "application/gzip")

            def _send(self, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()


def _conf(tmp_path: Path, server: Server, key: str = KEY) -> Path:
    (tmp_path / "db").mkdir(exist_ok=True)
    conf = tmp_path / "GeoIP.conf"
    conf.write_text(f"# as geoipupdate reads it\nAccountID {ACCOUNT}\nLicenseKey {key}\n"
                    f"EditionIDs GeoLite2-City GeoLite2-ASN\n"
                    f"DatabaseDirectory {tmp_path / 'db'}\nHost {server.url}\n")
    return conf


def _run(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", "geoip", "update", "--config",
                           str(conf), "--timeout", "10"], capture_output=True, text=True,
                          timeout=60, check=False)


def test_good_key_downloads_verifies_and_the_service_reloads(tmp_path: Path,
                                                             server: Server) -> None:
    db = tmp_path / "db"
    conf = _conf(tmp_path, server)
    # a running service's enricher, configured on the file the update will replace
    (db / "GeoLite2-City.mmdb").write_bytes((MMDB / "GeoIP2-City-Test.mmdb").read_bytes())
    geo = GeoEnricher(EnrichSettings(city_db=db / "GeoLite2-City.mmdb", default_db=False))
    assert geo.info()[0]["database_type"] == "GeoIP2-City"
    done = _run(conf)
    assert done.returncode == 0, done.stderr
    assert "GeoLite2-City: updated (2026-11-24)" in done.stdout
    assert "GeoLite2-ASN: updated" in done.stdout
    for edition, source in EDITIONS.items():
        assert (db / f"{edition}.mmdb").read_bytes() == source.read_bytes()
    assert not [p for p in db.iterdir() if p.name.startswith(".")]  # no temporary left
    assert geo.reload() == ["city"]
    assert geo.info()[0]["database_type"] == "GeoLite2-City"
    assert KEY not in done.stdout + done.stderr


def test_unchanged_database_is_not_downloaded(tmp_path: Path, server: Server) -> None:
    conf = _conf(tmp_path, server)
    assert _run(conf).returncode == 0
    assert server.downloads == ["GeoLite2-City", "GeoLite2-ASN"]
    again = _run(conf)
    assert again.returncode == 0
    assert "GeoLite2-City: unchanged" in again.stdout
    assert server.downloads == ["GeoLite2-City", "GeoLite2-ASN"]


def test_bad_key_is_a_clear_error_and_exit_3(tmp_path: Path, server: Server) -> None:
    done = _run(_conf(tmp_path, server, key="wrong"))
    assert done.returncode == 3
    assert "refused AccountID/LicenseKey (HTTP 401)" in done.stderr
    assert list((tmp_path / "db").iterdir()) == []
    assert "wrong" not in done.stderr


@pytest.mark.parametrize("mode, message", [
    ("corrupt", "the archive is corrupt"),
    ("cut", "was interrupted"),
    ("wrong_md5", "differs from the server's"),
])
def test_bad_download_keeps_the_old_file(tmp_path: Path, server: Server, mode: str,
                                         message: str) -> None:
    conf = _conf(tmp_path, server)
    old = (MMDB / "GeoIP2-City-Test.mmdb").read_bytes()
    (tmp_path / "db" / "GeoLite2-City.mmdb").write_bytes(old)
    server.mode = mode
    done = _run(conf)
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr
    assert "previous file stays in place" in done.stderr
    assert (tmp_path / "db" / "GeoLite2-City.mmdb").read_bytes() == old
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["GeoLite2-City.mmdb"]


def test_no_network_and_bad_config(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    conf = tmp_path / "GeoIP.conf"
    conf.write_text(f"AccountID 1\nLicenseKey k\nEditionIDs GeoLite2-City\n"
                    f"DatabaseDirectory {tmp_path / 'db'}\nHost http://127.0.0.1:9\n")
    done = _run(conf)
    assert done.returncode == 1 and "cannot reach http://127.0.0.1:9" in done.stderr
    conf.write_text("AccountID abc\nLicenseKey k\nEditionIDs GeoLite2-City\n")
    done = _run(conf)
    assert done.returncode == 2 and "AccountID must be a number" in done.stderr
    done = _run(tmp_path / "missing.conf")
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_weekly_systemd_timer_runs_the_update_command() -> None:
    import configparser
    import shlex

    from collector.cli import build_parser

    deploy = Path(__file__).parent.parent / "deploy" / "systemd"
    timer = configparser.ConfigParser(strict=False)
    timer.read(deploy / "lethelog-geoip-update.timer")
    assert timer["Timer"]["OnCalendar"] == "weekly"
    assert timer["Install"]["WantedBy"] == "timers.target"
    service = configparser.ConfigParser(strict=False)
    service.read(deploy / "lethelog-geoip-update.service")
    argv = shlex.split(service["Service"]["ExecStart"])
    assert argv[0].endswith("/lethelog")
    ns = build_parser().parse_args(argv[1:])
    assert (ns.command, ns.geoip_command, ns.config) == ("geoip", "update", "/etc/GeoIP.conf")
