"""The columnar engine against the record-at-a-time oracle (tests/oracle/): identical stored
records (every field), dropped lines, and rejected line numbers and reasons.

Inputs: every log in ``tests/data/logs`` and ``../shared/corpus/logs``, the bench generator's
output, and hypothesis-generated batches (mixed IPv4/IPv6/forwarded-for, bad lines, out-of-order
and future times, several sites, consent signals). A difference fails naming the line and field.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.settings import Settings, load_settings
from tests.conftest import CORPUS
from tests.oracle.differential import Pair, compare_body, compare_file

ROOT = Path(__file__).resolve().parent.parent
DATA_LOGS = ROOT / "tests" / "data" / "logs"
CORPUS_LOGS = CORPUS / "logs"
MMDB = ROOT / "tests" / "data" / "mmdb"


def geo_settings(tmp_path: Path, extra: str = "") -> Settings:
    cfg = tmp_path / "lethelog.toml"
    cfg.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[enrich]\ncity_db = "{MMDB / "GeoIP2-City-Test.mmdb"}"\n'
        f'asn_db = "{MMDB / "GeoLite2-ASN-Test.mmdb"}"\n' + extra)
    return load_settings(cfg, env={})


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(geo_settings(tmp_path))
    yield p
    p.close()


@pytest.fixture()
def sites_pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(geo_settings(tmp_path, SITES), max_age=30 * 86400.0)  # serve's lower time bound
    yield p
    p.close()


def _logs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".md"))


@pytest.mark.parametrize("path", _logs(DATA_LOGS), ids=lambda p: p.name)
def test_engine_equals_oracle_on_test_logs(pair: Pair, path: Path) -> None:
    diffs = compare_file(pair, path)
    assert not diffs, "\n".join(diffs[:20])


def test_engine_equals_oracle_on_corpus_logs(pair: Pair) -> None:
    if not CORPUS_LOGS.is_dir():
        pytest.skip("../shared/corpus/logs is absent (the shared corpus is not checked out)")
    diffs: list[str] = []
    for path in _logs(CORPUS_LOGS):
        diffs += compare_file(pair, path)
    assert not diffs, "\n".join(diffs[:40])


# --------------------------------------------------------------------------- bench generator

def test_engine_equals_oracle_on_the_bench_generator(tmp_path: Path, pair: Pair) -> None:
    from bench.gen_log import generate

    log = tmp_path / "gen.log"
    generate(3000, log, seed=7, clients_n=800, v6_share=0.2, ua_pool_size=500, rate=20.0,
             start=1_780_000_000.0)
    diffs = compare_file(pair, log)
    assert not diffs, "\n".join(diffs[:20])


# --------------------------------------------------------------------------- generated batches

SITES = """
[masking]
trusted_proxies = ["10.0.0.0/8", "fd00::/8"]
[[sites]]
name = "a"
hosts = ["a.example", "*.a.example"]
ipv4_keep_bits = 16
[[sites]]
name = "b"
hosts = ["b.example"]
consent = "drop"
"""

_CLIENTS = st.sampled_from([
    "198.51.100.7", "203.0.113.250", "81.2.69.142", "2.125.160.216", "0.0.0.0", "255.255.255.255",
    "2001:db8::1", "2a02:c7f:2a00::1", "[2001:db8::5]:443", "198.51.100.7:8080", "::ffff:1.2.3.4",
    "10.1.2.3, 203.0.113.9", "203.0.113.9, 10.1.2.3", "unix:", "-", "", "proxy.internal",
    "1.2.3", "01.2.3.4", "999.1.1.1", "fe80::1%eth0", "2002:c000:0204::1", "64:ff9b::c000:221",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "1.2.3.4:99999", "[::1", "a,b",
])
_FORWARDED = st.one_of(st.none(), st.sampled_from([
    "203.0.113.9", "198.51.100.1, 10.0.0.2", "2001:db8::9", "-", "garbage", "10.0.0.1"]))
_HOSTS = st.one_of(st.none(), st.sampled_from(
    ["a.example", "www.a.example", "b.example", "b.example:8080", "c.example", "", "[::1]"]))
_TARGETS = st.one_of(st.none(), st.sampled_from([
    "/", "/index.html", "/users/123/orders/9?token=secret&page=2", "/search?q=hello+world",
    "/a/0f8fad5b-d9cb-469f-a165-70867728950e", "/login?password=x", "/x?email=a@b.example",
    "/redirect?url=http://198.51.100.7/p", "", "/%E2%82%AC?utm_source=x"]))
_AGENTS = st.one_of(st.none(), st.sampled_from([
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Googlebot/2.1 (+http://www.google.com/bot.html)", "curl/8.4.0", "-", ""]))
_REFERRERS = st.one_of(st.none(), st.sampled_from([
    "https://www.google.com/search?q=x", "https://user:pw@a.example/p?q=1#f", "-",
    "http://198.51.100.7/admin", "android-app://com.google.android.gm"]))
_LANGS = st.one_of(st.none(), st.sampled_from(
    ["de-DE,de;q=0.9,en;q=0.8", "en", "*", "x" * 1100, "fr-ch, fr;q=0.9, en;q=0.8", ";;"]))
_FLAGS = st.one_of(st.none(), st.sampled_from(["1", "0", "true", True, False, 1, "yes"]))
_TIMES = st.one_of(
    st.floats(min_value=1.6e9, max_value=1.79e9 + 7200),  # some beyond the skew: rejected
    st.sampled_from(["2026-06-01T10:00:00Z", "2026-06-01T10:00:00.123456789+02:00",
                     "01/Jun/2026:10:00:00 +0000", "yesterday", "", None, 1_780_000_000_000]))


@st.composite
def json_record(draw: st.DrawFn) -> dict[str, object]:
    rec: dict[str, object] = {"time": draw(_TIMES), "client": draw(_CLIENTS)}
    for key, strategy in (("forwarded_for", _FORWARDED), ("host", _HOSTS),
                          ("target", _TARGETS), ("user_agent", _AGENTS),
                          ("referrer", _REFERRERS), ("accept_language", _LANGS),
                          ("dnt", _FLAGS), ("gpc", _FLAGS),
                          ("status", st.one_of(st.none(), st.sampled_from([200, 404, "301", 1000,
                                                                           "x"]))),
                          ("bytes", st.one_of(st.none(), st.integers(0, 10**7))),
                          ("method", st.one_of(st.none(), st.sampled_from(["GET", "-", ""]))),
                          ("session_hint", st.one_of(st.none(), st.sampled_from(["abc", ""])))):
        value = draw(strategy)
        if value is not None:
            rec[key] = value
    return rec


@st.composite
def clf_line(draw: st.DrawFn) -> str:
    client = draw(_CLIENTS) or "-"
    t = draw(st.integers(1_600_000_000, 1_790_003_000))
    stamp = datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    target = draw(_TARGETS) or "/"
    prefix = draw(st.sampled_from(["", "a.example ", '"203.0.113.9, 10.0.0.1" ']))
    ref = draw(_REFERRERS) or "-"
    agent = draw(_AGENTS) or "-"
    return (f'{prefix}{client} - - [{stamp}] "GET {target} HTTP/1.1" '
            f'{draw(st.sampled_from(["200", "404", "-"]))} {draw(st.integers(0, 9999))} '
            f'"{ref}" "{agent}"')


_BAD = st.sampled_from(["not json", "[1, 2]", '{"client": "1.2.3.4"}', "{", "", "   ", "null"])


@given(batch=st.lists(st.one_of(json_record(), _BAD), min_size=1, max_size=40),
       scope=st.sampled_from([None, frozenset({"a"}), frozenset({"a", "b"})]))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_engine_equals_oracle_on_generated_ndjson(sites_pair: Pair, batch: list[object],
                                                  scope: frozenset[str] | None) -> None:
    lines = [x if isinstance(x, str) else orjson.dumps(x).decode() for x in batch]
    body = "\n".join(lines).encode()
    diffs = compare_body(sites_pair, body, "application/x-ndjson", source="gen", sites=scope)
    assert not diffs, "\n".join(diffs[:20]) + "\n--- body:\n" + body.decode()[:3000]


@given(batch=st.lists(st.one_of(clf_line(), st.sampled_from(
    ["garbage line", '1.2.3.4 - - [01/Jun/2026:10:00:00 +0000] "GET / HTTP/1.1 200 5']
)), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_engine_equals_oracle_on_generated_text(sites_pair: Pair, batch: list[str]) -> None:
    body = "\n".join(batch).encode()
    diffs = compare_body(sites_pair, body, "text/plain", fmt="combined", source="gen")
    assert not diffs, "\n".join(diffs[:20]) + "\n--- body:\n" + body.decode()[:3000]
