"""No input costs more than linear time: the worst cases of every parser, per byte.

Each parser gets inputs built to make a backtracking engine work hard (repeated separators, an
unclosed quote or bracket at the end, long runs of what a field may hold). Their cost per byte
is bounded by ``FACTOR`` times the cost per byte of ordinary traffic (combined lines through a
compiled regex), measured in the same test on the same machine (a loaded machine slows both
alike). A linear parser stays within a few hundred times it even when it walks every byte in
Python (the query lexer, one token a byte); a backtracking one is far over on inputs of a few KiB:
quadratic work on 8 KiB is ~10⁴ times, the issue's custom format took 0.1 s for 27 bytes
(~10⁶ times) and a minute for 43.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from collector.parse import FORMATS, normalize_json, parse_lines
from collector.parse.errors import ParseError
from collector.query import QueryError, parse
from collector.sources.body import BodyError, read_body
from collector.sources.syslogmsg import Framer, SyslogError, parse_message
from masking.url import UrlScrubber, path_template, scrub_text

FACTOR = 1000.0  # a worst case may cost this many times ordinary traffic, per byte
LINE = ('203.0.113.9 - - [10/Oct/2026:13:55:36 +0000] "GET /shop/item/42?q=shoes&page=2 '
        'HTTP/1.1" 200 5123 "https://example.com/shop" "Mozilla/5.0 (X11; Linux x86_64) '
        'AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"')
CUSTOM_NGINX = "$msec $a $b $c $d $e $f $g $h $i Z"  # the issue's format
CUSTOM_MAIN = ("log_format main '$remote_addr - $remote_user [$time_local] \"$request\" "
               "$status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" "
               "\"$http_x_forwarded_for\"';")
CUSTOM_APACHE = 'LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"" x'


def _cost(fn: Callable[[], Any], size: int, tries: int = 3) -> float:
    """Seconds per byte of ``fn`` (best of ``tries``: load only ever adds time)."""
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best / max(size, 1)


@pytest.fixture(scope="module")
def baseline() -> float:
    """Seconds per byte of parsing ordinary combined lines (the linear reference)."""
    lines = [LINE] * 400
    size = sum(len(ln) + 1 for ln in lines)
    return _cost(lambda: list(parse_lines(lines, "combined")), size, tries=5)


def _drain(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            out = fn()
            return list(out) if hasattr(out, "__next__") else out
        except (ParseError, QueryError, SyslogError, BodyError, ValueError):
            return None
    return run


def check(baseline: float, what: str, fn: Callable[[], Any], size: int) -> None:
    per_byte = _cost(_drain(fn), size)
    assert per_byte <= FACTOR * baseline, (
        f"{what}: {per_byte * 1e6:.3f} µs/byte, more than {FACTOR:g}× ordinary traffic "
        f"({baseline * 1e6:.3f} µs/byte): not linear")


# repeated units that make a backtracking CLF/regex parser try every split
UNITS = ["- - [", "- - [ ", "[ ", "a ", '" ', "\\\"", ", ", ": ", "(1 s) ", '"a" ', "] \"",
         "1.2.3.4 ", "{", "\t", " "]
PREFIXES = ["", '203.0.113.9 - - [10/Oct/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 1 ',
            "203.0.113.9 - - [10/Oct/2026:13:55:36 +0000] ", "h 203.0.113.9 - - [x] \"",
            "2026/01/01 00:00:00 [error] 1#1: *1 x", "haproxy[1]: 203.0.113.9:1 [x] "]
SIZE = 8192  # bytes of one hostile line (cubic backtracking: ~1 s; linear: ~1 ms)


def hostile_lines(size: int = SIZE) -> list[str]:
    return [pre + unit * ((size - len(pre)) // len(unit)) for pre in PREFIXES for unit in UNITS]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_builtin_formats_are_linear(baseline: float, fmt: str) -> None:
    for line in hostile_lines():
        check(baseline, f"{fmt} on {line[:40]!r}…", lambda ln=line: parse_lines([ln], fmt),
              len(line))


def test_format_detection_is_linear(baseline: float) -> None:
    for line in hostile_lines():
        check(baseline, f"detection on {line[:40]!r}…", lambda ln=line: parse_lines([ln]),
              len(line))


def test_issue_custom_format_is_linear(baseline: float) -> None:
    """The issue's line: '1 ' + 24 spaces + 'Y' took 0.1 s (40 spaces: a minute)."""
    for spaces in (24, 40, 4000):
        line = "1 " + " " * spaces + "Y"
        check(baseline, f"custom format, {spaces} spaces",
              lambda ln=line: parse_lines([ln], CUSTOM_NGINX), len(line))


@pytest.mark.parametrize("spec", [CUSTOM_NGINX, CUSTOM_MAIN, CUSTOM_APACHE])
def test_custom_formats_are_linear(baseline: float, spec: str) -> None:
    for line in [*hostile_lines(), "1 " + " " * SIZE + "Y", '"' * SIZE, "1 " + "a " * 4000]:
        check(baseline, f"{spec[:20]} on {line[:40]!r}…",
              lambda ln=line: parse_lines([ln], spec), len(line))


