"""Fuzzing every entry point that takes client bytes (hypothesis).

Two levels:

* the parsers themselves, in-process (fast): request bodies of each content type and format
  (built-in, detected, custom nginx/Apache formats), gzip, JSON mapping, syslog framing and
  messages through the syslog pipeline, the query language, URL scrubbing, Host/Origin checks;
* a real `lethelog serve` over HTTP: bodies, ``?format=``, query strings of every read route and
  odd headers.

Checked for every input: only the documented errors (no crash, no 500), every answer within
``DEADLINE`` (hypothesis' per-example deadline: no unbounded time), and no raw client address in
any error text (inputs carry ``RAW_V4``/``RAW_V6`` in client fields, lines and bodies).

Examples per target: ``LETHELOG_FUZZ_EXAMPLES`` (CI budget: 60); the long run (≥ 100,000 inputs a
target) and its figures are in bench/RESULTS.md ("Fuzzing").
"""

from __future__ import annotations

import gzip
import http.client
import os
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.browser import loopback_name, loopback_origin
from collector.parse import FORMATS, ParseError, normalize_json, parse_lines
from collector.query import QueryError, parse
from collector.sources.body import BodyError, read_body
from collector.sources.syslogmsg import Framer, SyslogError, parse_message
from masking.url import UrlScrubber, path_template, scrub_text
from tests.service import ServiceProcess

EXAMPLES = int(os.environ.get("LETHELOG_FUZZ_EXAMPLES", "60"))
DEADLINE = timedelta(seconds=5)  # generous on 2 loaded cores; backtracking costs minutes
RAW_V4, RAW_V6 = "203.0.113.77", "2001:db8:77::9"
FUZZ = settings(max_examples=EXAMPLES, deadline=DEADLINE, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# pieces that real and hostile lines are made of
PIECES = ['"', "\\", "[", "]", " ", "-", ",", ":", "{", "}", "\t", "\n", "\r", "\x00", "%",
          "%2", "=", "&", "?", "/", "@", ".", "é", "\u2028", "\U0001f600", RAW_V4, RAW_V6,
          "10/Oct/2026:13:55:36 +0000", "2026-12-02T10:00:00Z", "GET / HTTP/1.1", "200",
          "1791640536.5", "- - [", '" 200 5 "', "(1 s)", "haproxy[1]:", ", client: ",
          "#Fields: date time c-ip cs-method cs-uri-stem sc-status", "<13>", "1 ", "9999 "]
piece_text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)),
                      max_size=40).map("".join)
CLF = (f'{RAW_V4} - - [10/Oct/2026:13:55:36 +0000] "GET /a?b=c HTTP/1.1" 200 5 "-" '
       '"Mozilla/5.0"')


def mutate(base: str) -> st.SearchStrategy[str]:
    """``base`` with a random slice replaced by fuzz (keeps most of the structure)."""
    return st.tuples(st.integers(0, len(base)), st.integers(0, 40), piece_text).map(
        lambda t: base[:t[0]] + t[2] + base[t[0] + t[1]:])


lines = st.one_of(piece_text, mutate(CLF))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | piece_text
    | st.sampled_from([RAW_V4, RAW_V6, "2026-12-02T10:00:00Z", 1791640536, -1e309, 2**70]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["time", "client", "remote_addr", "source.ip", "message", "request",
                         "status", "bytes", "user_agent", "time_iso8601", "msec", "target",
                         "http_x_forwarded_for", "host", "a", ""]) | piece_text, kids,
        max_size=6), max_leaves=20)
FORMAT_NAMES = [*sorted(FORMATS), "$remote_addr [$time_local] \"$request\" $status",
                "$msec $a $b $c Z", '%h %l %u %t "%r" %>s %b', "log_format x '$bogus';", "%",
                "$"]


def no_raw(text: str) -> None:
    assert RAW_V4 not in text and RAW_V6 not in text, text


def _drain(items: Iterator[Any]) -> None:
    for _, item in items:
        if isinstance(item, ParseError):
            no_raw(str(item))


# ------------------------------------------------------------------ parsers, in-process


