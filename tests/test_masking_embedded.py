"""IPv6 addresses that carry an IPv4 address are masked as that IPv4 address (issue 15, point 1):
in the masker, and end to end in records, the aggregates' ``network`` dimension, audit entries
and the service's own log."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.log import configure_logging
from masking.ip import IPMasker, embedded_ipv4
from tests.aggtools import db_rows, rec, ship, start

V4 = "198.51.100.145"  # c633:6491
V4_INT = int(ipaddress.IPv4Address(V4))


def forms_of(v4: int) -> dict[str, str]:
    """Every IPv6 form that carries ``v4`` (RFC references in docs/masking.md)."""
    a = ipaddress.IPv4Address(v4)
    hi, lo = v4 >> 16, v4 & 0xFFFF
    ob = v4 ^ 0xFFFFFFFF
    return {
        "mapped": f"::ffff:{a}",
        "mapped-hex": f"::ffff:{hi:x}:{lo:x}",
        "translated": f"::ffff:0:{a}",
        "compatible": f"::{a}",
        "6to4": f"2002:{hi:x}:{lo:x}::1",
        "6to4-host": f"2002:{hi:x}:{lo:x}:beef:1:2:3:4",
        "teredo": f"2001:0:4136:e378:8000:63bf:{ob >> 16:x}:{ob & 0xFFFF:x}",
        "nat64": f"64:ff9b::{a}",
        "nat64-hex": f"64:ff9b::{hi:x}:{lo:x}",
        "nat64-local": f"64:ff9b:1::{a}",
        "isatap": f"fe80::5efe:{a}",
        "isatap-global": f"2001:db8:1:2:200:5efe:{a}",
    }


@pytest.mark.parametrize(("kind", "form"), sorted(forms_of(V4_INT).items()))
def test_every_form_is_masked_as_the_ipv4_address(kind: str, form: str) -> None:
    assert IPMasker(24, 48).mask(form) == "198.51.100.0", kind
    assert IPMasker(16, 128).mask(form) == "198.51.0.0", kind  # the IPv4 rule, not the IPv6 one
    assert IPMasker(24, 48).client(f"[{form}]:443").masked == "198.51.100.0"


def test_the_issue_reproduction() -> None:
    # 2002:c633:6491::1 used to be stored as 2002:c633:6491:: — its /48 *is* 198.51.100.145.
    assert IPMasker().mask("2002:c633:6491::1") == "198.51.100.0"


def test_other_nat64_layouts_keep_at_most_the_prefix() -> None:
    # RFC 6052 /48 layout under the local-use prefix: the address sits in bits 48..87.
    assert IPMasker(24, 128).mask("64:ff9b:1:c633:64:9100::") == "64:ff9b:1::"
    assert IPMasker(24, 64).mask("64:ff9b:0:c633:64:9100::") == "64:ff9b::"


def test_plain_ipv6_is_untouched() -> None:
    assert IPMasker().mask("2001:db8:85a3:8d3:1319:8a2e:370:7348") == "2001:db8:85a3::"
    assert IPMasker().mask("::1") == "::" and IPMasker().mask("::") == "::"
    assert embedded_ipv4(ipaddress.IPv6Address("2a00:1450:4001:82b::200e").packed) is None


@settings(max_examples=300)
@given(v4=st.integers(0x01000000, 0xDFFFFFFF), bits=st.integers(0, 32), v6=st.integers(0, 128),
       kind=st.sampled_from(sorted(forms_of(V4_INT))))
def test_masked_form_is_the_ipv4_network(v4: int, bits: int, v6: int, kind: str) -> None:
    form = forms_of(v4)[kind]
    net = ipaddress.ip_network(f"{ipaddress.IPv4Address(v4)}/{bits}", strict=False)
    assert IPMasker(bits, v6).mask(form) == str(net.network_address)


# --------------------------------------------------------------------------- end to end

UAS = [f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{100 + i}.0" for i in range(6)]


async def test_records_aggregates_audit_and_log_hold_only_the_masked_ipv4(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    log_path = tmp_path / "service.log"
    forms = forms_of(V4_INT)
    with open(log_path, "w") as fh:
        configure_logging("debug", fh)
        client = await start(data)
        try:
            now = time.time()
            recs: list[dict[str, Any]] = []
            for i, form in enumerate(forms.values()):
                for j, ua in enumerate(UAS):  # six sessions per form: past k = 5
                    recs.append(rec(form, now - 60 + i + j * 0.01, path="/x", ua=ua))
            await ship(client, recs)
            resp = await client.get("/v1/records?limit=1000")
            body = await resp.read()
            stored = [orjson.loads(x) for x in body.splitlines() if x]
            assert len(stored) == len(recs)
            assert {r["ip"] for r in stored} == {"198.51.100.0"}
            resp = await client.get("/v1/aggregates?by=network")
            assert resp.status == 200
            nets = {row["network"] for row in (await resp.json())["rows"]}
            assert nets == {"198.51.100.0/24"}, nets
            q = " or ".join(f'ip = "{f}"' for f in forms.values())
            resp = await client.get("/v1/query", params={"q": q})
            assert resp.status == 200, await resp.text()
        finally:
            await client.close()
            configure_logging("info")
    stored_nets = {v for (v,) in db_rows(data, "SELECT DISTINCT value FROM agg "
                                               "WHERE dim = 'network'")}
    assert stored_nets == {"198.51.100.0/24"}
    audit = (data / "audit.log").read_text()
    assert "198.51.100.0" in audit
    texts = {"audit.log": audit, "service log": log_path.read_text()}
    for name, text in texts.items():
        low = text.lower()
        for kind, form in forms.items():
            assert form.lower() not in low, (name, kind)
        for piece in ("c633:6491", "198.51.100.145", "39cc:9b6e"):
            assert piece not in low, (name, piece)
