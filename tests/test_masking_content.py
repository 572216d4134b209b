"""Addresses inside request content are truncated like the client's (issue 15, point 3): the
query, the path, the referrer's host and path, ``host``, an Android agent's ``device``,
``method`` and ``protocol``; IPv4 and IPv6, in every spelling a parser would accept."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masking.ip import IPMasker
from masking.textaddr import TextMasker, find_addresses, parse_host
from masking.url import UrlScrubber
from tests.aggtools import rec, ship, start

T = TextMasker(IPMasker(24, 48).mask_packed)
U = UrlScrubber(addresses=T)
V4 = "203.0.113.205"  # cb00:71cd
V6 = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"


def spellings_v4(a: int, b: int, c: int, d: int) -> list[str]:
    """How a client can write a.b.c.d so that some parser reads it as that address."""
    n = a << 24 | b << 16 | c << 8 | d
    return [
        f"{a}.{b}.{c}.{d}", f"{a:03d}.{b:03d}.{c:03d}.{d:03d}", f"{a}.{b}.{c}.{d}:8080",
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}", f"0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}", f"0x{n:08x}",
        f"::ffff:{a}.{b}.{c}.{d}", f"[::ffff:{a}.{b}.{c}.{d}]:443",
        f"2002:{n >> 16:x}:{n & 0xFFFF:x}::1",
        f"{a}-{b}-{c}-{d}", f"{a}%2e{b}%2e{c}%2e{d}",
    ]


def host_spellings_v4(a: int, b: int, c: int, d: int) -> list[str]:
    """The shortened ``inet_aton`` forms a URL host or ``Host`` header accepts as well."""
    n = a << 24 | b << 16 | c << 8 | d
    return [str(n), f"{a}.{n & 0xFFFFFF}", f"{a}.{b}.{n & 0xFFFF}", f"{n}:80", f"0x{n:X}."]


@pytest.mark.parametrize("text", spellings_v4(203, 0, 113, 205))
def test_every_ipv4_spelling_in_text(text: str) -> None:
    out = T.text(f"/a/{text}/b")
    assert "205" not in out and "cd" not in out.lower().replace("/a/", ""), out
    assert "203" in out or "0xcb" in out.lower() or "cb00" in out, out


@pytest.mark.parametrize("host", [*host_spellings_v4(203, 0, 113, 205),
                                  *spellings_v4(203, 0, 113, 205)])
def test_every_ipv4_spelling_as_host(host: str) -> None:
    out = T.host(host)
    assert parse_host(host) is not None or find_addresses(host), host
    assert out.split(":")[0].rstrip(".") in ("203.0.113.0", "203-0-113-0"), (host, out)


@pytest.mark.parametrize("text", [
    V6, V6.upper(), "2001:0db8:aaaa:bbbb:cccc:dddd:eeee:ffff", f"[{V6}]:443", f"{V6}%eth0",
    f"{V6}%25eth0", "2001%3Adb8%3Aaaaa%3Abbbb%3Acccc%3Adddd%3Aeeee%3Affff",
    "2001:db8:aaaa:bbbb:cccc:dddd:238.238.255.255",
])
def test_every_ipv6_spelling(text: str) -> None:
    out = T.text(f"x {text} y")
    assert "2001:db8:aaaa::" in out and "bbbb" not in out.lower() and "ffff" not in out.lower()


def test_urls_and_referrers() -> None:
    assert U.target(f"/x?ip={V4}") == ("/x", "ip=203.0.113.0")
    assert U.target(f"/users/{V4}/x") == ("/users/203.0.113.0/x", None)
    assert U.target("/x?client_ip=3405803989&id=3405803989") == (
        "/x", "client_ip=203.0.113.0&id=3405803989")  # a bare number is an address by name only
    assert U.target("/x?h=%5B2001%3Adb8%3Aaaaa%3A%3A1%5D%3A80")[1] == "h=[2001:db8:aaaa::]:80"
    assert U.referrer(f"http://{V4}:8080/p/{V4}?q") == "http://203.0.113.0:8080/p/203.0.113.0"
    assert U.referrer("http://3405803989/") == "http://203.0.113.0/"
    assert U.referrer(f"https://[{V6}]/p") == "https://[2001:db8:aaaa::]/p"


def test_ordinary_text_is_untouched() -> None:
    for text in ("Chrome/120.0.6099.109", "HTTP/1.1", "2026-12-02", "10:15:30", "/v1.2.3/x",
                 "/a/1.2.3.4.5", "/id/3405803989", "Mozilla/5.0 (X11; Linux x86_64)"):
        assert T.text(text) == text


@settings(max_examples=300)
@given(a=st.integers(1, 223), b=st.integers(0, 255), c=st.integers(0, 255),
       d=st.integers(1, 255), form=st.integers(0, 10))
def test_generated_ipv4_spellings(a: int, b: int, c: int, d: int, form: int) -> None:
    text = spellings_v4(a, b, c, d)[form]
    spans = find_addresses(f"/p/{text}/q")
    assert len(spans) == 1, (text, spans)
    full = IPMasker(32, 128).mask_packed(spans[0][2])
    if form == 1:  # zero-padded: inet_aton reads 010 as octal 8, a person as decimal 10
        octal = ".".join(str(int(p, 8)) if p[0] == "0" and all(ch in "01234567" for ch in p)
                         else str(int(p)) for p in text.split("."))
        assert full in (f"{a}.{b}.{c}.{d}", octal), (text, full)
        a, b, c = (int(x) for x in full.split(".")[:3])
    else:
        assert full == f"{a}.{b}.{c}.{d}", (text, spans)
    out = T.text(f"/p/{text}/q")
    sep = "-" if form == 9 else "."
    rest = {2: ":8080", 7: ":443"}.get(form, "")
    assert out == f"/p/{a}{sep}{b}{sep}{c}{sep}0{rest}/q", (text, out)


async def test_addresses_in_every_content_field_are_masked(tmp_path: Path) -> None:
    """The issue's reproduction, end to end: stored records hold only the masked forms."""
    data = tmp_path / "data"
    client = await start(data)
    android = (f"Mozilla/5.0 (Linux; Android 13; {V4} Build/TQ3A.230805) AppleWebKit/537.36 "
               "(KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36")
    now = time.time()
    try:
        await ship(client, [
            rec("198.51.100.1", now, path=f"/x?ip={V4}"),
            rec("198.51.100.2", now, path=f"/a/{V4}/b"),
            rec("198.51.100.3", now, referrer=f"http://{V4}/from/{V6}"),
            rec("198.51.100.4", now, host=f"{V4}:8080"),
            rec("198.51.100.5", now, ua=android),
            rec("198.51.100.6", now, method=V4),
            rec("198.51.100.7", now, protocol=f"HTTP/{V6}"),
            rec("198.51.100.8", now, path=f"/y?addr=[{V6}]:443&n=0x{0xCB0071CD:x}"),
        ])
        resp = await client.get("/v1/records?limit=100")
        body = await resp.read()
    finally:
        await client.close()
    stored = [orjson.loads(x) for x in body.splitlines() if x]
    assert len(stored) == 8
    by_ip = {r["ip"]: r for r in stored}
    assert by_ip["198.51.100.0"] is not None
    # the records without their random session ids (a hex id may hold "205" by chance)
    text = orjson.dumps([{k: v for k, v in r.items() if k != "session"} for r in stored]).decode()
    for needle in (V4, "205", "eeee", "ffff", "cb0071cd"):
        assert needle not in text.lower(), needle
    assert "203.0.113.0" in text and "2001:db8:aaaa::" in text
    devices = {r["device"] for r in stored if r["device"]}
    assert "203.0.113.0" in devices, devices
    db = b"".join(p.read_bytes() for p in data.iterdir() if p.is_file())
    assert V4.encode() not in db and b"eeee:ffff" not in db