@FUZZ
@given(body=st.lists(lines, max_size=12).map("\n".join), fmt=st.sampled_from([*FORMAT_NAMES, None]))
def test_fuzz_text_bodies(body: str, fmt: str | None) -> None:
    try:
        _drain(read_body(body.encode("utf-8", "surrogatepass"), "text/plain", fmt, 64 * 1024))
    except BodyError as exc:
        no_raw(str(exc))


@FUZZ
@given(records=st.lists(json_values, max_size=8), ctype=st.sampled_from(
    ["application/x-ndjson", "application/json"]), raw=st.binary(max_size=64))
def test_fuzz_json_bodies(records: list[Any], ctype: str, raw: bytes) -> None:
    try:
        if ctype == "application/json":
            body = orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY) + raw[:4]
        else:
            body = b"\n".join(orjson.dumps(r) for r in records) + b"\n" + raw
    except (TypeError, orjson.JSONEncodeError):
        return  # not JSON-serialisable (nan, huge int): covered by raw bytes below
    try:
        _drain(read_body(body, ctype, None, 64 * 1024))
    except BodyError as exc:
        no_raw(str(exc))
    for value in records:
        if isinstance(value, dict):
            try:
                normalize_json(value)
            except ParseError as exc:
                no_raw(str(exc))


