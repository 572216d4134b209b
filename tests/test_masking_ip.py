"""IP masking: examples from real logs and hypothesis properties (no raw address survives)."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from masking.ip import AddressError, Client, IPMasker, weaker_than_default

M = IPMasker()


@pytest.mark.parametrize(
    ("field", "ip", "masked"),
    [
        ("85.181.35.98", "85.181.35.98", "85.181.35.0"),
        ("1.2.3.4:5678", "1.2.3.4", "1.2.3.0"),
        ("::1", "::1", "::"),
        ("[2001:db8::1]:443", "2001:db8::1", "2001:db8::"),
        ("[::1]", "::1", "::"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:db8:85a3::8a2e:370:7334",
         "2001:db8:85a3::"),
        ("fe80::1ff:fe23:4567:890a%eth2", "fe80::1ff:fe23:4567:890a", "fe80::"),
        ("::ffff:192.0.2.128", "192.0.2.128", "192.0.2.0"),
        ("[::ffff:192.0.2.128]:80", "192.0.2.128", "192.0.2.0"),
        ("2a03:0000:10ff:f00f:0000:0000:0:8000", "2a03:0:10ff:f00f::8000", "2a03:0:10ff::"),
    ],
)
def test_client_forms(field: str, ip: str, masked: str) -> None:
    c = M.client(field)
    assert (c.ip, c.masked, c.reason) == (ip, masked, None)
    assert c.chain == (masked,)


@pytest.mark.parametrize(
    ("field", "reason"),
    [("unix:", "unix socket"), ("unix:/run/php.sock", "unix socket"),
     ("monitoring-server", "hostname"), ("localhost", "hostname"),
     ("example.com:8080", "hostname"), ("-", "no address"), ("", "no address")],
)
def test_no_ip(field: str, reason: str) -> None:
    assert M.client(field) == Client(None, None, reason, ())


@pytest.mark.parametrize(
    "field",
    ["2a02:cf40::::::::4e36", "[2a02:cf40::::::::4e36]:500000000", "1.2.3.999", "999.1.1.1:80",
     "1.2.3.4:99999", "[1.2.3.4]:80", "[2001:db8::1", "not an ip!", "1.2.3.4.5", "::g",
     "10.0.0.1, bogus!, 1.2.3.4, junk?"],
)
def test_rejected_without_the_address(field: str) -> None:
    with pytest.raises(AddressError) as err:
        M.client(field)
    for part in re.split(r"[\[\]:, ]+", field):
        if len(part) > 3 and any(c.isdigit() for c in part):
            assert part not in str(err.value)


def test_forwarded_for_chain_rules() -> None:
    # The chain as nginx logs it in the client field: right-most untrusted address.
    c = M.client("10.0.0.2, 10.0.0.1, 85.181.35.98")
    assert c.ip == "85.181.35.98" and c.chain == ("10.0.0.0", "10.0.0.0", "85.181.35.0")
    trusted = IPMasker(trusted_proxies=["10.0.0.0/8", "127.0.0.1/32"])
    assert trusted.client("81.2.69.143, 10.0.0.2, 127.0.0.1").ip == "81.2.69.143"
    # XFF header from a trusted peer is believed; from an untrusted peer it is not.
    assert trusted.client("10.1.2.3", "198.51.100.7, 10.9.9.9").ip == "198.51.100.7"
    c = M.client("203.0.113.9", "198.51.100.7")
    assert c.ip == "203.0.113.9" and c.chain == ("198.51.100.0", "203.0.113.0")
    # All proxies trusted: the left-most address is the client.
    assert trusted.client("10.0.0.1", "10.0.0.2").ip == "10.0.0.2"
    # A unix-socket peer is a local proxy: its XFF is believed.
    assert M.client("unix:", "2001:db8::5").ip == "2001:db8::5"
    # IPv6 and ports inside a chain.
    c = trusted.client("2001:db8::7, [2001:db8::8]:443, 10.0.0.1")
    assert c.ip == "2001:db8::8" and c.masked == "2001:db8::"


def test_keep_bits_and_warnings() -> None:
    assert IPMasker(16, 32).mask("85.181.35.98") == "85.181.0.0"
    assert IPMasker(16, 32).mask("2001:db8:aaaa:bbbb::1") == "2001:db8::"
    assert IPMasker(32, 128).mask("85.181.35.98") == "85.181.35.98"
    assert IPMasker(0, 0).mask("2001:db8::1") == "::"
    assert weaker_than_default(24, 48) == []
    assert weaker_than_default(16, 32) == []
    warnings = weaker_than_default(32, 64)
    assert len(warnings) == 2 and "no masking" in warnings[0] and "/64" in warnings[1]
    with pytest.raises(ValueError):
        IPMasker(33, 48)


# --------------------------------------------------------------------------- properties

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
v4_bits = st.integers(0, 32)
v6_bits = st.integers(0, 128)
zone = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)


def carried_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Independent oracle: the IPv4 address an IPv6 address carries (the RFC forms in
    docs/masking.md), read with ``ipaddress``'s own accessors where it has them."""
    n = int(addr)
    low = ipaddress.IPv4Address(n & 0xFFFFFFFF)
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if n >> 32 == 0xFFFF0000 or n >> 32 == 0x64FF9B << 64 or n >> 32 == 0x64FF9B0001 << 48:
        return low  # IPv4-translated, NAT64 /96 (well-known and local-use)
    if n >> 32 == 0 and n > 1:
        return low  # IPv4-compatible
    if (n >> 32) & 0xFCFFFFFF == 0x5EFE:
        return low  # ISATAP interface id
    return None


