"""Custom formats: real nginx writes lines with a user's log_format; they parse field for field."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.parse import ParseError, compile_format, normalize_json, parse_lines
from masking import IPMasker

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

LOG_FORMAT = (
    "log_format lethelog '$remote_addr - $remote_user [$time_iso8601] \"$request\" '\n"
    "                    '$status $body_bytes_sent $request_time \"$http_referer\" '\n"
    "                    '\"$http_user_agent\" \"$http_x_forwarded_for\" $host';"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    port = free_port()
    for d in ("logs", "tmp", "html"):
        (tmp_path / d).mkdir()
    (tmp_path / "html" / "index.html").write_text("hello\n")
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
pid {tmp_path}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    {LOG_FORMAT}
    access_log {tmp_path}/logs/access.log lethelog;
    client_body_temp_path {tmp_path}/tmp/body;
    proxy_temp_path {tmp_path}/tmp/proxy;
    fastcgi_temp_path {tmp_path}/tmp/fastcgi;
    uwsgi_temp_path {tmp_path}/tmp/uwsgi;
    scgi_temp_path {tmp_path}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name site.test;
        root {tmp_path}/html;
        location /slow {{ return 204; }}
    }}
}}
"""
    )
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off; error_log stderr;"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"nginx is installed but did not start: {err.strip()[:300]}")
                time.sleep(0.05)
        yield port, tmp_path / "logs" / "access.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


REQUESTS = [
    # (path, headers, expected status)
    ("/", {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
           "Referer": "https://ref.example/page?q=1",
           "X-Forwarded-For": "203.0.113.7, 198.51.100.23"}, 200),
    ("/missing/42?token=abc123&x=1", {"User-Agent": "curl/8.0 \"quoted\"",
                                      "X-Forwarded-For": "2001:db8::99"}, 404),
    ("/slow", {"User-Agent": "Ünïcode-Agent/1.0", "Referer": "-"}, 204),
    ("/index.html", {}, 200),
]


def test_nginx_log_format_round_trip(nginx: tuple[int, Path]) -> None:
    port, log = nginx
    sent_at = time.time()
    for path, headers, _ in REQUESTS:
        # http.client sends header values as latin-1: pass UTF-8 bytes through unchanged.
        wire = {k: v.encode().decode("latin-1") for k, v in headers.items()}
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=wire)
        try:
            urllib.request.urlopen(req, timeout=5).read()
        except urllib.error.HTTPError as err:
            err.read()
    deadline = time.monotonic() + 5
    while (not log.exists() or log.read_text().count("\n") < len(REQUESTS)) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = log.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    assert len(lines) == len(REQUESTS), lines

    parser = compile_format(LOG_FORMAT)
    records = list(parse_lines(lines, parser))
    assert len(records) == len(REQUESTS)
    # The same lines through the format given as a plain string.
    assert [r for _, r in parse_lines(lines, LOG_FORMAT)] == [r for _, r in records]
    masker = IPMasker(trusted_proxies=["127.0.0.0/8"])
    for (number, rec), (path, headers, status) in zip(records, REQUESTS, strict=True):
        assert not isinstance(rec, ParseError), (number, rec)
        assert rec["client"] == "127.0.0.1"
        assert abs(rec["time"] - sent_at) < 10
        assert rec["method"] == "GET"
        assert rec["target"] == path
        assert rec["protocol"] == "HTTP/1.1"
        assert rec["status"] == status
        assert isinstance(rec["bytes"], int)
        assert isinstance(rec["request_time"], float) and rec["request_time"] >= 0
        assert rec["host"] == "127.0.0.1" or rec["host"] == "site.test"
        ref = headers.get("Referer")
        assert rec["referrer"] == (None if ref in (None, "-") else ref)
        if "User-Agent" in headers:
            assert rec["user_agent"] == headers["User-Agent"]  # \x22 and UTF-8 \xHH undone
        else:
            assert rec["user_agent"].startswith("Python-urllib/")
        assert rec["forwarded_for"] == headers.get("X-Forwarded-For")
        client = masker.client(rec["client"], rec["forwarded_for"])
        if "X-Forwarded-For" in headers:
            expected = headers["X-Forwarded-For"].split(",")[-1].strip()
            assert client.ip == expected
    assert records[1][1]["bytes"] > 0  # type: ignore[index]
    assert records[0][1]["bytes"] == 6  # type: ignore[index]  # "hello\n"