@FUZZ
@given(data=st.binary(max_size=512) | lines.map(str.encode))
def test_fuzz_raw_bytes_every_type(data: bytes) -> None:
    for ctype in ("text/plain", "application/x-ndjson", "application/json"):
        try:
            _drain(read_body(data, ctype, None, 1024))
        except BodyError as exc:
            no_raw(str(exc))
    try:
        from collector.sources.body import gunzip
        gunzip(gzip.compress(data)[: len(data) // 2 + 10], 1 << 20)
    except BodyError as exc:
        no_raw(str(exc))


@FUZZ
@given(stream=st.lists(st.one_of(st.binary(max_size=64), lines.map(str.encode),
                                 st.sampled_from([b"<13>", b"<191>1 ", b"<999>", b"12 ",
                                                  b"99999999 ", b"\n", b"[a=\"", b"]"])),
                       max_size=30).map(b"".join),
       cut=st.integers(1, 64))
def test_fuzz_syslog_frames(stream: bytes, cut: int) -> None:
    framer = Framer(1024)
    frames: list[bytes] = []
    try:
        for i in range(0, len(stream), cut):
            frames.extend(framer.feed(stream[i:i + cut]))
        last = framer.finish()
        if last:
            frames.append(last)
    except SyslogError as exc:
        no_raw(str(exc))
    bodies = []
    for frame in frames:
        try:
            bodies.append(parse_message(frame).body)
        except SyslogError as exc:
            no_raw(str(exc))
    _drain(parse_lines(bodies, "combined"))


@FUZZ
@given(text=st.one_of(piece_text, mutate("status >= 500 and path ~ \"/a\" | count by path"),
                      mutate(f'client = "{RAW_V4}" since 2026-12-01T00:00:00Z | limit 5')))
def test_fuzz_query_language(text: str) -> None:
    try:
        parse(text)
    except QueryError as exc:
        assert exc.to_json(text)["error"]


@FUZZ
@given(url=st.one_of(piece_text, mutate(f"/a/b?token=abc&email=x@y.z&ip={RAW_V4}#f"),
                     mutate(f"https://{RAW_V4}:8080/p/{RAW_V6}?q=1")))
def test_fuzz_url_scrubbing(url: str) -> None:
    scrubber = UrlScrubber()
    for out in (scrubber.target(url)[0], scrubber.referrer(url), path_template(url),
                scrub_text(url)):
        assert out is None or isinstance(out, str)


@FUZZ
@given(host=st.one_of(piece_text, st.sampled_from(["localhost", "127.0.0.1:1", "[::1]:2",
                                                   "evil.example", "localhost.evil", "[::1",
                                                   "127.0.0.1.evil", "0x7f.1"])))
def test_fuzz_host_and_origin_checks(host: str) -> None:
    assert isinstance(loopback_name(host), bool)
    assert isinstance(loopback_origin("http://" + host), bool)
    if host in ("evil.example", "localhost.evil", "127.0.0.1.evil", "0x7f.1"):
        assert not loopback_name(host) and not loopback_origin("http://" + host)


# ------------------------------------------------------------------ a real service over HTTP


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    service = ServiceProcess(root / "lethelog-data", root / "service.log", env={
        "LETHELOG_SESSIONS_IDLE_TIMEOUT": "1h", "LETHELOG_INGEST_MAX_BODY_SIZE": "256KiB"})
    yield service
    service.stop()
    log = (root / "service.log").read_text()
    assert "uncaught_exception" not in log and "Error handling request" not in log


class Http:
    """One keep-alive connection (reopened after the service closes it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return resp.status, data
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def client(svc: ServiceProcess) -> Http:
    return Http(svc.port)


def check_answer(status: int, data: bytes) -> None:
    assert status != 500 and status < 600, (status, data[:300])
    no_raw(data.decode("utf-8", "replace")) if status >= 400 else None


@FUZZ
@given(body=st.lists(lines, max_size=10).map("\n".join),
       fmt=st.sampled_from([*FORMAT_NAMES, None]),
       ctype=st.sampled_from(["text/plain", "application/x-ndjson", "application/json",
                              "text/csv", "", "application/octet-stream; charset=latin1"]),
       gz=st.booleans())
def test_fuzz_http_logs(client: Http, body: str, fmt: str | None, ctype: str, gz: bool) -> None:
    data = body.encode("utf-8", "surrogatepass")
    headers = {"Content-Type": ctype} if ctype else {}
    if gz:
        data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    path = "/v1/logs" + (f"?format={urllib.parse.quote(fmt, safe='')}" if fmt else "")
    status, answer = client.request("POST", path, data, headers)
    check_answer(status, answer)
    if status == 200:
        for err in orjson.loads(answer)["errors"]:
            no_raw(err["error"])


@FUZZ
@given(route=st.sampled_from(["/v1/query?q=", "/v1/query?format=csv&q=", "/v1/records?limit=",
                              "/v1/records?since=", "/v1/aggregates?dims=", "/v1/aggregates?start=",
                              "/v1/anomalies?status=", "/v1/admin/sessions?limit=",
                              "/v1/admin/audit?limit=", "/dashboard/api/summary?start=",
                              "/v1/query?source=aggregates&q="]),
       value=st.one_of(piece_text, mutate("status >= 500 | count by path"),
                       st.sampled_from(["1e309", "-1", "99999999999999999999", "nan", "inf",
                                        "(" * 40, "status > 1e309"])))
def test_fuzz_http_query_strings(client: Http, route: str, value: str) -> None:
    quoted = urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")
    status, answer = client.request("GET", route + quoted)
    assert status != 500, (route, value, answer[:300])


@FUZZ
@given(headers=st.dictionaries(
    st.sampled_from(["Host", "Origin", "Authorization", "Content-Type", "Content-Encoding",
                     "Content-Length", "Sec-Fetch-Site", "Transfer-Encoding", "Cookie",
                     "X-Forwarded-For", "Accept-Encoding"]),
    st.one_of(piece_text.map(lambda s: "".join(c for c in s if 32 <= ord(c) < 127)),
              st.sampled_from(["127.0.0.1", "evil.example", "gzip", "Bearer x", "chunked",
                               "http://localhost", "null", "-1", "text/plain"])),
    max_size=5),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS"]),
    path=st.sampled_from(["/v1/logs", "/v1/records", "/healthz", "/v1/admin/erase",
                          "/dashboard", "/metrics", "/nope"]))
def test_fuzz_http_headers(client: Http, headers: dict[str, str], method: str,
                           path: str) -> None:
    body = f"{CLF}\n".encode() if method in ("POST", "PUT") else None
    if "Content-Length" in headers or "Transfer-Encoding" in headers:
        headers = {k: v for k, v in headers.items()
                   if k not in ("Content-Length", "Transfer-Encoding")}
    try:
        status, answer = client.request(method, path, body, headers)
    except (http.client.HTTPException, ConnectionError):
        return  # the service may hang up on a malformed request: not a crash
    check_answer(status, answer)


def test_service_still_healthy_after_fuzzing(client: Http) -> None:
    status, data = client.request("GET", "/healthz")
    assert status == 200
    assert orjson.loads(data)["status"] in ("ok", "degraded")

