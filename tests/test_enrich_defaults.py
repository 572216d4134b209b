"""Zero-config enrichment from the plevin databases on PyPI: AS number, ISP, country, city.

The oracle for the converted tables is plevin's own public ``lookup`` (independent code reading
the same file); the coverage figures are the ones docs/enrichment.md states.
"""

from __future__ import annotations

import ipaddress
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from collector.enrich import fastdata
from collector.enrich.geo import GeoEnricher
from collector.settings import EnrichSettings
from masking.ip import IPMasker

SAMPLE = Path(__file__).parent / "data" / "logs" / "elastic-examples_apache_logs"
MMDB = Path(__file__).parent / "data" / "mmdb"
COVERAGE = 0.96  # docs/enrichment.md: asn and isp for at least 96 % of the sample's records

place_src = fastdata.find_source("place")
network_src = fastdata.find_source("network")
needs_plevin = pytest.mark.skipif(place_src is None or network_src is None,
                                  reason="plevin-db-place / plevin-db-network (dependencies) "
                                  "not installed")


def _oracle(db: Any, ip: str) -> tuple[Any, ...]:
    """What plevin's own API answers, in the shape lethelog stores."""
    found = db.lookup(ip)
    net = found.network
    asn = org = None
    if net is not None and net.asn:
        asn = net.asn
        org = (net.operator.company if net.operator and net.operator.company else None) \
            or net.handle or None
    place = found.place
    country = region = city = zone = None
    if place is not None and place.country is not None and place.country.code:
        country = place.country.code
        c = place.city
        if c is not None:
            city = c.name
            region = c.region.name if c.region is not None else None
            zone = c.timezone
    return asn, org, country, region, city, zone


def _ours(readers: dict[str, fastdata.RangeReader], ip: str) -> tuple[Any, ...]:
    n = readers["network"].get(ip) or {}
    p = readers["place"].get(ip) or {}
    asn = n.get("autonomous_system_number")
    return (asn, n.get("autonomous_system_organization") if asn else None,
            (p.get("country") or {}).get("iso_code"),
            ((p.get("subdivisions") or [{}])[0].get("names") or {}).get("en"),
            ((p.get("city") or {}).get("names") or {}).get("en"),
            (p.get("location") or {}).get("time_zone"))


@needs_plevin
def test_converted_tables_answer_as_plevin_itself() -> None:
    import plevin

    assert place_src is not None and network_src is not None
    readers = {"place": fastdata.open_cached("place", place_src),
               "network": fastdata.open_cached("network", network_src)}
    dbs = {"place": plevin.Plevin(place_src), "network": plevin.Plevin(network_src)}
    rnd = random.Random(12)
    addresses = [f"{rnd.randint(1, 223)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.0"
                 for _ in range(3000)]
    # IPv6: the first and the last /64 of randomly chosen ranges (range edges are where a
    # conversion goes wrong), picked from the converted table, answered by both
    starts = readers["network"].t["v6"]
    for i in rnd.sample(range(1, len(starts)), 500):
        for key in (starts[i], starts[i] - 1):
            addresses.append(str(ipaddress.IPv6Address(key << 64)))
    cities = answered6 = 0
    for ip in addresses:
        want = _oracle(dbs["network"], ip)[:2] + _oracle(dbs["place"], ip)[2:]
        got = _ours(readers, ip)
        assert got == want, ip
        cities += got[4] is not None
        answered6 += got[0] is not None and ":" in ip
    assert cities > 1000 and answered6 > 500  # not a comparison of empty answers


@needs_plevin
def test_fresh_install_gives_asn_isp_country_for_the_sample_log(tmp_path: Path) -> None:
    g = GeoEnricher(EnrichSettings(), tmp_path)
    roles = {i["role"]: i for i in g.info()}
    assert set(roles) == {"city", "asn"}
    assert roles["asn"]["database_type"] == "Plevin-ASN"
    assert roles["city"]["database_type"] == "Plevin-City"
    assert roles["city"]["build_date"] >= "2026-10-04"
    assert "CAIDA" in roles["asn"]["licence"] and "IP2Location" in roles["city"]["licence"]
    masker = IPMasker(24, 48, [])
    n = asn = isp = country = 0
    for line in SAMPLE.read_text(errors="replace").splitlines():
        client = masker.client(line.split(" ", 1)[0], None)
        rec = g.lookup(client.masked, client.ip)
        n += 1
        asn += rec["asn"] is not None
        isp += rec["isp"] is not None
        country += rec["country"] is not None
    assert n == 10000
    assert asn / n >= COVERAGE and isp / n >= COVERAGE
    assert country / n >= 0.99
    google = g.lookup("8.8.8.0", None)
    assert (google["asn"], google["isp"], google["country"]) == (15169, "Google LLC", "US")