def test_custom_format_still_parses() -> None:
    ((_, rec),) = list(parse_lines(["1791640536.5 a b c d e f g h i Z"], CUSTOM_NGINX))
    assert isinstance(rec, dict) and rec["time"] == 1791640536.5
    ((_, rec),) = list(parse_lines(
        ['203.0.113.9 - - [10/Oct/2026:13:55:36 +0000] "GET /a HTTP/1.1" 200 5 "-" "curl/8" "-"'],
        CUSTOM_MAIN))
    assert isinstance(rec, dict) and rec["target"] == "/a" and rec["user_agent"] == "curl/8"


def test_json_mapping_is_linear(baseline: float) -> None:
    deep = "[" * 1000 + "]" * 1000
    wide = "{" + ",".join(f'"k{i}":{{"a":{{"b":"{i}"}}}}' for i in range(3000)) + "}"
    bodies = [
        ("ndjson", b"\n".join([b'{"time":"2026-01-01T00:00:00Z","client":"1.2.3.4",'
                               b'"request":"' + b"\\\"" * 2000 + b'"}'] * 8)),
        ("ndjson", ('{"a":' + deep + "}").encode()),
        ("ndjson", wide.encode()),
        ("json", ("[" + ",".join([wide] * 4) + "]").encode()),
        ("ndjson", b'{"message":"' + ("- - [ " * 1500).encode() + b'"}'),
        ("ndjson", b"{" * SIZE),
    ]
    for kind, body in bodies:
        ctype = "application/x-ndjson" if kind == "ndjson" else "application/json"
        check(baseline, f"{kind} body {body[:30]!r}…",
              lambda b=body, c=ctype: read_body(b, c, None, 1 << 20), len(body))
    obj = {"time": "2026-01-01T00:00:00Z", "remote_addr": "1.2.3.4",
           "nested": {f"k{i}": {"v": "x" * 10} for i in range(3000)}}
    check(baseline, "normalize_json wide object", lambda: normalize_json(obj), 60_000)


def test_syslog_framing_is_linear(baseline: float) -> None:
    streams = [
        b"1" * SIZE,  # a length that never ends
        b"9999 " + b"x" * SIZE,  # an octet count larger than what comes
        b"<13>" + b" " * SIZE + b"\n",
        b"<13>1 " + b"[a=\"" * (SIZE // 4) + b"\n",  # structured data never closed
        b"<13>1 - - - - - " + b"[x a=\"\\\"\"]" * (SIZE // 12) + b"\n",
        b"\n" * SIZE,
        (b"<13>Oct 11 22:14:15 host app: " + LINE.encode() + b"\n") * 40,
    ]
    for data in streams:
        def frame(d: bytes = data) -> None:
            framer = Framer(64 * 1024)
            for i in range(0, len(d), 1500):  # as TCP reads deliver it
                for f in framer.feed(d[i:i + 1500]):
                    try:
                        parse_message(f)
                    except SyslogError:
                        pass
        check(baseline, f"syslog stream {data[:20]!r}…", frame, len(data))
        check(baseline, f"syslog datagram {data[:20]!r}…", lambda d=data: parse_message(d),
              len(data))


def test_query_language_is_linear(baseline: float) -> None:
    texts = [
        "(" * 5000, "not " * 2500, "status = 1 and " * 600, 'path ~ "' + "a" * 9000,
        '"' * 9999, "status in (" + "1," * 4900, "| count by " + "path, " * 1600,
        "a" * 9999, "status > 1e309 or " * 500, "since 2026-01-01T00:00:00Z " * 350,
        'path ~ "(a+)+$" and path = "' + "a" * 5000 + '"',
    ]
    for text in texts:
        check(baseline, f"query {text[:30]!r}…", lambda t=text: parse(t), len(text))


def test_url_scrubbing_is_linear(baseline: float) -> None:
    scrubber = UrlScrubber()
    urls = [
        "/" + "a/" * 4000, "/?" + "a=b&" * 2000, "/?" + "=" * SIZE, "/?" + "&" * SIZE,
        "/" + "%" * SIZE, "/" + "%2" * 4000, "/" + "a@b." * 2000, "/" + "1-" * 4000,
        "/" + "A" * SIZE + "=", "/" + "eyJ" + "a." * 4000, "/" + "0" * SIZE,
        "https://" + "a." * 4000, "/?x=" + "a%20" * 2000, "/" + "a;b=" * 2000,
    ]
    for url in urls:
        check(baseline, f"target {url[:30]!r}…", lambda u=url: scrubber.target(u), len(url))
        check(baseline, f"referrer {url[:30]!r}…", lambda u=url: scrubber.referrer(u),
              len(url))
        check(baseline, f"template {url[:30]!r}…", lambda u=url: path_template(u), len(url))
        check(baseline, f"scrub_text {url[:30]!r}…", lambda u=url: scrub_text(u), len(url))
