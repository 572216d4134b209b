"""Encrypted transport and the loopback rule, on a real ``lethelog serve`` process.

* With ``server.tls_cert``/``server.tls_key`` the API speaks HTTPS only: a shipper that trusts
  the certificate is served, a plain-HTTP request on the same port gets no answer of the API.
* Without ``[[tokens]]`` the service refuses to bind anything but loopback (start-up fails with
  one line naming ``server.listen``), since every caller would hold every role.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.service import ROOT, ServiceProcess, free_port


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (tests/run.sh installs Debian's openssl)")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


LINE = (b'198.51.100.23 - - [01/Jan/2026:10:00:00 +0000] "GET /tls-marker HTTP/1.1" 200 5 '
        b'"-" "curl/8.5.0"\n')


def test_https_serves_and_plain_http_gets_nothing(tmp_path: Path, cert: tuple[Path, Path]
                                                  ) -> None:
    svc = ServiceProcess(tmp_path / "data", tmp_path / "serve.log", env={
        "LETHELOG_SERVER_TLS_CERT": str(cert[0]), "LETHELOG_SERVER_TLS_KEY": str(cert[1]),
        "LETHELOG_SESSIONS_IDLE_TIMEOUT": "1d"})
    try:
        https = f"https://127.0.0.1:{svc.port}"
        trusted = ssl.create_default_context(cafile=str(cert[0]))
        req = urllib.request.Request(f"{https}/v1/logs?format=combined", data=LINE,
                                     headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, context=trusted, timeout=30) as resp:
            assert resp.status == 200
            assert b'"accepted":1' in resp.read()
        with urllib.request.urlopen(f"{https}/v1/records?limit=5", context=trusted,
                                    timeout=30) as resp:
            assert b"/tls-marker" in resp.read()
        # an untrusted certificate is refused by a verifying client (it is not a public CA's)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(f"{https}/healthz", timeout=30)
        # plain HTTP on the TLS port: no API answer
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            with urllib.request.urlopen(f"http://127.0.0.1:{svc.port}/v1/records?limit=5",
                                        timeout=30) as resp:
                pytest.fail(f"plain HTTP was answered: {resp.status} {resp.read()[:200]!r}")
    finally:
        assert svc.stop() == 0


def test_no_tokens_refuses_a_non_loopback_listen(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "serve", "--listen", f"0.0.0.0:{free_port()}",
         "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert "server.listen: refusing to bind 0.0.0.0 without [[tokens]]" in proc.stderr
    assert not (tmp_path / "d").exists()
