"""Addresses inside text a client chose (paths, queries, referrers, hosts, agent fields).

:func:`find_addresses` finds every IPv4 and IPv6 address written in a spelling that a parser
would accept, and :class:`TextMasker` replaces each by its masked form (the same truncation as
the client's address: ``masking.ip.IPMasker.mask``, so an IPv6 form that carries an IPv4 address
is masked as that IPv4 address).

Spellings found anywhere in free text:

* dotted IPv4 with four parts, each decimal (zero-padded or not: ``203.000.113.083``), octal
  (``0313.0.0161.0123``) or hexadecimal (``0xcb.0x0.0x71.0x53``), as ``inet_aton`` and URL hosts
  read them; the same four parts joined by ``-`` or ``_`` (``ip-203-0-113-83.example``);
* a whole 32-bit hexadecimal integer ``0xCB007153`` (``inet_aton``, browsers' URL hosts);
* IPv6 in any ``inet_pton`` form (compressed, expanded, upper case, with a dotted IPv4 tail),
  bracketed or not, with a zone id (``%eth0`` or ``%25eth0``), followed by a port or not.

In a **host position** (:meth:`TextMasker.host`: the ``host`` field, a referrer's host) the
shortened ``inet_aton`` forms are addresses too: ``203.29011`` (two parts), ``203.0.29011``
(three) and a bare decimal integer ``3405803859``. Elsewhere a bare number is an id, not an
address (a query value named like an address, ``?ip=3405803859``, is read as a host position by
``masking.url``).

Percent-encoding is decoded by the caller (``masking.url`` decodes every segment and value
before it looks at it); :func:`find_addresses` itself also reads ``%3A`` / ``%2E`` / ``%5B`` /
``%5D`` written inside an address.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from functools import lru_cache

__all__ = ["CONTENT_HOST_FIELDS", "CONTENT_TEXT_FIELDS", "TextMasker", "find_addresses",
           "holds_address", "parse_host"]

# Stored record fields a client chose, besides the URL ones (``masking.url``): masked as a host
# (any ``inet_aton`` form) or as text. A columnar engine applies ``TextMasker.host`` /
# ``TextMasker.text`` to each distinct value of these columns (``languages`` element-wise).
CONTENT_HOST_FIELDS: tuple[str, ...] = ("host",)
CONTENT_TEXT_FIELDS: tuple[str, ...] = (
    "method", "protocol", "device", "browser", "browser_version", "os", "os_version",
    "language", "timezone")

_PART = r"(?:0[xX][0-9A-Fa-f]{1,8}|[0-9]{1,12})"
_DOTTED = re.compile(
    rf"(?<!\w)(?<!\d\.){_PART}(?P<s>\.|%2[eE]){_PART}(?P=s){_PART}(?P=s){_PART}"
    r"(?!\w)(?!\.[0-9])")
_DASHED = re.compile(r"(?<![0-9A-Za-z])(?<![0-9][-_])[0-9]{1,3}(?P<s>[-_])[0-9]{1,3}(?P=s)"
                     r"[0-9]{1,3}(?P=s)[0-9]{1,3}(?![0-9])")
_HEX32 = re.compile(r"(?<![\w.])0[xX][0-9A-Fa-f]{7,8}(?![\w.])")
_V6_CHARS = r"[0-9A-Fa-f:.]"
_V6 = re.compile(
    r"(?<![\w:.%])(?:\[)?(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)"
    r"(?:[0-9A-Fa-f:]*:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f:]{2,})(?![\w.])"
    r"(?:%(?:25)?[0-9A-Za-z_.\-]+)?(?:\])?")
_ENCODED = re.compile(r"%(3[aA]|2[eE]|5[bBdD])")
_HOST_SHORT = re.compile(rf"(?<![\w.]){_PART}(?:\.{_PART}){{0,2}}\.?(?![\w.])")


def _num(text: str) -> int | None:
    """One ``inet_aton`` part: hexadecimal ``0x…``, octal ``0…`` or decimal."""
    try:
        if text[:2] in ("0x", "0X"):
            return int(text[2:], 16) if len(text) > 2 else 0
        if len(text) > 1 and text[0] == "0":
            if all(c in "01234567" for c in text):
                return int(text, 8)
            return int(text, 10)  # zero-padded decimal (203.000.113.083)
        return int(text, 10)
    except ValueError:
        return None


def _aton(parts: list[str]) -> bytes | None:
    """``inet_aton``'s reading of 1–4 parts (the last part fills the remaining bytes)."""
    nums = [_num(p) for p in parts]
    if any(n is None for n in nums) or not 1 <= len(nums) <= 4:
        return None
    vals = [n for n in nums if n is not None]
    last_bits = 8 * (5 - len(vals))
    if any(v > 255 for v in vals[:-1]) or vals[-1] >= 1 << last_bits:
        return None
    value = 0
    for v in vals[:-1]:
        value = value << 8 | v
    value = value << last_bits | vals[-1]
    return value.to_bytes(4, "big")


def _dotted_value(parts: list[str]) -> bytes | None:
    """Four parts, each a byte: a zero-padded decimal part is decimal when it is valid decimal
    and not valid octal; ``0``-prefixed parts that are valid octal are read both ways, and the
    match counts as an address if either reading is one."""
    out = []
    for p in parts:
        n = _num(p)
        if n is None:
            return None
        if n > 255:
            alt = int(p, 10) if p.isdigit() else None
            if alt is None or alt > 255:
                return None
            n = alt
        out.append(n)
    return bytes(out)


