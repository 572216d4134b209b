"""Issue 16, reproductions 1, 6 and 8 on a real `lethelog serve` without tokens.

1. a 43-byte line in a custom ``?format=`` froze the event loop for a minute (``/healthz`` too);
6. ``status > 1e309`` answered 500 and was not audited;
8. without tokens any Host and Origin were served (DNS rebinding, cross-site posts).
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service import ServiceProcess

CUSTOM = "$msec $a $b $c $d $e $f $g $h $i Z"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("hostile")
    service = ServiceProcess(root / "lethelog-data", root / "service.log",
                             env={"LETHELOG_SESSIONS_IDLE_TIMEOUT": "1d"})
    yield service
    service.stop()


def call(url: str, path: str, data: bytes | None = None, method: str | None = None,
         headers: dict[str, str] | None = None, timeout: float = 30.0
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def now_clf() -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())


# ------------------------------------------------------------------ 1: no request freezes it


def test_custom_format_line_does_not_freeze_the_service(svc: ServiceProcess) -> None:
    fmt = urllib.parse.quote(CUSTOM, safe="")
    body = ("1 " + " " * 40 + "Y\n").encode()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        posting = pool.submit(call, svc.url, f"/v1/logs?format={fmt}", body, "POST",
                              {"Content-Type": "text/plain"}, 120.0)
        time.sleep(0.5)
        # before the fix the loop was stuck in the regex for ~a minute: healthz timed out
        status, _, _ = call(svc.url, "/healthz", timeout=10.0)
        assert status == 200
        status, _, answer = posting.result(timeout=120)
    assert status == 200, answer
    doc = json.loads(answer)
    assert doc["accepted"] == 0 and doc["rejected"] == 1
    assert "does not match the custom format" in doc["errors"][0]["error"]


def test_custom_format_still_ingests(svc: ServiceProcess) -> None:
    fmt = urllib.parse.quote(CUSTOM, safe="")
    body = f"{time.time():.3f} a b c d e f g h i Z\n".encode()
    status, _, answer = call(svc.url, f"/v1/logs?format={fmt}", body, "POST",
                             {"Content-Type": "text/plain"})
    doc = json.loads(answer)
    assert status == 200 and doc["accepted"] == 1, doc


# ------------------------------------------------------------------ 6: query errors are 400


def test_query_overflow_is_400_and_audited(svc: ServiceProcess) -> None:
    q = urllib.parse.urlencode({"q": "status > 1e309"})
    status, _, answer = call(svc.url, f"/v1/query?{q}")
    assert status == 400, answer
    doc = json.loads(answer)
    assert "number out of range" in doc["error"] and doc["position"] == 9
    audit = [json.loads(ln) for ln in
             (svc.log_path.parent / "lethelog-data" / "audit.log").read_text().splitlines()]
    assert any(e.get("query") == "status > 1e309" and e.get("outcome") == "rejected"
               for e in audit)


@pytest.mark.parametrize("q", ["request_time > 1e309", "status = -1e999", "bytes < 9e99999"])
def test_other_overflowing_numbers_are_400(svc: ServiceProcess, q: str) -> None:
    status, _, answer = call(svc.url, "/v1/query?" + urllib.parse.urlencode({"q": q}))
    assert status == 400, answer


# ------------------------------------------------------------------ 8: browsers kept out


def test_dns_rebinding_host_refused(svc: ServiceProcess) -> None:
    status, _, answer = call(svc.url, "/v1/records", headers={"Host": "evil.example"})
    assert status == 421, answer
    assert b"loopback host" in answer
    for host in (f"127.0.0.1:{svc.port}", f"localhost:{svc.port}", "[::1]:1", "127.0.0.2"):
        status, _, _ = call(svc.url, "/v1/records?limit=1", headers={"Host": host})
        assert status == 200, host


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1.evil.example",
                                    "null", "http://localhost.evil.example:8780"])
def test_cross_site_origin_refused(svc: ServiceProcess, origin: str) -> None:
    line = f'198.51.100.7 - - [{now_clf()}] "GET /csrf HTTP/1.1" 200 5 "-" "x"\n'
    status, _, answer = call(svc.url, "/v1/logs", line.encode(), "POST",
                             {"Content-Type": "application/x-ndjson", "Origin": origin})
    assert status == 403, answer
    status, _, _ = call(svc.url, "/v1/admin/erase", b'{"session":"x"}', "POST",
                        {"Content-Type": "application/json", "Origin": origin})
    assert status == 403
    status, _, _ = call(svc.url, "/v1/records", headers={"Origin": origin})
    assert status == 403


def test_browser_simple_post_refused_but_curl_served(svc: ServiceProcess) -> None:
    line = f'198.51.100.7 - - [{now_clf()}] "GET /simple HTTP/1.1" 200 5 "-" "x"\n'.encode()
    # a same-origin page's form post (text/plain is "simple": no preflight) is refused ...
    for headers in ({"Origin": f"http://127.0.0.1:{svc.port}"},
                    {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors"},
                    {"Sec-Fetch-Site": "cross-site"}):
        status, _, answer = call(svc.url, "/v1/logs", line, "POST",
                                 {"Content-Type": "text/plain", **headers})
        assert status == 403, (headers, answer)
    # ... shippers and curl (no Origin, no Sec-Fetch-*) are served as before
    status, _, answer = call(svc.url, "/v1/logs", line, "POST", {"Content-Type": "text/plain"})
    assert status == 200 and json.loads(answer)["accepted"] == 1
    # a loopback page may send a non-simple type (it went through CORS rules)
    rec: dict[str, Any] = {"time": time.time(), "client": "198.51.100.8", "method": "GET",
                           "target": "/page", "status": 200}
    status, _, _ = call(svc.url, "/v1/logs", json.dumps(rec).encode(), "POST",
                        {"Content-Type": "application/x-ndjson",
                         "Origin": f"http://localhost:{svc.port}"})
    assert status == 200


def test_guard_only_without_tokens(tmp_path: Path) -> None:
    token = "lethelog_test-token-for-guard-check-000000000000"
    import hashlib
    sha = hashlib.sha256(token.encode()).hexdigest()
    config = tmp_path / "lethelog.toml"
    config.write_text(f'[[tokens]]\nname = "sre"\nroles = ["sre"]\nsha256 = "{sha}"\n')
    service = ServiceProcess(tmp_path / "lethelog-data", tmp_path / "service.log",
                             args=["--config", str(config)])
    try:
        status, _, _ = call(service.url, "/v1/records?limit=1",
                            headers={"Host": "logs.example", "Authorization": f"Bearer {token}"})
        assert status == 200
    finally:
        service.stop()


def test_nul_characters_are_a_clear_error_not_a_500(svc: ServiceProcess) -> None:
    """Found by tests/test_fuzz.py: an embedded NUL reached socket.inet_pton (ValueError)."""
    t = now_clf()
    body = (f'2001:db8::5\x00 - - [{t}] "GET /a\x002001:db8::7 HTTP/1.1" 200 5 "-" "x"\n'
            f'198.51.100.9 - - [{t}] "GET /b/2001:db8::8\x00 HTTP/1.1" 200 5 "-" "x"\n').encode()
    status, _, answer = call(svc.url, "/v1/logs", body, "POST", {"Content-Type": "text/plain"})
    assert status == 200, answer
    q = urllib.parse.urlencode({"q": "\x002026-12-01T00:00:00Z | limit 5"})
    status, _, answer = call(svc.url, f"/v1/query?{q}")
    assert status == 400, answer


@pytest.mark.parametrize("route", ["/dashboard/api/summary", "/v1/aggregates", "/v1/anomalies"])
def test_out_of_range_times_are_400(svc: ServiceProcess, route: str) -> None:
    """Found by tests/test_fuzz.py: start=99999999999999999999 overflowed into a 500."""
    for value in ("99999999999999999999", "-99999999999999999999"):
        status, _, answer = call(svc.url, f"{route}?start={value}")
        assert status == 400, (route, answer[:200])


@pytest.mark.parametrize("route", ["/v1/records?limit=", "/v1/anomalies?limit=",
                                   "/v1/aggregates?limit=", "/v1/admin/sessions?limit=",
                                   "/v1/admin/audit?limit="])
def test_unicode_digits_in_limits_are_400(svc: ServiceProcess, route: str) -> None:
    """Found by tests/test_fuzz.py: '¹' passes str.isdigit() but not int(): was a 500."""
    status, _, answer = call(svc.url, route + urllib.parse.quote("¹"))
    assert status == 400, (route, answer[:200])


def test_content_type_error_repeats_no_address(svc: ServiceProcess) -> None:
    """Found by tests/test_fuzz.py: the refused Content-Type was quoted back verbatim."""
    status, _, answer = call(svc.url, "/v1/logs", b"x\n", "POST",
                             {"Content-Type": "203.0.113.77"})
    assert status == 415 and b"203.0.113" not in answer, answer
    status, _, answer = call(svc.url, "/v1/logs", b"x\n", "POST",
                             {"Content-Type": "application/xml"})
    assert status == 415 and b"'application/xml'" in answer, answer


def test_body_that_is_not_its_content_encoding_is_400(svc: ServiceProcess) -> None:
    """Found by tests/test_fuzz.py: 'Content-Encoding: gzip' on a plain body was a 500."""
    for encoding in ("gzip", "deflate", "br"):
        status, _, answer = call(svc.url, "/v1/logs", b"not compressed\n", "POST",
                                 {"Content-Type": "text/plain", "Content-Encoding": encoding})
        assert status in (400, 415), (encoding, status, answer[:200])
    # every route that reads a body (found at 20,000 examples: /v1/admin/erase)
    for path in ("/v1/admin/erase", "/v1/admin/export"):
        status, _, answer = call(svc.url, path, b'{"session":"x"}', "POST",
                                 {"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert status == 400, (path, status, answer[:200])
