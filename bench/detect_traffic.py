"""Labelled traffic for ``bench/detect_eval.py``: sites of different sizes, a week's rhythm and
incidents whose kind, site, start and end are known.

Stored-record shape (masked address, enrichment fields), so records go straight into the
aggregates' writer. What clean traffic holds, per site:

* a daily curve (low at 04:00 local, high at 15:00), weekends at 65 %, a slow trend (+2 % a day),
  over-dispersed minute counts (Poisson times a gamma factor, CV 12 %);
* clients from a fixed population: countries and ASNs with a per-site mix (the US ~43 % of the
  big site), one /24 each (masked), one browser each, sessions of 30 minutes; a Zipf page
  popularity over templates with ids (``/products/:id`` gets ``/products/123``);
* a status mix (2 % 404 on distinct URLs, 0.3 % 5xx, logins with 5 % 401), declared crawlers
  (~5 %, Googlebot/bingbot networks, 8 % of their requests 404 on old URLs), and a background of
  tiny scanners (3–8 probes from a random network now and then), as on the real internet;
* a deploy-day step (one site +40 % from day 3 noon), a CDN flush (the big site's static
  assets come to the origin for ~20 minutes: asset requests ×2.5, decaying).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DAY = 86400
T0 = 1_780_272_000  # 2026-06-01T00:00:00Z, a Monday
Rec = dict[str, Any]

# country, [(asn, isp)], share — per site the shares are reweighted
COUNTRIES = [("US", [(7922, "Comcast"), (701, "Verizon"), (7018, "AT&T")]),
             ("DE", [(3320, "Deutsche Telekom"), (3209, "Vodafone")]),
             ("FR", [(3215, "Orange"), (12322, "Free")]),
             ("GB", [(2856, "BT"), (5089, "Virgin")]), ("NL", [(1136, "KPN")]),
             ("IN", [(55836, "Jio"), (24560, "Airtel")]), ("BR", [(28573, "Claro")]),
             ("JP", [(2516, "KDDI")]), ("SE", [(3301, "Telia")]), ("CA", [(812, "Rogers")])]
BROWSERS = [("Chrome", "Windows", "desktop"), ("Safari", "iOS", "mobile"),
            ("Firefox", "Linux", "desktop"), ("Chrome Mobile", "Android", "mobile"),
            ("Edge", "Windows", "desktop"), ("Safari", "Mac OS X", "desktop")]
PAGES = ["/", "/products", "/products/:id", "/cart", "/checkout", "/search", "/about", "/blog",
         "/blog/:slug", "/api/items", "/api/items/:id", "/login", "/account", "/help/:id",
         "/category/:id", "/news/:id", "/docs/:id", "/pricing", "/contact", "/feed.xml"]
ASSETS = ["/static/app.js", "/static/app.css", "/img/:id", "/fonts/:id", "/favicon.ico"]
CRAWLERS = [("66.249.66.0", 15169, "Google", "US", "Googlebot"),
            ("157.55.39.0", 8075, "Microsoft", "US", "bingbot")]


@dataclass
class Site:
    name: str
    peak: float  # requests a minute at the daily peak (before trend and weekday)
    tz: int = 0  # hours east of UTC
    mix: dict[str, float] = field(default_factory=dict)  # country weights
    step_at: float | None = None  # deploy-day step: x1.4 from then on
    flush_at: float | None = None  # CDN flush: assets come to the origin
    clients: list[dict[str, Any]] = field(default_factory=list)

    def rate(self, t: float) -> float:
        local = (t + self.tz * 3600) % DAY / 3600.0
        day = 0.5 * (1 - math.cos(2 * math.pi * (local - 4) / 24))  # 0 at 04:00, 1 at 16:00
        weekday = int((t - T0 + self.tz * 3600) // DAY) % 7
        r = self.peak * (0.22 + 0.78 * day) * (0.65 if weekday >= 5 else 1.0)
        r *= 1 + 0.02 * (t - T0) / DAY
        if self.step_at is not None and t >= self.step_at:
            r *= 1.4
        return r

    def asset_factor(self, t: float) -> float:
        if self.flush_at is None or not self.flush_at <= t < self.flush_at + 1800:
            return 1.0
        return 1 + 1.5 * math.exp(-(t - self.flush_at) / 600)


def make_sites() -> list[Site]:
    us_heavy = {"US": 43, "DE": 12, "FR": 8, "GB": 9, "NL": 4, "IN": 7, "BR": 5, "JP": 4,
                "SE": 3, "CA": 5}
    europe = {"DE": 35, "FR": 20, "NL": 10, "GB": 10, "SE": 8, "US": 12, "IN": 5}
    sites = [Site("shop", 420.0, 0, us_heavy, flush_at=T0 + 4 * DAY + 15 * 3600),
             Site("news", 130.0, 2, europe, step_at=T0 + 2 * DAY + 12 * 3600),
             Site("blog", 16.0, -5, us_heavy), Site("wiki", 5.0, 9, {"JP": 60, "US": 25,
                                                                    "IN": 15})]
    rng = random.Random(1)
    for n, site in enumerate(sites):
        names = list(site.mix)
        for i in range(max(300, int(site.peak * 8))):
            cc = rng.choices(names, weights=[site.mix[c] for c in names])[0]
            asn, isp = rng.choice(dict(COUNTRIES)[cc])
            site.clients.append({"ip": f"{20 + n * 40 + i % 40}.{(i * 7) % 250}.{i // 40 % 250}.0",
                                 "country": cc, "asn": asn, "isp": isp,
                                 "ua": rng.choice(BROWSERS), "sid": (n + 1) * 10**9 + i * 1000})
    return sites


def _zipf_cdf(n: int, s: float) -> list[float]:
    acc, out = 0.0, []
    for k in range(n):
        acc += 1.0 / (k + 1) ** s
        out.append(acc)
    return [x / acc for x in out]


_PAGE_CDF = _zipf_cdf(len(PAGES), 1.0)
_CLIENT_CDF: dict[int, list[float]] = {}


def _pick(cdf: list[float], u: float) -> int:
    lo, hi = 0, len(cdf) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cdf[mid] < u:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _concrete(template: str, rng: random.Random) -> str:
    return template.replace(":id", str(rng.randrange(1, 400))).replace(
        ":slug", f"post-{rng.randrange(1, 120)}")


def record(site: Site, t: float, c: dict[str, Any], path: str, template: str, status: int,
           **extra: Any) -> Rec:
    browser, os_, device = c["ua"]
    rec = {"time": t, "site": site.name, "source": "edge", "ip": c["ip"],
           "country": c["country"], "asn": c["asn"], "isp": c["isp"], "path": path,
           "path_template": template, "method": "GET", "status": status, "bytes": 4000,
           "browser": browser, "os": os_, "device_type": device, "is_bot": False,
           "request_time": 0.05}
    rec.update(extra)
    return rec


def clean_minute(site: Site, t: int, rng: random.Random) -> list[tuple[Rec, int | None]]:
    """One minute of the site's ordinary traffic."""
    lam = site.rate(t) * rng.gammavariate(70.0, 1 / 70.0)
    n = _poisson(lam, rng)
    cdf = _CLIENT_CDF.get(len(site.clients))
    if cdf is None:
        cdf = _CLIENT_CDF[len(site.clients)] = _zipf_cdf(len(site.clients), 0.6)
    af = site.asset_factor(t)
    out: list[tuple[Rec, int | None]] = []
    for _ in range(n):
        ts = t + rng.random() * 59.9
        u = rng.random()
        if u < 0.05:  # a declared crawler
            ip, asn, isp, cc, name = CRAWLERS[0 if u < 0.035 else 1]
            c = {"ip": ip, "asn": asn, "isp": isp, "country": cc, "ua": (name, None, "bot")}
            if rng.random() < 0.08:
                path = f"/old/{rng.randrange(10**6)}"
                out.append((record(site, ts, c, path, "/old/:id", 404, is_bot=True), None))
            else:
                tpl = PAGES[_pick(_PAGE_CDF, rng.random())]
                out.append((record(site, ts, c, _concrete(tpl, rng), tpl, 200, is_bot=True),
                            None))
            continue
        i = _pick(cdf, rng.random())
        c = site.clients[i]
        sid = c["sid"] + int(ts // 1800)
        if rng.random() < 0.3 * af / (0.3 * af + 0.7):
            tpl = ASSETS[rng.randrange(len(ASSETS))]
            out.append((record(site, ts, c, _concrete(tpl, rng), tpl, 200), sid))
            continue
        tpl = PAGES[_pick(_PAGE_CDF, rng.random())]
        r = rng.random()
        if tpl == "/login":
            status, method = (401 if r < 0.05 else 302), "POST"
        else:
            method = "GET"
            status = 404 if r < 0.02 else 503 if r < 0.022 else 500 if r < 0.023 else \
                304 if r < 0.08 else 200
        path = f"/{rng.choice(('missing', 'old-page', 'img'))}/{rng.randrange(10**5)}" \
            if status == 404 else _concrete(tpl, rng)
        out.append((record(site, ts, c, path, tpl if status != 404 else "/missing/:id",
                           status, method=method), sid))
    if rng.random() < 0.02:  # background noise: a tiny scanner somewhere on the internet
        net = f"{rng.randrange(100, 200)}.{rng.randrange(256)}.{rng.randrange(256)}.0"
        c = {"ip": net, "asn": 60000 + rng.randrange(900), "isp": "hosting", "country": "CN",
             "ua": ("Go-http-client", None, "other")}
        for k in range(rng.randrange(3, 9)):
            p = rng.choice(("/.env", "/wp-login.php", "/.git/config", "/admin", "/phpinfo.php"))
            out.append((record(site, t + k * 5, c, p, p, 404), None))
    return out


def _poisson(lam: float, rng: random.Random) -> int:
    if lam > 40:
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


# ----------------------------------------------------------------------------- incidents

Inject = Callable[[Site, int, random.Random], list[tuple[Rec, int | None]]]


@dataclass
class Incident:
    kind: str  # what is injected (the benchmark's label)
    size: str  # human-readable size
    site: str
    start: int
    end: int  # first minute after it
    accept: frozenset[str]  # anomaly kinds that report it
    inject: Inject | None = None  # extra records a minute
    outage: bool = False  # the site's own traffic is gone
    scale: float = 1.0  # the site's own traffic multiplied (flash crowd)


def _client(ip: str, asn: int, cc: str, ua: tuple[str, str | None, str]) -> dict[str, Any]:
    return {"ip": ip, "asn": asn, "isp": "AS" + str(asn), "country": cc, "ua": ua}


SCANNER_UA = ("Python Requests", None, "other")


def scan(per_minute: int, templates: int, net: str = "198.51.100.0") -> Inject:
    c = _client(net, 64500, "NL", SCANNER_UA)
    counter = [0]
    names = ["/wp-admin", "/.env", "/phpmyadmin", "/cgi-bin", "/backup", "/old", "/api/v1",
             "/admin", "/config", "/.git", "/vendor", "/debug", "/test", "/tmp", "/server-status",
             "/manager", "/shell", "/console", "/solr", "/jenkins"]

    def f(site: Site, t: int, rng: random.Random) -> list[tuple[Rec, int | None]]:
        out = []
        for i in range(per_minute):
            counter[0] += 1
            tpl = names[counter[0] % templates]
            out.append((record(site, t + i * 59.0 / per_minute, c, f"{tpl}/{counter[0]}",
                               f"{tpl}/:id", 404), 7_000_000 + counter[0] // 500))
        return out
    return f


def slow_scan(per_hour: int) -> Inject:
    """``per_hour`` probes over an hour, from one network, spread unevenly over the minutes."""
    inner = scan(1, 7, "203.0.113.0")

    def f(site: Site, t: int, rng: random.Random) -> list[tuple[Rec, int | None]]:
        n = _poisson(per_hour / 60.0, rng)
        return [r for _ in range(n) for r in inner(site, t, rng)]
    return f


def stuffing(per_minute: int, networks: int = 50) -> Inject:
    clients = [_client(f"100.{64 + i // 250}.{i % 250}.0", 16509 + i % 3, "US",
                       ("Chrome", "Windows", "desktop")) for i in range(networks)]

    def f(site: Site, t: int, rng: random.Random) -> list[tuple[Rec, int | None]]:
        out = []
        for _ in range(per_minute):
            c = clients[rng.randrange(networks)]
            out.append((record(site, t + rng.random() * 59, c, "/login", "/login", 401,
                               method="POST"), 8_000_000 + rng.randrange(10**6)))
        return out
    return f


def errors(share: float, path: str | None = None) -> Inject:
    """5xx answers: ``share`` of the site's traffic (``path``: only on that path's traffic)."""
    def f(site: Site, t: int, rng: random.Random) -> list[tuple[Rec, int | None]]:
        n = _poisson(site.rate(t) * share, rng)
        out = []
        for _ in range(n):
            c = site.clients[rng.randrange(len(site.clients))]
            tpl = path or PAGES[_pick(_PAGE_CDF, rng.random())]
            out.append((record(site, t + rng.random() * 59, c, _concrete(tpl, rng), tpl, 503),
                        c["sid"] + t // 1800))
        return out
    return f


def bots(per_minute: int, declared: bool) -> Inject:
    """A surge of bots: declared crawlers, or browser-like agents from a hosting ASN's networks."""
    if declared:
        clients = [_client("52.167.144.0", 8075, "US", ("Bytespider", None, "bot"))]
    else:
        clients = [_client(f"167.99.{i}.0", 14061, "US", rng_ua)
                   for i, rng_ua in enumerate(BROWSERS * 4)]

    def f(site: Site, t: int, rng: random.Random) -> list[tuple[Rec, int | None]]:
        out = []
        for _ in range(_poisson(per_minute, rng)):
            c = clients[rng.randrange(len(clients))]
            tpl = PAGES[_pick(_PAGE_CDF, rng.random())]
            out.append((record(site, t + rng.random() * 59, c, _concrete(tpl, rng), tpl, 200,
                               is_bot=declared), 9_000_000 + rng.randrange(1000)))
        return out
    return f


def newcomer(per_minute: int) -> Inject:
    clients = [_client(f"14.{160 + i}.{i}.0", 45899, "VN", ("Chrome", "Android", "mobile"))
               for i in range(30)]

    def f(site: Site, t: int, rng: random.Random) -> list[tuple[Rec, int | None]]:
        out = []
        for _ in range(_poisson(per_minute, rng)):
            c = clients[rng.randrange(len(clients))]
            tpl = PAGES[_pick(_PAGE_CDF, rng.random())]
            out.append((record(site, t + rng.random() * 59, c, _concrete(tpl, rng), tpl, 200),
                        9_500_000 + rng.randrange(1000)))
        return out
    return f


def schedule(days: float, seed: int = 5) -> list[Incident]:
    """Every incident kind at several sizes, placed over ``days`` after the first two hours,
    at least 3 hours apart on one site (so one incident's anomalies are its own)."""
    K = frozenset
    plans: list[tuple[str, str, str, int, dict[str, Any]]] = []  # kind, size, site, minutes, how

    def add(kind: str, size: str, sites: tuple[str, ...], minutes: int, **how: Any) -> None:
        for s in sites:
            plans.append((kind, size, s, minutes, how))

    for n in (20, 40, 100):
        add("scan", f"{n}/min, 20 templates", ("shop", "blog"), 3, inject=scan(n, 20),
            accept=K({"scan"}))
    for n in (40, 120, 240):
        add("scan_few_templates", f"{n}/min, 7 templates", ("shop", "news"), 2,
            inject=scan(n, 7), accept=K({"scan"}))
    for n in (240, 480):
        add("slow_scan", f"{n}/h, 7 templates", ("shop", "news", "wiki"), 60,
            inject=slow_scan(n), accept=K({"scan"}))
    for n in (30, 60, 120):
        add("credential_stuffing", f"{n}/min over 50 networks", ("shop", "news"), 10,
            inject=stuffing(n), accept=K({"auth_failures"}))
    for share in (0.15, 0.4):
        add("error_burst", f"{share:.0%} 5xx", ("shop", "news", "blog"), 3,
            inject=errors(share), accept=K({"error_rate"}))
    for path in ("/checkout", "/api/items/:id", "/account"):
        add("error_one_path", f"all 5xx on {path}", ("shop",), 5, inject=errors(0.03, path),
            accept=K({"error_rate"}))
    for minutes in (20, 60):
        add("outage_small_site", f"{minutes} min without traffic", ("blog", "wiki"), minutes,
            outage=True, accept=K({"traffic_drop"}))
    for n in (150, 400):
        add("bot_surge", f"{n}/min declared", ("shop", "news"), 10, inject=bots(n, True),
            accept=K({"bot_surge"}))
    for n in (120, 300):
        add("bot_surge_browser_like", f"{n}/min, 24 networks, browser agents", ("shop", "news"),
            10, inject=bots(n, False),
            accept=K({"bot_surge", "source_surge", "traffic_spike", "new_source"}))
    for f in (3.0, 6.0):
        add("traffic_spike", f"x{f:g} for 10 min", ("news", "blog"), 10, scale=f,
            accept=K({"traffic_spike"}))
    for n in (80, 200):
        add("new_source", f"{n}/min from a new country", ("news", "shop"), 5,
            inject=newcomer(n), accept=K({"new_source"}))
    rng = random.Random(seed)
    rng.shuffle(plans)
    free: dict[str, int] = {}
    span = int(days * DAY) - 3 * 3600
    out: list[Incident] = []
    slot = max(span // max(len(plans), 1), 1800)
    for i, (kind, size, site, minutes, how) in enumerate(plans):
        start = T0 + 2 * 3600 + (i * slot) // 60 * 60 + rng.randrange(0, 40) * 60
        start = max(start, free.get(site, 0))
        if start + minutes * 60 > T0 + int(days * DAY) - 3600:
            continue  # the run is too short for it
        free[site] = start + minutes * 60 + 3 * 3600
        out.append(Incident(kind, size, site, start, start + minutes * 60, how["accept"],
                            how.get("inject"), how.get("outage", False), how.get("scale", 1.0)))
    return sorted(out, key=lambda x: x.start)
