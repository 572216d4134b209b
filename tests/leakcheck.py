"""Helpers of the generative leak test: how a client can spell an address, where it can put it,
and every recoverable form in which it must not come back (an oracle independent of
``masking/``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True)
class Address:
    version: int  # 4 or 6
    value: int

    @property
    def packed(self) -> bytes:
        return self.value.to_bytes(4 if self.version == 4 else 16, "big")

    def octets(self) -> tuple[int, int, int, int]:
        v = self.value & 0xFFFFFFFF
        return v >> 24, v >> 16 & 255, v >> 8 & 255, v & 255

    def groups(self) -> list[int]:
        return [self.value >> (112 - 16 * i) & 0xFFFF for i in range(8)]


# Spellings: name -> (function, positions it is an address in). "text": anywhere; "host": only
# where a host is expected (the host field, a referrer's host, an address-named query value);
# "client": the client field as a web server logs it.
def v4_spellings(a: Address) -> dict[str, tuple[str, frozenset[str]]]:
    o1, o2, o3, o4 = a.octets()
    n = a.value
    hi, lo = n >> 16, n & 0xFFFF
    ob = n ^ 0xFFFFFFFF
    anywhere = frozenset({"text", "host", "client"})
    text = frozenset({"text", "host"})
    return {
        "dotted": (f"{o1}.{o2}.{o3}.{o4}", anywhere),
        "port": (f"{o1}.{o2}.{o3}.{o4}:8080", anywhere),
        "zero-padded": (f"{o1:03d}.{o2:03d}.{o3:03d}.{o4:03d}", text),
        "octal": (f"0{o1:o}.0{o2:o}.0{o3:o}.0{o4:o}", text),
        "hex-parts": (f"0x{o1:x}.0x{o2:x}.0x{o3:x}.0x{o4:x}", text),
        "hex-int": (f"0x{n:08X}", text),
        "decimal-int": (str(n), frozenset({"host"})),
        "two-part": (f"{o1}.{n & 0xFFFFFF}", frozenset({"host"})),
        "three-part": (f"{o1}.{o2}.{n & 0xFFFF}", frozenset({"host"})),
        "dashed": (f"{o1}-{o2}-{o3}-{o4}", text),
        "pct-dots": (f"{o1}%2e{o2}%2e{o3}%2e{o4}", frozenset({"url"})),
        "mapped": (f"::ffff:{o1}.{o2}.{o3}.{o4}", anywhere),
        "mapped-hex": (f"::ffff:{hi:x}:{lo:x}", anywhere),
        "mapped-bracket-port": (f"[::ffff:{o1}.{o2}.{o3}.{o4}]:443", anywhere),
        "translated": (f"::ffff:0:{o1}.{o2}.{o3}.{o4}", anywhere),
        "compatible": (f"::{o1}.{o2}.{o3}.{o4}", anywhere),
        "6to4": (f"2002:{hi:x}:{lo:x}::1", anywhere),
        "6to4-host": (f"2002:{hi:x}:{lo:x}:1234:5678:9abc:def0:1", anywhere),
        "teredo": (f"2001:0:4136:e378:8000:63bf:{ob >> 16:x}:{ob & 0xFFFF:x}", anywhere),
        "nat64": (f"64:ff9b::{o1}.{o2}.{o3}.{o4}", anywhere),
        "nat64-hex": (f"64:ff9b::{hi:x}:{lo:x}", anywhere),
        "nat64-local": (f"64:ff9b:1::{o1}.{o2}.{o3}.{o4}", anywhere),
        "isatap": (f"fe80::5efe:{o1}.{o2}.{o3}.{o4}", anywhere),
        "isatap-global": (f"2001:db8:1:2:200:5efe:{hi:x}:{lo:x}", anywhere),
    }


def v6_spellings(a: Address) -> dict[str, tuple[str, frozenset[str]]]:
    g = a.groups()
    comp = ":".join(f"{x:x}" for x in g)
    anywhere = frozenset({"text", "host", "client"})
    tail = f"{g[6] >> 8}.{g[6] & 255}.{g[7] >> 8}.{g[7] & 255}"
    return {
        "compressed": (comp, anywhere),
        "upper": (comp.upper(), anywhere),
        "exploded": (":".join(f"{x:04x}" for x in g), anywhere),
        "dotted-tail": (":".join(f"{x:x}" for x in g[:6]) + ":" + tail, anywhere),
        "bracket-port": (f"[{comp}]:443", anywhere),
        "zone": (f"{comp}%eth0", frozenset({"text", "client"})),
        "pct-colons": (comp.replace(":", "%3A"), frozenset({"url"})),
        "pct-zone": (f"{comp}%25eth0", frozenset({"url"})),
    }


def spellings(a: Address) -> dict[str, tuple[str, frozenset[str]]]:
    return v4_spellings(a) if a.version == 4 else v6_spellings(a)


# --------------------------------------------------------------------------- needles

_TIMESTAMPS = range(1_600_000_000, 2_100_000_000)  # a 10-digit number that may be a time
_WORD = re.compile(rb"(?<![0-9a-z.])(?:0x)?[0-9a-f]+(?:[._-](?:0x)?[0-9a-f]+){0,3}(?![0-9a-z])")
_HEX8 = re.compile(rb"(?<![0-9a-f])[0-9a-f]{8}(?![0-9a-f])")
_COLONS = re.compile(rb"[0-9a-f:]*:[0-9a-f:]*")
_SEP = re.compile(rb"[._-]")


class Scanned:
    """The address-shaped tokens of one blob, extracted once (lower case, ``%3a``/``%2e``
    decoded, all-zero 4 KiB pages of database files dropped)."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) > 1 << 16:
            blob = b"".join(blob[i:i + 4096] for i in range(0, len(blob), 4096)
                            if blob[i:i + 4096].strip(b"\0"))
        self.raw = blob
        low = blob.lower().replace(b"%3a", b":").replace(b"%2e", b".")
        self.words: set[bytes] = set()
        for m in _WORD.finditer(low):
            token = m.group(0)
            self.words.add(token)
            cuts = [x.start() for x in _SEP.finditer(token)]
            self.words.update(token[:c] for c in cuts)
        self.hex8 = set(_HEX8.findall(low))
        self.pair_end: set[bytes] = set()
        self.triples: set[bytes] = set()
        for run in _COLONS.findall(low):
            groups = run.split(b":")
            if len(groups) >= 2 and groups[-1] and groups[-2]:
                self.pair_end.add(groups[-2] + b":" + groups[-1])
            for i in range(len(groups) - 2):
                if groups[i] and groups[i + 1] and groups[i + 2]:
                    self.triples.add(b":".join(groups[i:i + 3]))


