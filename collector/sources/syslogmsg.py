"""Syslog on the wire: RFC 3164 / RFC 5424 headers and RFC 6587 TCP framing. Pure code, no I/O.

``parse_message(frame)`` splits one syslog message into its header fields and the body (the
access-log line). ``Framer`` cuts a TCP byte stream into messages: octet-counting (``LEN SP MSG``)
or non-transparent framing (``MSG LF``), detected per frame, as RFC 6587 §3.4 allows.

Errors never quote the message: it may hold a client address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Framer", "SyslogError", "SyslogMessage", "parse_message"]


class SyslogError(ValueError):
    """A frame is not a syslog message. The text never repeats the frame."""


@dataclass(slots=True)
class SyslogMessage:
    facility: int
    severity: int
    timestamp: str | None
    hostname: str | None
    app: str | None
    body: str


_PRI = re.compile(rb"^<(\d{1,3})>")
_BOM = "\ufeff"
# RFC 3164 timestamp "Mmm dd hh:mm:ss" (day space-padded), optionally followed by a year;
# many senders (rsyslog) put an RFC 3339 timestamp in the same place.
_TS_3164 = re.compile(
    r"^(?:(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d"
    r"(?: \d{4})?|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) ")
_TAG = re.compile(r"^([^\s:\[\]]{1,48})(?:\[[^\]\s]{0,32}\])?: ?")


def parse_message(frame: bytes) -> SyslogMessage:
    """One syslog message (RFC 5424, or RFC 3164 with or without hostname/timestamp)."""
    m = _PRI.match(frame)
    if m is None:
        raise SyslogError("message does not start with <PRI>")
    pri = int(m.group(1))
    if pri > 191:
        raise SyslogError(f"PRI {pri} is out of range 0..191")
    rest = frame[m.end():].decode("utf-8", errors="replace").rstrip("\r\n\x00")
    if rest[:2] == "1 ":
        return _rfc5424(pri, rest[2:])
    return _rfc3164(pri, rest)


def _rfc5424(pri: int, rest: str) -> SyslogMessage:
    parts = rest.split(" ", 5)  # TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD[ MSG]
    if len(parts) < 6:
        raise SyslogError("RFC 5424 header is incomplete")
    ts, host, app, _procid, _msgid, tail = parts
    body = _skip_structured_data(tail)
    if body.startswith(_BOM):
        body = body[1:]
    return SyslogMessage(pri >> 3, pri & 7, _nil(ts), _nil(host), _nil(app), body)


def _skip_structured_data(tail: str) -> str:
    if tail.startswith("-"):
        return tail[2:] if tail[1:2] == " " else tail[1:]
    if not tail.startswith("["):
        raise SyslogError("RFC 5424 structured data is neither '-' nor '[...]'")
    i, n = 0, len(tail)
    while i < n and tail[i] == "[":
        i += 1
        quoted = False
        while i < n:
            c = tail[i]
            if quoted and c == "\\":
                i += 2
                continue
            if c == '"':
                quoted = not quoted
            elif c == "]" and not quoted:
                break
            i += 1
        if i >= n:
            raise SyslogError("RFC 5424 structured data is not closed")
        i += 1
    return tail[i + 1:] if tail[i:i + 1] == " " else tail[i:]


def _rfc3164(pri: int, rest: str) -> SyslogMessage:
    ts = None
    m = _TS_3164.match(rest)
    if m is not None:
        ts = m.group(0).rstrip()
        rest = rest[m.end():]
    host = app = None
    tag = _TAG.match(rest)
    if tag is None and ts is not None:
        # "HOSTNAME TAG: MSG" (nginx without nohostname)
        head, sep, after = rest.partition(" ")
        tag2 = _TAG.match(after) if sep else None
        if head and tag2 is not None:
            host, app, rest = head, tag2.group(1), after[tag2.end():]
    elif tag is not None:
        app, rest = tag.group(1), rest[tag.end():]
    return SyslogMessage(pri >> 3, pri & 7, ts, host, app, rest)


def _nil(value: str) -> str | None:
    return None if value == "-" else value


class Framer:
    """Cuts a TCP stream into frames: ``LEN SP MSG`` or ``MSG LF``, detected per frame.

    A frame longer than ``max_size`` is skipped whole and counted in ``oversized``; a declared
    length that is not a number stops the stream (``SyslogError``): octet-counted streams can't
    be resynchronised.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.buf = bytearray()
        self.oversized = 0
        self.truncated = 0
        self._skip = 0  # bytes still to discard of an oversized octet-counted frame
        self._skip_line = False  # discarding an oversized LF-framed message up to its LF

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        buf = self.buf
        buf.extend(data)
        while buf:
            if self._skip:
                n = min(self._skip, len(buf))
                del buf[:n]
                self._skip -= n
                continue
            if self._skip_line:
                nl = buf.find(b"\n")
                if nl < 0:
                    buf.clear()
                    break
                del buf[:nl + 1]
                self._skip_line = False
                continue
            first = buf[0]
            if first in b"\n\r\x00 ":
                del buf[:1]
                continue
            if 0x30 <= first <= 0x39:  # octet counting
                sp = buf.find(b" ", 0, 12)
                if sp < 0:
                    if len(buf) >= 12:
                        raise SyslogError("octet-counted frame length is not a number")
                    break
                digits = bytes(buf[:sp])
                if not digits.isdigit():
                    raise SyslogError("octet-counted frame length is not a number")
                size = int(digits)
                if size > self.max_size:
                    self.oversized += 1
                    del buf[:sp + 1]
                    self._skip = size
                    continue
                if len(buf) < sp + 1 + size:
                    break
                out.append(bytes(buf[sp + 1:sp + 1 + size]))
                del buf[:sp + 1 + size]
                continue
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > self.max_size:
                    self.oversized += 1
                    buf.clear()
                    self._skip_line = True
                break
            if nl > self.max_size:
                self.oversized += 1
            else:
                out.append(bytes(buf[:nl]))
            del buf[:nl + 1]
        return out

    def finish(self) -> bytes | None:
        """At end of stream: a last message without its LF, or None (nothing, or a truncated
        octet-counted frame, counted in ``truncated``)."""
        data = bytes(self.buf).strip(b"\r\n\x00 ")
        self.buf.clear()
        if not data or self._skip or self._skip_line:
            return None
        if data[:1].isdigit():
            self.truncated += 1
            return None
        return data
