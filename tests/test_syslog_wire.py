"""Syslog on the wire: RFC 3164/5424 headers and RFC 6587 framing (pure code)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.sources.syslogmsg import Framer, SyslogError, parse_message

LINE = ('85.181.35.98 - - [2026-11-27T10:00:00+01:00] "GET /a?x=1 HTTP/1.1" 200 5 0.003 "-" '
        '"Mozilla/5.0" shop.example "abc" "de"')


@pytest.mark.parametrize(("frame", "host", "app", "ts"), [
    # nginx: access_log syslog:server=...,tag=nginx
    (f"<190>Nov 27 10:00:00 web1 nginx: {LINE}", "web1", "nginx", "Nov 27 10:00:00"),
    # nginx with nohostname, single-digit day
    (f"<190>Nov  7 10:00:00 nginx: {LINE}", None, "nginx", "Nov  7 10:00:00"),
    # rsyslog high-precision timestamp, tag with pid
    (f"<190>2026-11-27T10:00:00.123+01:00 web1 nginx[123]: {LINE}", "web1", "nginx",
     "2026-11-27T10:00:00.123+01:00"),
    # no timestamp, tag only (logger --rfc3164 to a local socket style)
    (f"<13>apache: {LINE}", None, "apache", None),
    # bare body
    (f"<13>{LINE}", None, None, None),
    # RFC 5424, structured data with an escaped ] and a BOM (logger --rfc5424)
    ('<165>1 2026-11-27T10:00:00.003Z web1 nginx 8710 - [timeQuality tzKnown="1" '
     'x="a\\]b"][origin ip="10.1.1.1"] \ufeff' + LINE, "web1", "nginx",
     "2026-11-27T10:00:00.003Z"),
    (f"<14>1 - - - - - - {LINE}", None, None, None),
])
def test_headers(frame: str, host: str | None, app: str | None, ts: str | None) -> None:
    msg = parse_message(frame.encode())
    assert msg.body == LINE
    assert (msg.hostname, msg.app, msg.timestamp) == (host, app, ts)


def test_priority_split() -> None:
    msg = parse_message(f"<190>Nov 27 10:00:00 h nginx: {LINE}".encode())
    assert (msg.facility, msg.severity) == (23, 6)  # local7.info


def test_5424_without_message() -> None:
    assert parse_message(b"<14>1 2026-11-27T10:00:00Z h app - - -").body == ""


@pytest.mark.parametrize(("frame", "reason"), [
    (LINE, "does not start with <PRI>"),
    (f"<999>{LINE}", "out of range"),
    ("<14>1 2026-11-27T10:00:00Z h app", "incomplete"),
    ("<14>1 2026-11-27T10:00:00Z h app - - [a b=\"c\" 85.181.35.98 GET /", "not closed"),
    (f"<14>1 2026-11-27T10:00:00Z h app - - x {LINE}", "structured data"),
])
def test_errors_name_the_reason_not_the_message(frame: str, reason: str) -> None:
    with pytest.raises(SyslogError) as err:
        parse_message(frame.encode())
    assert reason in str(err.value)
    assert "85.181" not in str(err.value)


def octet(msg: bytes) -> bytes:
    return b"%d " % len(msg) + msg


def test_framer_octet_counting_and_lf_mixed() -> None:
    a, b, c = b"<13>a: one", b"<13>b: two\nstill two", b"<13>c: three"
    stream = octet(a) + octet(b) + c + b"\n" + octet(a)
    f = Framer(1024)
    assert f.feed(stream) == [a, b, c, a]
    assert f.finish() is None


def test_framer_oversized_frames_are_skipped_whole() -> None:
    big = b"<13>x: " + b"y" * 5000
    f = Framer(1024)
    out = f.feed(octet(big)[:3000]) + f.feed(octet(big)[3000:] + octet(b"<13>ok: 1"))
    out += f.feed(big + b"\n<13>ok: 2\n")
    assert out == [b"<13>ok: 1", b"<13>ok: 2"]
    assert f.oversized == 2


def test_framer_end_of_stream() -> None:
    f = Framer(1024)
    assert f.feed(b"<13>a: last without newline") == []
    assert f.finish() == b"<13>a: last without newline"
    g = Framer(1024)
    assert g.feed(b"40 <13>a: truncated") == []
    assert g.finish() is None and g.truncated == 1


def test_framer_bad_length_breaks_the_stream() -> None:
    with pytest.raises(SyslogError, match="not a number"):
        Framer(1024).feed(b"12x4 <13>a: b")
    with pytest.raises(SyslogError, match="not a number"):
        Framer(1024).feed(b"1234567890123 <13>a")


messages = st.lists(
    st.builds(lambda body: b"<13>app: " + body.encode(),
              st.text(st.characters(blacklist_characters="\n\r\x00",
                                    blacklist_categories=("Cs",)), max_size=60)),
    min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(messages, st.lists(st.booleans(), min_size=20, max_size=20), st.data())
def test_framer_any_chunking_gives_the_same_frames(msgs: list[bytes], octets: list[bool],
                                                   data: st.DataObject) -> None:
    stream = b"".join(octet(m) if o else m + b"\n" for m, o in zip(msgs, octets, strict=False))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    f = Framer(4096)
    out: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out += f.feed(stream[prev:cut])
        prev = cut
    assert out == msgs
