"""Client-address extraction and truncation.

``IPMasker.mask`` truncates one IP literal to its leading ``keep_bits``; ``IPMasker.client``
reads the client field as a web server logs it (IP, ``IP:port``, ``[IPv6]:port``, ``unix:``,
hostname, ``-``, or an X-Forwarded-For chain) and returns a :class:`Client` whose ``masked`` and
``chain`` are safe to keep. ``Client.ip`` holds the full address for in-memory use only (e.g. a
GeoIP lookup or a session key); it must never be stored.

Error messages never contain the raw address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DEFAULT_IPV4_KEEP_BITS",
    "DEFAULT_IPV6_KEEP_BITS",
    "AddressError",
    "Client",
    "IPMasker",
    "embedded_ipv4",
    "validate_field",
    "weaker_than_default",
]

DEFAULT_IPV4_KEEP_BITS = 24
DEFAULT_IPV6_KEEP_BITS = 48

_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(?!-)[A-Za-z0-9_-]{1,63}(?:\.(?!-)[A-Za-z0-9_-]{1,63})*\.?$"
)
_PORT = re.compile(r"^\d{1,5}$")


class AddressError(ValueError):
    """The client field is unusable. The message names the problem, never the address."""


@dataclass(frozen=True, slots=True)
class Client:
    """The client of one request.

    ``ip`` is the full normalized address (memory only, never stored); ``masked`` the truncated
    address; ``reason`` says why ``ip`` is ``None`` ("unix socket", "hostname", "no address");
    ``chain`` is the masked form of every address in the forwarded-for chain and the peer field.
    """

    ip: str | None
    masked: str | None
    reason: str | None
    chain: tuple[str, ...]


def weaker_than_default(ipv4_keep_bits: int, ipv6_keep_bits: int) -> list[str]:
    """Warning texts for keep-bit settings that reveal more than the defaults (24 / 48)."""
    warnings: list[str] = []
    if ipv4_keep_bits > DEFAULT_IPV4_KEEP_BITS:
        warnings.append(
            f"masking.ipv4_keep_bits = {ipv4_keep_bits} keeps more than the default "
            f"{DEFAULT_IPV4_KEEP_BITS} bits"
            + (" (the full address: no masking at all)" if ipv4_keep_bits >= 32 else "")
            + "; IPv4 addresses may identify a single subscriber"
        )
    if ipv6_keep_bits > DEFAULT_IPV6_KEEP_BITS:
        detail = ""
        if ipv6_keep_bits >= 128:
            detail = " (the full address: no masking at all)"
        elif ipv6_keep_bits > 64:
            detail = " (part of the interface identifier is kept)"
        elif ipv6_keep_bits > 56:
            detail = " (a /64 is usually one household or device)"
        warnings.append(
            f"masking.ipv6_keep_bits = {ipv6_keep_bits} keeps more than the default "
            f"{DEFAULT_IPV6_KEEP_BITS} bits{detail}; IPv6 prefixes may identify a single subscriber"
        )
    return warnings


def _mask_bytes(bits: int, total: int) -> int:
    return ((1 << total) - 1) ^ ((1 << (total - bits)) - 1) if bits else 0


class IPMasker:
    """Truncates addresses and picks the client out of forwarded-for chains."""

    __slots__ = ("_mask", "_networks", "_trusted", "ipv4_keep_bits", "ipv6_keep_bits")

    def __init__(
        self,
        ipv4_keep_bits: int = DEFAULT_IPV4_KEEP_BITS,
        ipv6_keep_bits: int = DEFAULT_IPV6_KEEP_BITS,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        if not 0 <= ipv4_keep_bits <= 32:
            raise ValueError("ipv4_keep_bits must be between 0 and 32")
        if not 0 <= ipv6_keep_bits <= 128:
            raise ValueError("ipv6_keep_bits must be between 0 and 128")
        self.ipv4_keep_bits = ipv4_keep_bits
        self.ipv6_keep_bits = ipv6_keep_bits
        self._networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
            ipaddress.ip_network(n.strip(), strict=False) for n in trusted_proxies
        )
        v4 = _mask_bytes(ipv4_keep_bits, 32)
        v6 = _mask_bytes(ipv6_keep_bits, 128)

        v6_nat64 = _mask_bytes(min(ipv6_keep_bits, 48), 128)

        @lru_cache(maxsize=65536)
        def mask_packed(packed: bytes) -> str:
            if len(packed) == 16:
                embedded = embedded_ipv4(packed)
                if embedded is not None:
                    packed = embedded
                elif packed[:4] == _NAT64_WKP[:4]:
                    # 64:ff9b::/32 in an RFC 6052 layout other than /96 (e.g. 64:ff9b:1::/48
                    # with the address at bits 48..87): keep at most the /48 prefix.
                    return _normal((int.from_bytes(packed, "big") & v6_nat64).to_bytes(16, "big"))
            if len(packed) == 4:
                return socket.inet_ntop(
                    socket.AF_INET, (int.from_bytes(packed, "big") & v4).to_bytes(4, "big")
                )
            return _normal((int.from_bytes(packed, "big") & v6).to_bytes(16, "big"))

        self._mask = mask_packed

        @lru_cache(maxsize=4096)
        def trusted(ip: str) -> bool:
            if not self._networks:
                return False
            addr = ipaddress.ip_address(ip)
            return any(addr.version == n.version and addr in n for n in self._networks)

        self._trusted = trusted

    # ------------------------------------------------------------------ single addresses

    def mask(self, ip: str) -> str:
        """Mask one IP literal (IPv4, IPv6, with a zone id). An IPv6 address that carries an
        IPv4 address (:func:`embedded_ipv4`) is masked as that IPv4 address."""
        packed = _pack(ip)
        if packed is None:
            raise AddressError("value is not an IP address")
        return self._mask(packed)

    def mask_packed(self, packed: bytes) -> str:
        """Mask a packed 4- or 16-byte address (same rules as :meth:`mask`)."""
        if len(packed) == 16 and packed[:12] == _MAPPED_PREFIX:
            packed = packed[12:]
        return self._mask(packed)

    def is_trusted(self, ip: str) -> bool:
        """Whether a normalized address lies in a configured trusted proxy network."""
        return self._trusted(ip)

    # ------------------------------------------------------------------ client field

    def client(self, field: str | None, forwarded_for: str | None = None) -> Client:
        """The client of a request from its logged client field and X-Forwarded-For header."""
        text = (field or "").strip().strip('"').strip()
        if "," in text:
            entries = _split_chain(text)
            peer_reason: str | None = None
        else:
            entries = []
            peer = _parse_entry(text)  # raises AddressError
            if isinstance(peer, str):
                if not forwarded_for or forwarded_for.strip() in ("", "-"):
                    return Client(None, None, peer, ())
                # A unix-socket or named peer in front of us is a local proxy: believe its XFF.
                peer_reason = peer
            else:
                peer_reason = None
                entries = [text]
            if forwarded_for and forwarded_for.strip() not in ("", "-"):
                if peer_reason is None:
                    assert not isinstance(peer, str)
                    if not self._trusted(peer[0]):
                        # XFF from an untrusted peer is not believed, but still masked.
                        chain = (*self._mask_all(_split_chain(forwarded_for)), self._mask(peer[1]))
                        return Client(peer[0], self._mask(peer[1]), None, chain)
                entries = _split_chain(forwarded_for) + entries
        return self._walk(entries)

    # ------------------------------------------------------------------ helpers

    def _mask_all(self, entries: list[str]) -> tuple[str, ...]:
        out: list[str] = []
        for entry in entries:
            try:
                parsed = _parse_entry(entry)
            except AddressError:
                continue
            if not isinstance(parsed, str):
                out.append(self._mask(parsed[1]))
        return tuple(out)

    def _walk(self, entries: list[str]) -> Client:
        parsed: list[tuple[str, bytes] | str | None] = []
        for entry in entries:
            try:
                parsed.append(_parse_entry(entry))
            except AddressError:
                parsed.append(None)
        chain = tuple(self._mask(p[1]) for p in parsed if isinstance(p, tuple))
        chosen: tuple[str, bytes] | str | None = None
        for item in reversed(parsed):
            if item is None:
                raise AddressError("forwarded-for chain holds an entry that is not an IP address")
            if isinstance(item, str):
                if item == "no address":
                    continue
                chosen = item
                break
            if self._trusted(item[0]):
                chosen = item
                continue
            chosen = item
            break
        if chosen is None:
            return Client(None, None, "no address", chain)
        if isinstance(chosen, str):
            return Client(None, None, chosen, chain)
        return Client(chosen[0], self._mask(chosen[1]), None, chain)


def validate_field(field: str | None, forwarded_for: str | None = None) -> None:
    """Raise AddressError unless ``IPMasker.client`` would accept the field (fast, cached)."""
    if not forwarded_for and field and "," not in field:
        _parse_entry(field.strip().strip('"').strip())
        return
    _VALIDATOR.client(field, forwarded_for)


def _split_chain(text: str) -> list[str]:
    return [p.strip().strip('"').strip() for p in text.split(",") if p.strip().strip('"').strip()]


def _pack(ip: str) -> bytes | None:
    """Packed 4- or 16-byte form; IPv4-mapped IPv6 becomes 4 bytes; zone ids are dropped."""
    if ":" not in ip:
        try:
            return socket.inet_pton(socket.AF_INET, ip)
        except (OSError, ValueError):  # ValueError: an embedded NUL
            return None
    pct = ip.find("%")
    if pct >= 0:
        if pct == len(ip) - 1:
            return None
        ip = ip[:pct]
    try:
        packed = socket.inet_pton(socket.AF_INET6, ip)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return None
    if packed[:12] == _MAPPED_PREFIX:
        return packed[12:]
    return packed


@lru_cache(maxsize=65536)
def _parse_entry(text: str) -> tuple[str, bytes] | str:
    """One address as logged → (normalized ip, packed) or a reason ("unix socket", ...).

    Raises AddressError for anything that is neither an address, a socket nor a hostname.
    """
    if text in ("", "-"):
        return "no address"
    if text.startswith("unix:"):
        return "unix socket"
    host = text
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError("client field has an unclosed '[' bracket")
        rest = text[end + 1 :]
        if rest and not (rest[0] == ":" and _PORT.match(rest[1:]) and int(rest[1:]) <= 65535):
            raise AddressError("client field has an invalid port after the bracketed address")
        host = text[1:end]
        packed = _pack(host)
        if packed is None or (len(packed) == 4 and ":" not in host):
            raise AddressError("bracketed client field is not an IPv6 address")
        return _normal(packed), packed
    colons = host.count(":")
    if colons == 1:
        host, _, port = host.partition(":")
        if not _PORT.match(port) or int(port) > 65535:
            raise AddressError("client field has an invalid port")
    packed = _pack(host)
    if packed is not None:
        return _normal(packed), packed
    if colons <= 1 and _HOSTNAME.match(host) and not _looks_numeric(host):
        return "hostname"
    raise AddressError("client field is not an IP address, unix socket or hostname")


_VALIDATOR = IPMasker()


def _looks_numeric(host: str) -> bool:
    return all(c.isdigit() or c == "." for c in host)


_ZERO96 = b"\x00" * 12
_TRANSLATED = b"\x00" * 8 + b"\xff\xff\x00\x00"  # ::ffff:0:0:0/96 (RFC 2765 / 6145)
_6TO4 = b"\x20\x02"  # 2002::/16 (RFC 3056)
_TEREDO = b"\x20\x01\x00\x00"  # 2001::/32 (RFC 4380)
_NAT64_WKP = bytes.fromhex("0064ff9b0000000000000000")  # 64:ff9b::/96 (RFC 6052)
_NAT64_LOCAL = bytes.fromhex("0064ff9b0001")  # 64:ff9b:1::/48 (RFC 8215)
_ISATAP_IIDS = frozenset(bytes.fromhex(x) for x in ("00005efe", "02005efe", "01005efe",
                                                     "03005efe"))  # RFC 5214 interface ids


def embedded_ipv4(packed: bytes) -> bytes | None:
    """The IPv4 address a 16-byte IPv6 address carries, or None.

    Forms (each from its RFC): IPv4-mapped ``::ffff:a.b.c.d`` and IPv4-translated
    ``::ffff:0:a.b.c.d`` (RFC 4291, 6145); IPv4-compatible ``::a.b.c.d`` (RFC 4291, deprecated;
    ``::`` and ``::1`` excepted); 6to4 ``2002:AABB:CCDD::/48`` (RFC 3056); Teredo ``2001:0::/32``
    with the client's address obfuscated (XOR ``0xffffffff``) in the last 32 bits (RFC 4380);
    NAT64 well-known ``64:ff9b::/96`` (RFC 6052) and local-use ``64:ff9b:1::/96`` (RFC 8215);
    ISATAP interface ids ``[0-3]00:5efe:a.b.c.d`` (RFC 5214). The other RFC 6052 layouts of
    ``64:ff9b:1::/48`` (prefix /48, /56, /64) cannot be told apart reliably; the masker keeps at
    most the /48 prefix of any ``64:ff9b::/32`` address it does not convert.
    """
    if len(packed) != 16:
        return None
    head = packed[:12]
    if head == _MAPPED_PREFIX or head == _TRANSLATED or head == _NAT64_WKP:
        return packed[12:]
    if head == _ZERO96:
        return packed[12:] if int.from_bytes(packed[12:], "big") > 1 else None
    if packed[:2] == _6TO4:
        return packed[2:6]
    if packed[:4] == _TEREDO:
        return bytes(b ^ 0xFF for b in packed[12:])
    if packed[:6] == _NAT64_LOCAL and not any(packed[6:12]):
        return packed[12:]
    if packed[8:12] in _ISATAP_IIDS:
        return packed[12:]
    return None


def _normal(packed: bytes) -> str:
    """Text form as ``ipaddress`` writes it (RFC 5952; never the deprecated ``::a.b.c.d``)."""
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed)
    if packed[:12] == _ZERO96:
        hi, lo = int.from_bytes(packed[12:14], "big"), int.from_bytes(packed[14:], "big")
        return f"::{hi:x}:{lo:x}" if hi else (f"::{lo:x}" if lo else "::")
    return socket.inet_ntop(socket.AF_INET6, packed)