def _pack6(text: str) -> bytes | None:
    t = text.strip("[]")
    pct = t.find("%")
    if pct >= 0:
        t = t[:pct]
    if t.count(":") < 2 or len(t) > 45:
        return None
    try:
        return socket.inet_pton(socket.AF_INET6, t)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return None


def find_addresses(text: str) -> list[tuple[int, int, bytes]]:
    """``(start, end, packed)`` of every address in ``text``, left to right, not overlapping."""
    if not text or not (":" in text or any(c.isdigit() for c in text)):
        return []
    if "%" in text and _ENCODED.search(text):
        spans: list[tuple[int, int, bytes]] = []
        # Decode only the characters an address can hold, keeping a map back to ``text``.
        decoded, where = [], []
        i = 0
        while i < len(text):
            m = _ENCODED.match(text, i)
            if m:
                decoded.append(chr(int(m.group(1), 16)))
                where.append(i)
                i = m.end()
            else:
                decoded.append(text[i])
                where.append(i)
                i += 1
        where.append(len(text))
        for s, e, packed in _find("".join(decoded)):
            spans.append((where[s], where[e], packed))
        return spans
    return _find(text)


def _find(text: str) -> list[tuple[int, int, bytes]]:
    found: list[tuple[int, int, bytes]] = []
    taken: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b in taken)

    if text.count(":") >= 2:
        for m in _V6.finditer(text):
            s, e = m.span()
            token = m.group(0)
            if token.startswith("[") and not token.endswith("]"):
                token, s = token[1:], s + 1
            if token.endswith("]") and not token.startswith("["):
                token, e = token[:-1], e - 1
            packed = _pack6(token)
            if packed is None:
                # a longer run (``a::b:c::d``) may still hold an address at its end or start
                continue
            found.append((s, e, packed))
            taken.append((s, e))
    for rx in (_DOTTED, _DASHED):
        for m in rx.finditer(text):
            s, e = m.span()
            if not free(s, e):
                continue
            sep = m.group("s")
            parts = (m.group(0).replace("%2e", ".").replace("%2E", ".") if sep.startswith("%")
                     else m.group(0)).split("." if sep.startswith("%") else sep)
            packed = _dotted_value(parts) if rx is _DOTTED else _dashed(parts)
            if packed is not None:
                found.append((s, e, packed))
                taken.append((s, e))
    for m in _HEX32.finditer(text):
        s, e = m.span()
        if free(s, e):
            found.append((s, e, int(m.group(0), 16).to_bytes(4, "big")))
            taken.append((s, e))
    found.sort()
    return found


def _dashed(parts: list[str]) -> bytes | None:
    nums = [int(p) for p in parts]
    return bytes(nums) if all(n <= 255 for n in nums) else None


def parse_host(host: str) -> bytes | None:
    """A URL host or ``Host`` header value as an address (any ``inet_aton`` or IPv6 form, with a
    port, bracketed, trailing dot), or None when it is a name."""
    h = host.strip()
    if not h:
        return None
    if h.startswith("["):
        end = h.find("]")
        return _pack6(h[: end + 1] if end > 0 else h)
    if h.count(":") >= 2:
        return _pack6(h)
    h = h.partition(":")[0].rstrip(".")
    if not h or not all(c.isalnum() or c == "." for c in h):
        return None
    parts = h.split(".")
    if not all(parts) or len(parts) > 4:
        return None
    return _aton(parts)


def holds_address(text: str) -> bool:
    """Whether ``text`` holds an address in any spelling :func:`find_addresses` knows."""
    return bool(find_addresses(text)) or parse_host(text) is not None


class TextMasker:
    """Replaces addresses inside text by their masked form (``mask_packed``: packed → text)."""

    def __init__(self, mask_packed: Callable[[bytes], str]) -> None:
        self._mask_packed = mask_packed
        self.text = lru_cache(maxsize=16384)(self._text)  # type: ignore[method-assign]
        self.host = lru_cache(maxsize=8192)(self._host)  # type: ignore[method-assign]

    def text(self, text: str) -> str:
        """``text`` with every address in it masked (the rest unchanged)."""
        return self._text(text)

    def host(self, host: str) -> str:
        """A host as a whole: an address (any form, port kept) becomes its masked form."""
        return self._host(host)

    def url(self, text: str) -> str:
        """A URL's host read as a host (any ``inet_aton`` form), the rest as text."""
        scheme, sep, rest = text.partition("://")
        if not sep:
            return self._text(text)
        cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0),
                  default=len(rest))
        authority = rest[:cut]
        user, at, host = authority.rpartition("@")
        return (self._text(scheme) + sep + (self._text(user) + at if at else "")
                + self._host(host) + self._text(rest[cut:]))

    def _text(self, text: str) -> str:
        spans = find_addresses(text)
        if not spans:
            return text
        out, last = [], 0
        for s, e, packed in spans:
            out.append(text[last:s])
            masked = self._mask_packed(packed)
            if ":" in masked:
                masked = f"[{masked}]" if text[s] == "[" else masked
            elif "." not in text[s:e] and "%" not in text[s:e]:
                sep = next((c for c in text[s:e] if c in "-_"), "")
                masked = masked.replace(".", sep) if sep else masked
            out.append(masked)
            last = e
        out.append(text[last:])
        return "".join(out)

    def _host(self, host: str) -> str:
        packed = parse_host(host)
        if packed is None:
            return self._text(host)
        h = host.strip()
        port = ""
        if h.startswith("["):
            rest = h[h.find("]") + 1:]
            port = rest if rest.startswith(":") else ""
        elif h.count(":") == 1:
            port = ":" + h.partition(":")[2]
        masked = self._mask_packed(packed)
        if ":" in masked and (port or h.startswith("[")):
            masked = f"[{masked}]"
        return masked + port