def test_compile_nginx_and_apache_formats() -> None:
    p = compile_format('$remote_addr - $remote_user [$time_local] "$request" $status '
                       '$body_bytes_sent "$http_referer" "$http_user_agent" $request_time')
    (_, rec), = parse_lines(['10.1.2.3 - bob [10/Oct/2000:13:55:36 -0700] "GET /a?b=1 HTTP/1.0" '
                             '200 2326 "http://r.example/" "UA/1.0" 0.250'], p)
    assert isinstance(rec, dict)
    assert rec["time"] == 971211336.0
    assert (rec["client"], rec["method"], rec["target"], rec["status"], rec["bytes"]) == \
        ("10.1.2.3", "GET", "/a?b=1", 200, 2326)
    assert rec["referrer"] == "http://r.example/" and rec["request_time"] == 0.25

    a = compile_format('LogFormat "%v %h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" '
                       '\\"%{User-Agent}i\\" %D" vhost_timed')
    (_, rec), = parse_lines(['www.x.test [2001:db8::1]:4433 - - [10/Oct/2000:13:55:36 +0000] '
                             '"POST /f HTTP/1.1" 201 12 "-" "ua" 1500'], a)
    assert isinstance(rec, dict)
    assert rec["host"] == "www.x.test" and rec["status"] == 201 and rec["bytes"] == 12
    assert rec["request_time"] == pytest.approx(0.0015) and rec["referrer"] is None
    assert IPMasker().client(rec["client"]).masked == "2001:db8::"

    j = compile_format("""log_format j escape=json '{"ts":"$time_iso8601","a":"$remote_addr",'
        '"r":"$request","s":$status,"ua":"$http_user_agent"}';""")
    (_, rec), = parse_lines(['{"ts":"2024-05-01T10:00:00+02:00","a":"192.0.2.1",'
                             '"r":"GET /x HTTP/2.0","s":200,"ua":"UA"}'], j)
    assert isinstance(rec, dict)
    assert rec["time"] == 1714550400.0 and rec["client"] == "192.0.2.1"
    assert rec["target"] == "/x" and rec["status"] == 200 and rec["user_agent"] == "UA"
    with pytest.raises(ValueError):
        compile_format("no variables at all")


def test_normalize_json_shippers() -> None:
    ecs = normalize_json({"@timestamp": "2024-01-02T03:04:05Z", "source": {"ip": "192.0.2.5"},
                          "http": {"request": {"method": "GET", "referrer": "https://a.b/"},
                                   "response": {"status_code": 302, "body": {"bytes": 10}}},
                          "url": {"path": "/p", "query": "x=1"},
                          "user_agent": {"original": "UA"}})
    assert (ecs["client"], ecs["method"], ecs["target"], ecs["status"], ecs["bytes"]) == \
        ("192.0.2.5", "GET", "/p?x=1", 302, 10)
    assert ecs["time"] == 1704164645.0 and ecs["referrer"] == "https://a.b/"
    dotted = normalize_json({"@timestamp": 1704164645000, "source.ip": "192.0.2.5",
                             "url.original": "/q", "http.response.status_code": 200})
    assert dotted["target"] == "/q" and dotted["time"] == 1704164645.0
    vector = normalize_json({"client": "192.0.2.9", "request": "GET /v HTTP/1.1", "status": 200,
                             "size": 5, "agent": "A", "referer": "-",
                             "timestamp": "2024-01-02T03:04:05Z"})
    assert (vector["method"], vector["target"], vector["bytes"], vector["referrer"]) == \
        ("GET", "/v", 5, None)
    fluent = normalize_json({"remote": "192.0.2.9", "host": "-", "user": "-", "method": "GET",
                             "path": "/f", "code": "404", "size": "0", "referer": "",
                             "agent": "A", "time": "02/Jan/2024:03:04:05 +0000"})
    assert fluent["status"] == 404 and fluent["host"] is None and fluent["time"] == 1704164645.0
    nginx = normalize_json({"remote_addr": "10.0.0.1", "time_local": "02/Jan/2024:03:04:05 +0100",
                            "request": "GET /n HTTP/1.1", "status": "200",
                            "body_bytes_sent": "-", "http_x_forwarded_for": "192.0.2.1",
                            "http_cookie": "theme=dark; PHPSESSID=abc123", "http_dnt": "1",
                            "http_accept_language": "de"})
    assert nginx["time"] == 1704161045.0 and nginx["bytes"] is None
    assert nginx["forwarded_for"] == "192.0.2.1" and nginx["session_hint"] == "abc123"
    assert nginx["dnt"] is True and nginx["gpc"] is None and nginx["accept_language"] == "de"
    beat = normalize_json({"message": '192.0.2.1 - - [02/Jan/2024:03:04:05 +0000] "GET / HTTP/1.1"'
                                      ' 200 1 "-" "UA"', "agent": {"type": "filebeat"}})
    assert beat["client"] == "192.0.2.1" and beat["user_agent"] == "UA"
    for bad, reason in (({"remote_addr": "1.2.3.4"}, "missing timestamp"),
                        ({"remote_addr": "1.2.3.4", "time": "yesterday"}, "time"),
                        ({"remote_addr": "300.1.1.1", "time": 1.0}, "not an IP address")):
        with pytest.raises(ParseError) as err:
            normalize_json(bad)
        assert reason in str(err.value) and "1.2.3.4" not in str(err.value)