def textual_forms(raw: str) -> set[str]:
    addr = ipaddress.ip_address(raw)
    if isinstance(addr, ipaddress.IPv6Address) and carried_ipv4(addr) is not None:
        addr = carried_ipv4(addr)  # type: ignore[assignment]
    forms = {str(addr)}
    if isinstance(addr, ipaddress.IPv4Address):
        forms |= {f"::ffff:{addr}", ipaddress.IPv6Address(f"::ffff:{addr}").exploded}
    else:
        forms |= {addr.exploded, addr.compressed}
    return forms


def network_of(raw: str, v4: int, v6: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    addr = ipaddress.ip_address(raw)
    if isinstance(addr, ipaddress.IPv6Address) and carried_ipv4(addr) is not None:
        addr = carried_ipv4(addr)  # type: ignore[assignment]
    elif isinstance(addr, ipaddress.IPv6Address) and int(addr) >> 96 == 0x64FF9B:
        v6 = min(v6, 48)  # other NAT64 layouts: at most the /48 prefix is kept
    bits = v4 if addr.version == 4 else v6
    return ipaddress.ip_network(f"{addr}/{bits}", strict=False)


def strings_of(client: Client) -> list[str]:
    """Every stored text of a Client (``ip`` is memory-only by contract and excluded)."""
    return [s for s in (client.masked, client.reason, *client.chain) if s]


def assert_hidden(raw: str, client: Client, masker: IPMasker, v4: int, v6: int) -> None:
    masked = masker.mask(raw)
    net = network_of(raw, v4, v6)
    assert ipaddress.ip_address(masked) in net  # same network
    assert masker.mask(masked) == masked  # idempotent
    full = net.prefixlen == net.max_prefixlen
    if (ipaddress.ip_address(masked) == net.network_address and full) \
            or masked in textual_forms(raw):
        return  # host bits already zero: the masked form *is* the network address
    forms = textual_forms(raw)
    assert not forms & {masked}
    for text in strings_of(client):
        tokens = set(re.split(r"[\s,\[\]]+", text))
        assert not forms & tokens, (raw, text)
    assert not any(f in masked for f in forms)


@settings(max_examples=300)
@given(raw=st.one_of(ipv4, ipv6), v4=v4_bits, v6=v6_bits)
def test_mask_properties(raw: str, v4: int, v6: int) -> None:
    masker = IPMasker(v4, v6)
    assert_hidden(raw, masker.client(raw), masker, v4, v6)


@settings(max_examples=200)
@given(raw=ipv4, port=st.integers(0, 65535), v4=v4_bits)
def test_ipv4_with_port_and_mapped(raw: str, port: int, v4: int) -> None:
    masker = IPMasker(v4, 48)
    for field in (f"{raw}:{port}", f"::ffff:{raw}", f"[::ffff:{raw}]:{port}"):
        client = masker.client(field)
        assert client.ip == raw
        assert client.masked == masker.mask(raw)
        assert_hidden(raw, client, masker, v4, 48)


@settings(max_examples=200)
@given(raw=ipv6, port=st.integers(0, 65535), zone_id=zone, v6=v6_bits)
def test_ipv6_with_port_zone_and_expanded(raw: str, port: int, zone_id: str, v6: int) -> None:
    assume(ipaddress.IPv6Address(raw).ipv4_mapped is None)
    masker = IPMasker(24, v6)
    exploded = ipaddress.IPv6Address(raw).exploded
    for field in (f"[{raw}]:{port}", f"{raw}%{zone_id}", exploded, f"[{exploded}]"):
        client = masker.client(field)
        assert client.ip == raw
        assert_hidden(raw, client, masker, 24, v6)


def _plain(addr: str) -> str:
    """An address as the masker writes it: IPv4-mapped IPv6 is unwrapped to IPv4."""
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.compressed


@settings(max_examples=200)
@given(
    chain=st.lists(st.one_of(ipv4, ipv6), min_size=1, max_size=6),
    trusted_mask=st.lists(st.booleans(), min_size=6, max_size=6),
    in_field=st.booleans(),
)
@example(chain=["::ffff:0:0"], trusted_mask=[False] * 6, in_field=False)  # mapped → IPv4
@example(chain=["::ffff:10.0.0.1", "198.51.100.7"], trusted_mask=[False, True] + [False] * 4,
         in_field=True)
def test_forwarded_for_chains(chain: list[str], trusted_mask: list[bool], in_field: bool) -> None:
    trusted = [f"{a}/{32 if ':' not in a else 128}"
               for a, t in zip(chain, trusted_mask, strict=False) if t]
    masker = IPMasker(24, 48, trusted)
    is_trusted = [ipaddress.ip_address(a) in {ipaddress.ip_network(t).network_address
                                              for t in trusted} for a in chain]
    if in_field:
        client = masker.client(", ".join(chain))
    else:
        client = masker.client(chain[-1], ", ".join(chain[:-1]) or None)
    # Expected: right-most untrusted; if the peer itself is untrusted it is the client.
    expected = chain[0]
    for addr, t in zip(reversed(chain), reversed(is_trusted), strict=True):
        if not t:
            expected = addr
            break
    assert client.ip == _plain(expected)
    if not in_field and not is_trusted[-1]:
        assert client.ip == _plain(chain[-1])
    assert len(client.chain) == len(chain)
    for raw in chain:
        assert_hidden(raw, client, masker, 24, 48)