@dataclass
class Needles:
    """Every recoverable form of one address beyond the kept prefix (IPv4 /24, IPv6 /48)."""

    address: Address
    words: set[bytes]  # whole tokens: dotted, zero-padded, octal, hex parts, dashed, decimal …
    hex8: set[bytes]  # the 32-bit value as eight hex digits
    pair_end: set[bytes]  # the last two groups of an IPv6 text (mapped, NAT64, Teredo …)
    triples: set[bytes]  # three consecutive IPv6 groups (6to4 prefix, IPv6 host groups)
    packed: bytes | None  # raw bytes of the host part (IPv6), searched in the raw blob

    def find(self, scanned: Scanned, packed: bool = True) -> str | None:
        for attr in ("words", "hex8", "pair_end", "triples"):
            hit = getattr(self, attr) & getattr(scanned, attr)
            if hit:
                return f"{attr} {sorted(hit)[0].decode()}"
        if packed and self.packed is not None and self.packed in scanned.raw:
            return f"packed {self.packed.hex()}"
        return None


def needles(a: Address) -> Needles:
    if a.version == 4:
        o1, o2, o3, o4 = a.octets()
        n = a.value
        hi, lo = n >> 16, n & 0xFFFF
        ob = n ^ 0xFFFFFFFF
        words = {f"{o1}.{o2}.{o3}.{o4}", f"{o1:03d}.{o2:03d}.{o3:03d}.{o4:03d}",
                 f"{o1}-{o2}-{o3}-{o4}", f"{o1}_{o2}_{o3}_{o4}", f"0{o1:o}.0{o2:o}.0{o3:o}.0{o4:o}",
                 f"0x{o1:x}.0x{o2:x}.0x{o3:x}.0x{o4:x}", f"0x{n:08x}"}
        if n & 0xFFFFFF >= 1 << 20:
            words.add(f"{o1}.{n & 0xFFFFFF}")
        if n & 0xFFFF >= 1 << 12:
            words.add(f"{o1}.{o2}.{n & 0xFFFF}")
        if n not in _TIMESTAMPS:
            words.add(str(n))
        pairs = {f"{hi:x}:{lo:x}", f"{hi:04x}:{lo:04x}"}
        if ob >> 16 >= 0x1000:
            pairs |= {f"{ob >> 16:x}:{ob & 0xFFFF:x}", f"{ob >> 16:04x}:{ob & 0xFFFF:04x}"}
        return Needles(a, {w.encode() for w in words}, {f"{n:08x}".encode()},
                       {p.encode() for p in pairs}, {f"2002:{hi:x}:{lo:x}".encode()}, None)
    g = a.groups()
    triples = {f"{g[i]:x}:{g[i + 1]:x}:{g[i + 2]:x}".encode() for i in range(3, 6)}
    tail = f"{g[6] >> 8}.{g[6] & 255}.{g[7] >> 8}.{g[7] & 255}".encode()
    return Needles(a, {tail}, set(), set(), triples, a.packed[6:])


def masked_is_distinct(a: Address) -> bool:
    """Generated addresses whose every needle is distinctive: an IPv4 address with a first
    octet of 16+ (so its hex halves have four digits) and a non-zero host octet; an IPv6 address
    in 2400::/6..2fff (none of the IPv4-carrying forms) whose groups beyond the /48 are
    four-digit, outside 2400–2fff (so three of them never read as a kept prefix) and end in a
    non-zero byte."""
    if a.version == 4:
        return a.value & 0xFF != 0 and a.value >> 24 >= 16
    g = a.groups()
    return (0x2400 <= g[0] <= 0x2FFF and g[7] & 0xFF != 0
            and all(HOST_GROUP_LOW <= x <= 0xFFFE and not 0x2400 <= x <= 0x2FFF for x in g[3:]))


HOST_GROUP_LOW = 0x1000
