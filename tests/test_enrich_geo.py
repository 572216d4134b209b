"""GeoEnricher against the real MaxMind test databases (tests/data/mmdb, Apache-2.0 OR MIT)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.enrich.defaults import find_default_database
from collector.enrich.geo import GEO_FIELDS, GeoEnricher
from collector.settings import EnrichSettings, load_settings
from tests.conftest import data_file

MMDB = Path(__file__).parent / "data" / "mmdb"
KEEP = {4: 24, 6: 48}


def db(name: str) -> Path:
    return data_file(f"mmdb/{name}")


def full_settings(**extra: Any) -> EnrichSettings:
    return EnrichSettings(
        city_db=db("GeoIP2-City-Test.mmdb"),
        asn_db=db("GeoLite2-ASN-Test.mmdb"),
        isp_db=db("GeoIP2-ISP-Test.mmdb"),
        anonymous_ip_db=db("GeoIP2-Anonymous-IP-Test.mmdb"),
        connection_type_db=db("GeoIP2-Connection-Type-Test.mmdb"),
        **extra,
    )


def masked(address: str) -> str:
    ip = ipaddress.ip_address(address)
    net = ipaddress.ip_network(f"{ip}/{KEEP[ip.version]}", strict=False)
    return str(net.network_address)


@pytest.fixture
def geo_full() -> Any:
    g = GeoEnricher(full_settings(geo_from="full"))
    yield g
    g.close()


# --------------------------------------------------------------------------- named answers


def test_london_all_anonymizer_flags(geo_full: GeoEnricher) -> None:
    r = geo_full.lookup(masked("81.2.69.142"), "81.2.69.142")
    assert (r["country"], r["region"], r["city"]) == ("GB", "England", "London")
    assert r["timezone"] == "Europe/London"
    assert r["is_anonymous_proxy"] and r["is_vpn"] and r["is_tor"] and r["is_hosting"]


def test_milton_century_link(geo_full: GeoEnricher) -> None:
    r = geo_full.lookup(masked("216.160.83.56"), "216.160.83.56")
    assert (r["country"], r["region"], r["city"]) == ("US", "Washington", "Milton")
    assert r["asn"] == 209
    assert r["isp"] == "Century Link"
    assert r["is_vpn"] is False  # anonymous-IP DB configured, address not flagged


def test_linkoping_bredband2(geo_full: GeoEnricher) -> None:
    r = geo_full.lookup(masked("89.160.20.128"), "89.160.20.128")
    assert (r["country"], r["city"]) == ("SE", "Linköping")
    assert r["asn"] == 29518
    assert r["isp"] == "Bredband2 AB"


def test_telstra_no_city(geo_full: GeoEnricher) -> None:
    r = geo_full.lookup(masked("1.128.3.4"), "1.128.3.4")
    assert r["asn"] == 1221
    assert r["isp"] == "Telstra Internet"
    assert r["city"] is None and r["country"] is None


def test_ipv6_norway(geo_full: GeoEnricher) -> None:
    r = geo_full.lookup(masked("2a02:cf40::1"), "2a02:cf40::1")
    assert r["country"] == "NO"
    assert r["city"] is None


def test_masked_mode_uses_the_truncated_address() -> None:
    g = GeoEnricher(full_settings())  # geo_from = "masked" by default
    # Telstra's /11 and Norway's /29 contain the truncated address; London's /31 does not.
    assert g.lookup(masked("1.128.3.4"), "1.128.3.4")["asn"] == 1221
    assert g.lookup(masked("2a02:cf40::1"), "2a02:cf40::1")["country"] == "NO"
    london = g.lookup(masked("81.2.69.142"), "81.2.69.142")
    assert london["city"] is None  # the full address was not used
    assert london["is_tor"] is True  # the anonymizer network is a /24
    assert g.lookup(None, "81.2.69.142") == dict.fromkeys(GEO_FIELDS)


def test_every_key_present_and_unknowns_none(geo_full: GeoEnricher) -> None:
    for ip in (None, "", "not-an-ip", "unix:", "10.0.0.1", "::1"):
        r = geo_full.lookup(ip, ip)
        assert set(r) == set(GEO_FIELDS)
        assert r["country"] is None and r["city"] is None


def test_flags_none_without_anonymous_db() -> None:
    g = GeoEnricher(EnrichSettings(city_db=db("GeoIP2-City-Test.mmdb"), geo_from="full",
                                   default_db=False))
    r = g.lookup(None, "81.2.69.142")
    assert r["city"] == "London"
    assert r["is_tor"] is None and r["is_vpn"] is None and r["asn"] is None


def test_isp_falls_back_to_as_organisation() -> None:
    g = GeoEnricher(EnrichSettings(asn_db=db("GeoLite2-ASN-Test.mmdb"), geo_from="full",
                                   default_db=False))
    assert g.lookup(None, "1.128.3.4")["isp"] == "Telstra Pty Ltd"
    assert g.lookup(None, "216.160.83.56")["isp"] is None  # ASN 209 has no organisation there


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        ("city", ("GB", "England", "London", "Europe/London")),
        ("region", ("GB", "England", None, "Europe/London")),
        ("country", ("GB", None, None, None)),
    ],
)
def test_geo_precision_caps_location(precision: str, expected: tuple[Any, ...]) -> None:
    g = GeoEnricher(full_settings(geo_from="full", geo_precision=precision))
    r = g.lookup(None, "81.2.69.142")
    assert (r["country"], r["region"], r["city"], r["timezone"]) == expected


def test_cache_hits_by_looked_up_address() -> None:
    g = GeoEnricher(full_settings())
    for _ in range(5):
        g.lookup("81.2.69.0", "81.2.69.142")
        g.lookup("81.2.69.0", "81.2.69.143")
    assert g.cache_info() == {"hits": 9, "misses": 1, "size": 1}


def test_returned_dict_is_a_copy(geo_full: GeoEnricher) -> None:
    geo_full.lookup(None, "81.2.69.142")["city"] = "mutated"
    assert geo_full.lookup(None, "81.2.69.142")["city"] == "London"


# --------------------------------------------------------------------------- config errors


def test_not_an_mmdb_names_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "city.mmdb"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match=r"enrich\.city_db: .* not a valid MaxMind DB"):
        GeoEnricher(EnrichSettings(city_db=bad))
    with pytest.raises(ValueError, match=r"enrich\.asn_db: .* not a valid MaxMind DB"):
        GeoEnricher(EnrichSettings(asn_db=db("GeoIP2-City-Test.json")))


def test_wrong_database_type_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"enrich\.city_db: .*'GeoLite2-ASN' database"):
        GeoEnricher(EnrichSettings(city_db=db("GeoLite2-ASN-Test.mmdb")))


def test_settings_fields_load(tmp_path: Path) -> None:
    conf = tmp_path / "l.toml"
    conf.write_text(
        '[enrich]\ngeo_from = "full"\ngeo_precision = "region"\nmax_db_age = "30d"\n'
        'reload_interval = "5s"\ndefault_db = false\n'
    )
    s = load_settings(conf, env={}).enrich
    assert (s.geo_from, s.geo_precision, s.default_db) == ("full", "region", False)
    assert s.max_db_age == 30 * 86400 and s.reload_interval == 5.0
    d = load_settings(None, env={}).enrich
    assert (d.geo_from, d.geo_precision, d.default_db) == ("masked", "city", True)


# --------------------------------------------------------------------------- info / default DB


def test_info_reports_build_date_age_source() -> None:
    g = GeoEnricher(full_settings())
    info = {i["role"]: i for i in g.info()}
    assert set(info) == {"city", "asn", "isp", "anonymous_ip", "connection_type"}
    city = info["city"]
    assert city["database_type"] == "GeoIP2-City"
    assert city["build_date"] == "2026-02-04"
    days = (dt.datetime.now(dt.UTC).date() - dt.date(2026, 2, 4)).days  # whole days since build
    assert city["age_days"] in (days - 1, days), (city["age_days"], days)
    assert "MaxMind" in city["source"]
    assert city["default"] is False


def test_stale_warning_when_older_than_max_db_age() -> None:
    g = GeoEnricher(full_settings(max_db_age=86400.0))
    city = next(i for i in g.info() if i["role"] == "city")
    assert city["stale"] is True
    assert "max_db_age" in city["warning"]


def test_packaged_city_database_is_the_fallback_without_plevin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.enrich import fastdata

    default = find_default_database()
    if default is None:
        pytest.skip("no GeoIP package from PyPI installed (maxminddb-geolite2 is a dependency)")
    monkeypatch.setattr(fastdata, "find_source", lambda kind: None)  # plevin uninstalled
    g = GeoEnricher(EnrichSettings(), tmp_path)
    assert g.configured
    (entry,) = g.info()
    assert entry["default"] is True
    assert entry["package"].startswith(default.package)
    assert entry["licence"] and entry["build_date"] < "2026-01-01"
    assert entry["stale"] is True  # every packaged City database is older than 400 days
    assert g.lookup("8.8.8.0", None)["country"] == "US"
    assert g.lookup("81.2.69.0", None)["country"] == "GB"


def test_default_db_can_be_disabled() -> None:
    g = GeoEnricher(EnrichSettings(default_db=False))
    assert not g.configured
    assert g.info() == []
    assert g.lookup("8.8.8.0", "8.8.8.8") == dict.fromkeys(GEO_FIELDS)


def test_configured_city_db_replaces_default(tmp_path: Path) -> None:
    g = GeoEnricher(EnrichSettings(city_db=db("GeoIP2-City-Test.mmdb")), tmp_path)
    # the configured City file serves location; only the missing ASN role has a default
    assert {i["role"]: i["default"] for i in g.info()} == {"city": False, "asn": True}


# --------------------------------------------------------------------------- every JSON network


def _first_address(network: str) -> tuple[str, int]:
    """First address and prefix length; ``::a.b.c.d/N`` in GeoIP2 JSON means a.b.c.d/(N-96)."""
    net = ipaddress.ip_network(network, strict=False)
    if (
        isinstance(net, ipaddress.IPv6Network)
        and net.prefixlen >= 96
        and int(net.network_address) >> 32 == 0
    ):
        v4 = ipaddress.IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        return str(v4), net.prefixlen - 96
    return str(net.network_address), net.prefixlen


def _expected(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    if kind in ("city", "country"):
        subs = data.get("subdivisions") or [{}]
        return {
            "country": (data.get("country") or {}).get("iso_code"),
            "region": (subs[0].get("names") or {}).get("en"),
            "city": ((data.get("city") or {}).get("names") or {}).get("en"),
            "timezone": (data.get("location") or {}).get("time_zone"),
        }
    if kind == "asn":
        return {"asn": data.get("autonomous_system_number"),
                "isp": data.get("autonomous_system_organization")}
    if kind == "isp":
        return {"asn": data.get("autonomous_system_number"),
                "isp": data.get("isp") or data.get("autonomous_system_organization")}
    if kind == "anonymous_ip":
        return {
            "is_anonymous_proxy": bool(data.get("is_public_proxy")
                                       or data.get("is_residential_proxy")),
            "is_vpn": bool(data.get("is_anonymous_vpn")),
            "is_tor": bool(data.get("is_tor_exit_node")),
            "is_hosting": bool(data.get("is_hosting_provider")),
        }
    return {"connection_type": data.get("connection_type")}


SOURCES = [
    ("city", "city_db", "GeoIP2-City-Test"),
    ("city", "city_db", "GeoLite2-City-Test"),
    ("country", "country_db", "GeoIP2-Country-Test"),
    ("asn", "asn_db", "GeoLite2-ASN-Test"),
    ("isp", "isp_db", "GeoIP2-ISP-Test"),
    ("anonymous_ip", "anonymous_ip_db", "GeoIP2-Anonymous-IP-Test"),
    ("connection_type", "connection_type_db", "GeoIP2-Connection-Type-Test"),
]


@pytest.mark.parametrize("mode", ["masked", "full"])
@pytest.mark.parametrize(("kind", "setting", "name"), SOURCES, ids=[s[2] for s in SOURCES])
def test_every_json_network(kind: str, setting: str, name: str, mode: str) -> None:
    entries = json.loads(db(f"{name}.json").read_text("utf-8"))
    g = GeoEnricher(EnrichSettings(**{setting: db(f"{name}.mmdb")}, geo_from=mode,
                                   default_db=False))
    checked = 0
    for entry in entries:
        ((network, data),) = entry.items()
        first, prefix = _first_address(network)
        version = ipaddress.ip_address(first).version
        if mode == "masked" and prefix > KEEP[version]:
            continue  # the truncated address leaves the listed network
        got = g.lookup(masked(first), first)
        want = _expected(kind, data)
        assert {k: got[k] for k in want} == want, f"{name} {network} ({mode})"
        checked += 1
    assert checked > 0
    if mode == "full":
        assert checked == len(entries)


# --------------------------------------------------------------------------- hot reload


def _patched_city(src: Path, dst: Path) -> None:
    """A copy of the City test DB whose city names differ (same-length byte edits)."""
    raw = src.read_bytes()
    edits = (("London", "LONDON"), ("Milton", "MILTON"), ("Linköping", "LINKÖPING"))
    for old_name, new_name in edits:
        old, new = old_name.encode(), new_name.encode()
        assert len(old) == len(new)
        raw = raw.replace(old, new)
    dst.write_bytes(raw)


def _install(src: Path, live: Path) -> None:
    """Replace ``live`` atomically, as geoipupdate does: write a temporary file, then rename."""
    tmp = live.with_name(live.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, live)


def test_reload_under_load_every_record_from_exactly_one_db(tmp_path: Path) -> None:
    a = tmp_path / "a.mmdb"
    b = tmp_path / "b.mmdb"
    shutil.copyfile(db("GeoIP2-City-Test.mmdb"), a)
    _patched_city(a, b)
    live = tmp_path / "City.mmdb"
    shutil.copyfile(a, live)
    ips = ["81.2.69.142", "216.160.83.56", "89.160.20.128", "175.16.199.1", "2a02:cf40::1",
           "67.43.156.13", "81.2.69.160", "2001:218::1"]
    answers: dict[str, list[dict[str, Any]]] = {}
    for path in (a, b):
        ref = GeoEnricher(EnrichSettings(city_db=path, geo_from="full", geo_cache_size=0))
        for ip in ips:
            answers.setdefault(ip, []).append(ref.lookup(None, ip))
        ref.close()
    assert answers["81.2.69.142"][0]["city"] == "London"
    assert answers["81.2.69.142"][1]["city"] == "LONDON"

    g = GeoEnricher(EnrichSettings(city_db=live, geo_from="full", geo_cache_size=64))
    results: list[tuple[str, int, dict[str, Any]]] = []
    errors: list[BaseException] = []
    started = threading.Event()

    def ingest() -> None:
        try:
            for i in range(10_000):
                ip = ips[i % len(ips)]
                gen, rec = g.lookup_generation(None, ip)
                results.append((ip, gen, rec))
                if i == 100:
                    started.set()
                if i % 25 == 0:
                    time.sleep(0.0005)  # let the updater run: the swaps land mid-ingest
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            started.set()

    worker = threading.Thread(target=ingest)
    worker.start()
    started.wait(10)
    swaps = 0
    while worker.is_alive() and swaps < 400:
        _install(b if swaps % 2 == 0 else a, live)
        assert g.reload() == ["city"]
        swaps += 1
    worker.join(60)
    assert not errors
    assert len(results) == 10_000
    assert swaps >= 1
    generations = set()
    for ip, gen, rec in results:
        # generation 1 is a, then b, a, b, ... : the answer must be that database's, whole.
        expected = answers[ip][(gen - 1) % 2]
        assert rec == expected, (ip, gen)
        generations.add(gen)
    assert len(generations) >= 3


def test_broken_new_file_is_refused_and_old_stays(tmp_path: Path) -> None:
    live = tmp_path / "City.mmdb"
    shutil.copyfile(db("GeoIP2-City-Test.mmdb"), live)
    g = GeoEnricher(EnrichSettings(city_db=live, geo_from="full"))
    assert g.lookup(None, "81.2.69.142")["city"] == "London"

    broken = tmp_path / "broken"
    broken.write_bytes(db("GeoIP2-City-Test.mmdb").read_bytes()[:5000])  # truncated download
    _install(broken, live)
    assert g.reload() == []
    assert g.generation == 1
    assert "enrich.city_db" in g.last_errors["city"]
    assert g.lookup(None, "81.2.69.142")["city"] == "London"
    assert "reload_error" in g.info()[0]
    assert g.reload() == []  # the same broken file is not retried

    _install(db("GeoLite2-ASN-Test.mmdb"), live)  # valid file, wrong kind
    assert g.reload() == []
    assert "GeoLite2-ASN" in g.last_errors["city"]
    assert g.lookup(None, "81.2.69.142")["city"] == "London"

    live.unlink()  # mid-rename / deleted: keep serving
    assert g.reload() == []
    assert g.lookup(None, "81.2.69.142")["city"] == "London"

    patched = tmp_path / "patched"
    _patched_city(db("GeoIP2-City-Test.mmdb"), patched)
    _install(patched, live)
    assert g.reload() == ["city"]
    assert g.last_errors == {}
    assert g.lookup(None, "81.2.69.142")["city"] == "LONDON"
    assert "reload_error" not in g.info()[0]


def test_unchanged_files_are_not_reloaded() -> None:
    g = GeoEnricher(full_settings())
    assert g.reload() == []
    assert g.generation == 1


async def test_watch_picks_up_a_replaced_file(tmp_path: Path) -> None:
    live = tmp_path / "City.mmdb"
    shutil.copyfile(db("GeoIP2-City-Test.mmdb"), live)
    g = GeoEnricher(EnrichSettings(city_db=live, geo_from="full"))
    task = asyncio.create_task(g.watch(0.02))
    patched = tmp_path / "patched"
    _patched_city(db("GeoIP2-City-Test.mmdb"), patched)
    _install(patched, live)
    for _ in range(250):
        if g.generation > 1:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert g.lookup(None, "81.2.69.142")["city"] == "LONDON"


# --------------------------------------------------------------------------- never raises


@given(st.one_of(st.none(), st.text(max_size=60), st.ip_addresses().map(str)))
@settings(max_examples=300, deadline=None)
def test_lookup_never_raises(text: str | None) -> None:
    r = _PROPERTY_GEO.lookup(text, text)
    assert set(r) == set(GEO_FIELDS)


_PROPERTY_GEO = GeoEnricher(full_settings(geo_from="full"))
