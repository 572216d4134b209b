"""Aggregates keep only closed vocabularies or k-safe values (issue 15, point 2): nothing a client
typed (a method, a forged User-Agent) outlives its session in the aggregates."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from collector.aggregates.schema import DIMS
from collector.commands.ua_vocab import families, render, rule_families
from masking.ua_families import BROWSERS, OSES
from masking.vocab import HTTP_METHODS, NEEDS_K, OTHER, RULES, aggregate_value
from tests.aggtools import db_rows, rec, ship, start, wait_for
from tests.conftest import data_file

FORGED = {
    "203.0.113.177/1.0 CFNetwork/758.0.2 Darwin/15.0.0": "203.0.113.177",
    "ZZMARKA Spider/1.0": "ZZMARKA Spider",
}


def test_every_dimension_has_a_stated_rule() -> None:
    assert set(DIMS) <= set(RULES), set(DIMS) - set(RULES)
    assert set(RULES.values()) <= {"closed", "masked", "operator", "registry", "k"}
    assert aggregate_value("some_new_dimension", "anything") == NEEDS_K  # default: the k rule


@pytest.mark.parametrize(("dim", "value", "stored"), [
    ("method", "GET", "GET"), ("method", "PROPFIND", "PROPFIND"),
    ("method", "203.0.113.222", OTHER), ("method", "METHZQXJABC", OTHER), ("method", "get", OTHER),
    ("browser", "Chrome", "Chrome"), ("browser", "Mobile Safari", "Mobile Safari"),
    ("browser", "203.0.113.177", OTHER), ("browser", "ZZMARKA Spider", OTHER),
    ("os", "Windows", "Windows"), ("os", "iOS", "iOS"), ("os", "203.0.113.9", OTHER),
    ("device_type", "mobile", "mobile"), ("device_type", "phone-of-bob", OTHER),
    ("country", "DE", "DE"), ("country", "203.0.113.1", OTHER),
    ("asn", "3320", "3320"), ("asn", "AS-bob", OTHER),
    ("network", "198.51.100.0/24", "198.51.100.0/24"),
    ("network", "2001:db8::/48", "2001:db8::/48"),
    ("network", "198.51.100.145/24", OTHER), ("network", "198.51.100.145/32", OTHER),
    ("source", "nginx-eu", "nginx-eu"), ("source", "203.0.113.5", OTHER),
    ("isp", "Deutsche Telekom AG", "Deutsche Telekom AG"),
    ("path_template", "/users/:id", NEEDS_K), ("", "", ""),
])
def test_rule_per_dimension(dim: str, value: str, stored: str) -> None:
    assert aggregate_value(dim, value) == stored


def test_open_captures_contribute_no_family() -> None:
    # The CFNetwork rule captures whatever precedes "/<version> CFNetwork": open, so nothing.
    assert rule_families(r"^(.*)/(\d+)\.?(\d+)?.?(\d+)? CFNetwork", "$1") == set()
    assert rule_families(r"(Firefox|Fennec)/(\d+)", "$1") == {"Firefox", "Fennec"}
    assert rule_families(r"(?i)(firefox)/(\d+)", "$1") == set()
    assert rule_families(r"Edg/(\d+)", "Edge") == {"Edge"}
    assert {"Chrome", "Firefox", "Safari", "Edge", "Googlebot"} <= BROWSERS
    assert {"Windows", "Mac OS X", "iOS", "Android", "Linux"} <= OSES
    assert not {"203.0.113.177", "ZZMARKA Spider", "Other"} & BROWSERS


def test_generated_families_are_current() -> None:
    uap = data_file("ua/test_ua.yaml").parent  # copied unchanged (tests/data/NOTICE.md)
    text = render(*families(uap))
    current = (Path(__file__).resolve().parents[1] / "masking" / "ua_families.py").read_text()
    assert text == current, ("masking/ua_families.py is stale: run python -m "
                             "collector.commands.ua_vocab ../shared/corpus/ua")


def test_methods_are_upper_case_tokens() -> None:
    assert all(m.isupper() or "-" in m for m in HTTP_METHODS)


async def test_client_typed_values_do_not_outlive_the_session(tmp_path: Path) -> None:
    """The issue's reproduction: a method and forged User-Agents, then the idle timeout."""
    data = tmp_path / "data"
    client = await start(data, **{"sessions.idle_timeout": "2s", "sessions.sweep_interval": "0.2s"})
    try:
        now = time.time()
        records = [rec("203.0.113.10", now, method="203.0.113.222"),
                   rec("203.0.113.11", now, method="METHZQXJABCDEF")]
        records += [rec(f"203.0.113.{20 + i}", now, ua=ua) for i, ua in enumerate(FORGED)]
        await ship(client, records)

        async def forgotten() -> bool:
            return db_rows(data, "SELECT count(*) FROM records") == [(0,)]

        await wait_for(forgotten, timeout=30)
    finally:
        await client.close()
    rows = db_rows(data, "SELECT dim, value FROM agg")
    values = {v for _, v in rows}
    assert "203.0.113.222" not in values and "METHZQXJABCDEF" not in values
    assert not set(FORGED.values()) & values, values
    assert ("method", OTHER) in rows and ("method", "GET") in rows
    assert ("browser", OTHER) in rows
    blob = (data / "lethelog.db").read_bytes()
    for typed in ("203.0.113.222", "METHZQXJABCDEF", *FORGED.values()):
        assert typed.encode() not in blob, typed