@needs_plevin
def test_configured_databases_are_not_overridden(tmp_path: Path) -> None:
    g = GeoEnricher(EnrichSettings(city_db=MMDB / "GeoIP2-City-Test.mmdb",
                                   asn_db=MMDB / "GeoLite2-ASN-Test.mmdb"), tmp_path)
    assert sorted(i["role"] for i in g.info()) == ["asn", "city"]
    assert not any(i["default"] for i in g.info())


def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "xdg" / "lethelog"


@needs_plevin
def test_a_damaged_cache_is_converted_again(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert network_src is not None
    cache = _isolated_cache(tmp_path, monkeypatch)
    fastdata.open_cached("network", network_src)
    (converted,) = cache.iterdir()
    converted.write_bytes(converted.read_bytes()[:100_000])
    reader = fastdata.open_cached("network", network_src)
    assert reader.get("1.1.1.0") == {"autonomous_system_number": 13335,
                                     "autonomous_system_organization": "Cloudflare, Inc."}
    assert converted.stat().st_size > 1_000_000


@needs_plevin
def test_first_start_serves_the_fallback_then_swaps_the_conversion_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _isolated_cache(tmp_path, monkeypatch)
    # location configured: only the network database is pending (one conversion, not two)
    g = GeoEnricher(EnrichSettings(city_db=MMDB / "GeoIP2-City-Test.mmdb"), tmp_path,
                    background=True)
    assert [i["role"] for i in g.info()] == ["city"]  # started at once, no ASN yet
    assert g.lookup("8.8.8.0", None)["asn"] is None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and g.generation == 1:
        time.sleep(0.2)
    assert g.generation == 2
    assert {i["role"] for i in g.info()} == {"city", "asn"}
    assert g.lookup("8.8.8.0", None)["asn"] == 15169
    assert any(cache.iterdir())
    g.close()
    shutil.rmtree(cache)


def test_default_off_loads_nothing(tmp_path: Path) -> None:
    g = GeoEnricher(EnrichSettings(default_db=False), tmp_path)
    assert g.info() == []


@pytest.mark.parametrize("values, watches_asn", [
    ({}, network_src is not None),  # the plevin default answers AS numbers
    ({"enrich.default_db": "false"}, False),
    ({"enrich.default_db": "false", "enrich.asn_db": str(MMDB / "GeoLite2-ASN-Test.mmdb")},
     True),
])
def test_new_source_watches_asns_only_with_an_as_number_database(
        tmp_path: Path, values: dict[str, str], watches_asn: bool) -> None:
    from collector.detect import DetectorRunner
    from tests.service import make_settings

    runner = DetectorRunner(make_settings(tmp_path / "data", **values), object())
    runner.engine.add_site("default")
    (newcomer,) = [d for d in runner.engine.detectors["default"]
                   if type(d).__name__ == "Newcomer"]
    assert set(newcomer.shares) == ({"country", "asn"} if watches_asn else {"country"})


@needs_plevin
async def test_fresh_service_enriches_and_shows_database_ages(tmp_path: Path) -> None:
    """A fresh `serve` with no GeoIP setting: records carry asn/isp, and every database's age
    is on /healthz, /metrics and the dashboard's data."""
    from datetime import UTC, datetime

    import orjson
    from aiohttp.test_utils import TestClient, TestServer

    from collector.app import create_app
    from tests.service import make_settings

    settings = make_settings(tmp_path / "data", **{"sessions.idle_timeout": "3650d"})
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S %z")
        line = f'8.8.8.8 - - [{stamp}] "GET / HTTP/1.1" 200 5 "-" "curl/8.0"'
        resp = await client.post("/v1/logs", data=line.encode(),
                                 headers={"Content-Type": "text/plain"})
        assert resp.status == 200, await resp.text()
        got = [orjson.loads(x) for x in (await (await client.get("/v1/records")).read())
               .splitlines() if x]
        assert [(r["asn"], r["isp"], r["country"]) for r in got] == [
            (15169, "Google LLC", "US")]
        health = await (await client.get("/healthz")).json()
        ages = {d["role"]: d["age_days"] for d in health["databases"]}
        assert set(ages) == {"city", "asn"}
        metrics = await (await client.get("/metrics")).text()
        for role, age in ages.items():
            assert f'lethelog_geoip_database_age_days{{kind="{role}"}} {float(age)}' in metrics
        summary = await client.get("/dashboard/api/summary")
        assert summary.status == 200
        data = await summary.json()
        assert {d["role"]: d["age_days"] for d in data["databases"]} == ages
    finally:
        await client.close()
