"""Issue 14: baselines without start-up bias, and scans found by what they do.

The traffic of the issue: a new site's first hour, ~400 clients, ~270 requests a minute, ten
paths, 2 % 404s, the US holding ~43 % from the first minute. Records go through the aggregates'
writer API into real SQLite rows and are read back per minute as the service does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from collector.aggregates.counter import Aggregator
from collector.detect.baseline import DecayingShares, RateBaseline, SeasonalBaseline
from collector.detect.engine import Engine
from collector.detect.minute import Minute, load_minutes
from collector.detect.model import Anomaly
from collector.settings import DetectSettings
from tests.synth import DAY0, Rec, new_db

START = DAY0 + 10 * 3600
COUNTRIES = [("US", 7922, 0.43), ("DE", 3320, 0.15), ("FR", 3215, 0.12), ("GB", 2856, 0.1),
             ("NL", 1136, 0.08), ("SE", 3301, 0.06), ("BR", 28573, 0.06)]
PATHS = ["/", "/products", "/products/:id", "/cart", "/checkout", "/search", "/about", "/blog",
         "/blog/:slug", "/api/items"]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge"]
TEMPLATES = ["/wp-admin", "/.env", "/phpmyadmin", "/cgi-bin", "/backup", "/old", "/api/v1"]
SCAN_AT = START + 50 * 60


def _clients(rng: random.Random) -> list[dict[str, object]]:
    out = []
    for i in range(400):
        cc, asn, _ = rng.choices(COUNTRIES, weights=[c[2] for c in COUNTRIES])[0]
        out.append({"ip": f"10.{i // 250}.{i % 250}.0", "country": cc, "asn": asn,
                    "browser": rng.choice(BROWSERS)})
    return out


def _minute(rng: random.Random, clients: list[dict[str, object]], t: int
            ) -> list[tuple[Rec, int | None]]:
    out: list[tuple[Rec, int | None]] = []
    for _ in range(int(rng.gauss(270, 16))):
        i = rng.randrange(len(clients))
        c = clients[i]
        status = 404 if rng.random() < 0.02 else 200
        path = rng.choice(PATHS)
        out.append(({"time": t + rng.random() * 59.9, "site": "shop", "source": "edge",
                     "ip": c["ip"], "country": c["country"], "asn": c["asn"], "isp": "x",
                     "path": path.replace(":id", str(rng.randrange(50))), "path_template": path,
                     "method": "GET", "status": status, "bytes": 1000, "browser": c["browser"],
                     "os": "Windows", "device_type": "desktop", "is_bot": False}, i))
    return out


def _scanner(t: int, k: int) -> list[tuple[Rec, int | None]]:
    """240 requests a minute from one /24, every answer a 404, 7 templates, distinct targets."""
    out: list[tuple[Rec, int | None]] = []
    for i in range(240):
        n = k * 240 + i
        tpl = TEMPLATES[n % len(TEMPLATES)]
        out.append(({"time": t + i / 4.1, "site": "shop", "source": "edge",
                     "ip": "198.51.100.0", "country": "NL", "asn": 64500, "isp": "Bulletproof",
                     "path": f"{tpl}/{n}", "path_template": f"{tpl}/:id", "method": "GET",
                     "status": 404, "bytes": 150, "browser": "Python Requests", "os": None,
                     "device_type": "other", "is_bot": False}, 77_777))
    return out


def hour(scan: bool) -> Iterator[tuple[int, dict[str, Minute]]]:
    rng = random.Random(14)
    clients = _clients(rng)
    conn, agg = new_db(), Aggregator()
    for k in range(60):
        t = START + 60 * k
        recs = _minute(rng, clients, t)
        if scan and SCAN_AT <= t < SCAN_AT + 120:
            recs += _scanner(t, (t - SCAN_AT) // 60)
        agg.add([r for r, _ in recs], [s for _, s in recs])
        agg.flush(conn, float(t))
        loaded = load_minutes(conn, t, t + 60)
        yield t, {site: m for (_, site), m in loaded.items()}


def _opened(scan: bool) -> list[Anomaly]:
    engine = Engine(DetectSettings(), anonymizers=False)
    return [a for t, by in hour(scan) for what, a in engine.feed(t, by) if what == "opened"]


def test_the_biggest_country_of_a_new_site_is_never_new() -> None:
    found = [(a.kind, a.dims, a.evidence) for a in _opened(scan=False)]
    assert [f for f in found if f[0] == "new_source"] == []
    assert found == []


def test_a_scanner_with_few_templates_is_found_by_its_distinct_targets() -> None:
    found = _opened(scan=True)
    scans = [a for a in found if a.kind == "scan" and a.dims == {"network": "198.51.100.0/24"}]
    assert scans, [(a.kind, a.dims) for a in found]
    a = scans[0]
    assert a.start == SCAN_AT and a.detected - SCAN_AT <= 120
    ev = a.evidence
    assert 0.85 * 240 <= ev["distinct_4xx_targets"] <= 1.15 * 480, ev
    assert ev["share_4xx"] == 1.0 and ev["status_4xx"] >= 240
    assert ev["distinct_4xx_paths"] <= 14  # the old rule (15 templates) could not fire
    # the scanner's ASN is genuinely new; the countries and ASNs that held traffic are not
    assert [a.dims for a in found if a.kind == "new_source"] in ([], [{"asn": 64500}]), \
        [(a.kind, a.dims) for a in found]
    # k-safe: the finding names the masked network, and no path of the scanner appears
    assert "/wp-admin" not in repr(a.public())


def test_ewmas_are_unbiased_from_the_first_minute() -> None:
    shares = DecayingShares(86400.0)
    for k in range(30):
        shares.update(START + 60 * k, {"US": 0.43, "DE": 0.57})
    assert abs(shares.get("US", START + 29 * 60) - 0.43) < 0.01
    rate = RateBaseline(3600.0)
    for _ in range(10):
        rate.update(2, 100)
    assert abs(rate.rate - 0.02) < 1e-9
    base = SeasonalBaseline(3600.0, 3 * 86400.0)
    rng = random.Random(1)
    for k in range(40):
        base.update(START + 60 * k, 400 + rng.gauss(0, 60))
    _, sigma = base.forecast(START + 40 * 60)
    assert 35 <= sigma <= 90, sigma  # the spread, not sqrt(forecast) of a variance still near 0


def _small_site(counts: dict[int, float], minutes: int) -> list[Anomaly]:
    """A site's per-minute request counts (missing minutes: no traffic) through the engine."""
    engine = Engine(DetectSettings(), anonymizers=False)
    out = []
    for k in range(minutes):
        t = START + 60 * k
        n = counts.get(k, 0.0)
        by = {"blog": Minute(t, "blog", total={"requests": n})} if n else {}
        out += [a for what, a in engine.feed(t, by) if what == "opened"]
    return out


