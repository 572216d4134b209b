"""The audit log masks by parsing (issue 15, point 4): query text is tokenised with the query
language's lexer; every literal that parses as an address in any spelling is truncated, and a
regex literal that could match a specific address becomes ``[regex]``."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.query.redact import redact_addresses, regex_could_match_address
from tests.aggtools import rec, ship, start


@pytest.mark.parametrize(("query", "kept"), [
    (r"path ~ /203\.0\.113\.79/", "path ~ [regex]"),  # the two reproductions
    ('ip = "203.000.113.083"', 'ip = "203.0.113.0"'),
    ('ip = "0313.0.0161.0123"', 'ip = "203.0.113.0"'),
    ('ip = "0xcb.0.0x71.0x53"', 'ip = "203.0.113.0"'),
    ('ip = "0xCB007153"', 'ip = "203.0.113.0"'),
    ("ip = 3405803859", "ip = 203.0.113.0"),
    ('ip = "3405803859"', 'ip = "203.0.113.0"'),
    ('ip = "203.29011"', 'ip = "203.0.113.0"'),
    ('ip = "[2001:db8:1:2::5]:443"', 'ip = "[2001:db8:1::]:443"'),
    ('ip = "2001:DB8:0001:0002:0000:0000:0000:0005"', 'ip = "2001:db8:1::"'),
    ('ip = "2002:cb00:7153::1"', 'ip = "203.0.113.0"'),
    ('ip = "::ffff:203.0.113.83"', 'ip = "203.0.113.0"'),
    ("ip = '203.0.113.83'", "ip = '203.0.113.0'"),
    ('ip in ("203.0.113.83", "198.51.100.7")', 'ip in ("203.0.113.0", "198.51.100.0")'),
    ('path = "/u/203%2e0%2e113%2e83/x"', 'path = "/u/203.0.113.0/x"'),
    ('referrer ^= "http://3405803859/x"', 'referrer ^= "http://203.0.113.0/x"'),
    (r'path ~ r"203[.]0[.]113[.]83"', "path ~ [regex]"),
    (r"path ~ /203\x2e0\x2e113\x2e83/", "path ~ [regex]"),
    (r"path ~ /(203)\.(0)\.(113)\.(83)/", "path ~ [regex]"),
    (r"ip ~ /^203\.0\.113\.\d+$/", "ip ~ [regex]"),
    ("path ~ /2001:db8:1:2::5/", "path ~ [regex]"),
    ("path ~ /3405803859/", "path ~ [regex]"),
    # what is not an address stays as typed
    ("status >= 500 | count by path", "status >= 500 | count by path"),
    ("bytes > 3405803859", "bytes > 3405803859"),
    (r"path ~ /^\/api\/v[0-9]+/", r"path ~ /^\/api\/v[0-9]+/"),
    ('browser = "Chrome" and time > 2026-12-01', 'browser = "Chrome" and time > 2026-12-01'),
])
def test_literals_and_regexes(query: str, kept: str) -> None:
    assert redact_addresses(query) == kept


def test_text_the_lexer_cannot_read_is_masked_as_free_text() -> None:
    assert redact_addresses('ip = "203.0.113.83') == 'ip = "203.0.113.0'  # unterminated
    assert redact_addresses('{"q": 3405803859}') == '{"q": 203.0.113.0}'


octet = st.integers(0, 255)


@settings(max_examples=300)
@given(a=st.integers(1, 223), b=octet, c=octet, d=st.integers(1, 255),
       form=st.sampled_from(["dec", "pad", "oct", "hex", "int", "hexint", "mapped", "6to4"]),
       quote=st.sampled_from(['"', "'"]))
def test_generated_literals_never_keep_the_host_part(a: int, b: int, c: int, d: int, form: str,
                                                     quote: str) -> None:
    n = a << 24 | b << 16 | c << 8 | d
    text = {"dec": f"{a}.{b}.{c}.{d}", "pad": f"{a:03d}.{b:03d}.{c:03d}.{d:03d}",
            "oct": f"0{a:o}.0{b:o}.0{c:o}.0{d:o}", "hex": f"0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}",
            "int": str(n), "hexint": f"0x{n:08x}", "mapped": f"::ffff:{a}.{b}.{c}.{d}",
            "6to4": f"2002:{n >> 16:x}:{n & 0xFFFF:x}::1"}[form]
    out = redact_addresses(f"ip = {quote}{text}{quote}")
    masked = out.split(quote)[1]
    if form != "pad":  # zero-padded parts are octal to inet_aton: either reading is masked
        assert masked == f"{a}.{b}.{c}.0", (text, out)
    assert masked.endswith(".0") and text not in out, (text, out)
    regex = redact_addresses("path ~ /" + text.replace(".", r"\.") + "/")
    assert regex == "path ~ [regex]", (text, regex)


def test_regex_detection_errs_on_hiding() -> None:
    for rx in (r"203\.0\.113\.83", "203.0.113.83", r"203\.0\.113\.\d{1,3}", "cb00:7153",
               r"2001:db8::1", r"0xcb007153", r"203[^0-9]0[^0-9]113[^0-9]83"):
        assert regex_could_match_address(rx), rx
    for rx in (r"^/api/", r"\.php$", "wp-login", r"^/v[0-9]+/users/[0-9]+$"):
        assert not regex_could_match_address(rx), rx


async def test_service_audit_log_holds_no_typed_address(tmp_path: Path) -> None:
    data = tmp_path / "data"
    client = await start(data)
    try:
        await ship(client, [rec("203.0.113.79", time.time(), path="/x")])
        for q in (r"path ~ /203\.0\.113\.79/", 'ip = "203.000.113.083"', "ip = 3405803859",
                  'ip = "2002:cb00:714f::1" or ip = "0xCB00714F"'):
            resp = await client.get("/v1/query", params={"q": q})
            assert resp.status == 200, await resp.text()
    finally:
        await client.close()
    raw = (data / "audit.log").read_text()
    queries = [orjson.loads(x)["query"] for x in raw.splitlines()]
    assert queries == ["path ~ [regex]", 'ip = "203.0.113.0"', "ip = 203.0.113.0",
                       'ip = "203.0.113.0" or ip = "203.0.113.0"']
    for needle in ("113.79", "113.083", "3405803859", "714f", "714F", r"113\.79"):
        assert needle not in raw, needle
