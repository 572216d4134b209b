"""Per-site baselines and the all-sites view (site ``"*"``) of the detectors.

Two sites of very different size go through the aggregates' writer API into real SQLite rows
and are read back per minute as the service does. A spike in the small site only is reported
for that site although the sum of both sites never looks like a spike; a scan spread thinly over
both sites is reported only by the all-sites view.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector.aggregates.counter import Aggregator
from collector.detect.engine import ALL_SITES, Engine
from collector.detect.minute import Minute, combine, load_minutes
from collector.detect.model import Anomaly
from collector.settings import DetectSettings, SettingsError, load_settings
from tests.synth import DAY0, Rec, Visitors, minute_records, new_db

BIG, SMALL = "shop", "blog"
START = DAY0 + 11 * 3600
INCIDENT = DAY0 + 12 * 3600  # noon: the big site ~180 requests a minute, the small one ~9
LENGTH = 4
BIG_VIS, SMALL_VIS = Visitors(3000, seed=1), Visitors(400, seed=2)

Extra = Callable[[random.Random, int, str], list[tuple[Rec, int | None]]]


def two_sites(count: int = 75, small_scale: dict[int, float] | None = None,
              extra: Extra | None = None) -> Iterator[tuple[int, dict[str, Minute]]]:
    """(minute, {site: Minute}): the big site at twice the synthetic rate, the small at 1/10."""
    conn, agg = new_db(), Aggregator()
    for k in range(count):
        t = START + 60 * k
        recs = minute_records(BIG_VIS, t, seed=7, scale=2.0)
        small = minute_records(SMALL_VIS, t, seed=8, scale=0.1 * (small_scale or {}).get(t, 1))
        for r, _ in small:
            r["site"] = SMALL
        recs += [(r, None if s is None else s + 10**12) for r, s in small]
        if extra is not None:
            for site in (BIG, SMALL):
                recs += extra(random.Random(t), t, site)
        agg.add([r for r, _ in recs], [s for _, s in recs])
        agg.flush(conn, float(t))
        loaded = load_minutes(conn, t, t + 60)
        conn.execute("DELETE FROM agg WHERE t < ?", (t,))
        yield t, {site: m for (_, site), m in loaded.items()}


def opened(minutes: Iterator[tuple[int, dict[str, Minute]]], engine: Engine | None = None
           ) -> list[Anomaly]:
    engine = engine or Engine(DetectSettings(), anonymizers=False)
    return [a for t, by_site in minutes for what, a in engine.feed(t, by_site)
            if what == "opened"]


SPIKE = {INCIDENT + 60 * i: 8.0 for i in range(LENGTH)}


def test_two_clean_sites_raise_nothing() -> None:
    assert opened(two_sites()) == []


def test_small_site_spike_is_found_for_that_site_though_the_sum_hides_it() -> None:
    found = opened(two_sites(small_scale=SPIKE))
    spikes = [a for a in found if a.kind == "traffic_spike"]
    assert [(a.site, a.dims) for a in spikes] == [(SMALL, {})], \
        [(a.site, a.kind, a.evidence) for a in found]
    a = spikes[0]
    assert INCIDENT <= a.start <= INCIDENT + 60
    assert a.evidence["requests"] >= 60 and a.evidence["forecast"] < 20

    # the same minutes summed into one site (what a detector without per-site baselines sees):
    # no spike at all, so the small site's incident is hidden in the sum
    summed = ((t, {"all": combine(t, "all", by_site.values())})
              for t, by_site in two_sites(small_scale=SPIKE))
    assert [a for a in opened(summed) if a.kind == "traffic_spike"] == []


def test_a_scan_spread_over_sites_is_seen_by_the_all_sites_view_only() -> None:
    def thin_scan(rng: random.Random, t: int, site: str) -> list[tuple[Rec, int | None]]:
        if not INCIDENT <= t < INCIDENT + 60 * LENGTH:
            return []
        # 5 distinct 404 paths a minute on each site: 10 in the 2-minute window per site
        # (below scan_min_paths = 15), 20 across both sites
        return [({"time": t + i, "site": site, "source": "edge", "ip": "198.51.100.0",
                  "country": "NL", "asn": 64500, "isp": "Bulletproof", "method": "GET",
                  "path_template": f"/{site}-probe-{t}-{i}-{rng.randrange(10**6)}.php",
                  "status": 404, "bytes": 150, "browser": "curl", "os": None,
                  "device_type": "other", "is_bot": False}, 900_000_000 + i)
                for i in range(5)]

    found = opened(two_sites(extra=thin_scan))
    scans = [a for a in found if a.kind == "scan"]
    assert {(a.site, tuple(a.dims.items())) for a in scans} == {
        (ALL_SITES, (("network", "198.51.100.0/24"),)), (ALL_SITES, (("asn", 64500),))}, \
        [(a.site, a.kind, a.dims) for a in found]
    net = next(a for a in scans if "network" in a.dims)
    assert net.evidence["distinct_4xx_paths"] >= 15
    assert net.public()["site"] == "*"


def test_the_all_sites_view_does_not_repeat_a_site_anomaly() -> None:
    # a spike so large that the sum shows it too: reported once, for the site
    found = opened(two_sites(small_scale={t: 40.0 for t in SPIKE}))
    spikes = [(a.site, a.kind) for a in found if a.kind == "traffic_spike"]
    assert spikes == [(SMALL, "traffic_spike")], spikes


def test_one_site_has_no_all_sites_view() -> None:
    engine = Engine(DetectSettings(), anonymizers=False)
    conn, agg = new_db(), Aggregator()
    t = START
    recs = minute_records(BIG_VIS, t, seed=7)
    agg.add([r for r, _ in recs], [s for _, s in recs])
    agg.flush(conn, float(t))
    by_site = {site: m for (_, site), m in load_minutes(conn, t, t + 60).items()}
    engine.feed(t, by_site)
    assert engine.summed is None and set(engine.detectors) == {BIG}
    engine.feed(t + 60, {SMALL: Minute(t + 60, SMALL, {"requests": 1.0})})
    assert engine.summed is not None, "a second site starts the all-sites view"
    # a minute claiming the reserved name is never evaluated as a site
    engine.feed(t + 120, {ALL_SITES: Minute(t + 120, ALL_SITES, {"requests": 5.0})})
    assert ALL_SITES not in engine.detectors


def test_the_all_sites_name_cannot_be_a_site(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[tenancy]\ndefault_site = "*"\n')
    with pytest.raises(SettingsError, match=r'tenancy\.default_site: .*"\*" is the all-sites'):
        load_settings(cfg, env={})
    cfg.write_text('[[sites]]\nname = "*"\nhosts = ["x.example"]\n')
    with pytest.raises(SettingsError, match=r"sites\[1\]\.name"):
        load_settings(cfg, env={})