def test_a_small_site_outage_is_a_drop_and_a_sparse_log_is_not() -> None:
    rng = random.Random(3)
    steady = {k: float(max(0, round(rng.gauss(8, 3)))) for k in range(240)}
    found = _small_site(steady, 300)  # then an hour with nothing (forecast ~8 a minute)
    drops = [a for a in found if a.kind == "traffic_drop"]
    assert len(drops) == 1 and found == drops, [(a.kind, a.evidence) for a in found]
    assert START + 240 * 60 <= drops[0].start <= START + 250 * 60
    assert drops[0].evidence["minutes"] >= 4 and drops[0].evidence["requests_in_run"] == 0
    # a log of a few requests in days (fail2ban_traefik-auth): silence is its normal
    sparse = {k: float(rng.randrange(1, 4)) for k in range(0, 4 * 1440, 700)}
    assert _small_site(sparse, 4 * 1440) == []


def test_a_small_site_flash_crowd_is_a_spike() -> None:
    rng = random.Random(4)
    counts = {k: float(max(0, round(rng.gauss(4, 2)))) for k in range(180)}
    for k in range(150, 160):
        counts[k] = float(round(rng.gauss(24, 4)))  # x6 for ten minutes, < 60 in any minute
    found = _small_site(counts, 180)
    assert [a.kind for a in found] == ["traffic_spike"], [(a.kind, a.evidence) for a in found]
    assert found[0].detected - (START + 150 * 60) <= 4 * 60


def test_a_5xx_burst_on_one_path_of_a_big_site_is_found_for_that_path() -> None:
    """300 requests a minute, 0.3 % 5xx; then /checkout (10 a minute) answers only 503: the
    site's share stays below 5 %, the path's is 100 %."""
    engine = Engine(DetectSettings(), anonymizers=False)
    rng = random.Random(5)
    found = []
    for k in range(120):
        t = START + 60 * k
        broken = k >= 100
        paths = {"/": {"requests": 200.0, "s5xx": float(rng.random() < 0.5)},
                 "/checkout": {"requests": 10.0, "s5xx": 10.0 if broken else 0.0},
                 "/api/items": {"requests": 90.0, "s5xx": 0.0}}
        total = {"requests": 300.0, "s5xx": sum(p["s5xx"] for p in paths.values())}
        m = Minute(t, "shop", total=total, by={"path_template": paths})
        found += [a for what, a in engine.feed(t, {"shop": m}) if what == "opened"]
    assert [(a.kind, a.dims) for a in found] == [("error_rate", {"path_template": "/checkout"})]
    a = found[0]
    assert a.evidence["rate"] == 1.0 and a.evidence["status_5xx"] >= 10
    assert a.detected - (START + 100 * 60) <= 120


def test_a_small_site_5xx_burst_is_found_over_three_minutes() -> None:
    found = []
    engine = Engine(DetectSettings(), anonymizers=False)
    for k in range(120):
        t = START + 60 * k
        errors = 3.0 if 100 <= k < 103 else 0.0  # 3 of 10 a minute: never 10 in one minute
        m = Minute(t, "blog", total={"requests": 10.0, "s5xx": errors})
        found += [a for what, a in engine.feed(t, {"blog": m}) if what == "opened"]
    assert [(a.kind, a.dims) for a in found] == [("error_rate", {})]
    a = found[0]
    assert a.start == START + 101 * 60, "reported in the burst's second minute (6 errors)"
    assert a.evidence["window_minutes"] == 3 and a.evidence["status_5xx"] >= 6
