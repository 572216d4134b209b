"""Synthetic traffic for the detector tests: a site with diurnal seasonality, realistic mixes of
countries, ASNs, networks, paths, statuses, bots and sessions, and injectable incidents.

Records have the stored-record shape and go through the aggregates' public writer API
(``Aggregator.add``/``flush``) into a real SQLite table; the detectors read them back with
``load_minutes`` exactly as the service does.
"""

from __future__ import annotations

import math
import random
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from collector.aggregates.counter import Aggregator
from collector.aggregates.schema import SCHEMA
from collector.detect.minute import Minute, load_minutes

DAY0 = 1_767_225_600  # 2026-01-01T00:00:00Z
COUNTRIES = [("DE", 3320, "Deutsche Telekom", 0.35), ("FR", 3215, "Orange", 0.2),
             ("US", 7922, "Comcast", 0.2), ("GB", 2856, "BT", 0.1), ("NL", 1136, "KPN", 0.08),
             ("SE", 3301, "Telia", 0.07)]
PATHS = ["/", "/products", "/products/:id", "/cart", "/checkout", "/search", "/about",
         "/blog", "/blog/:slug", "/static/app.js", "/static/app.css", "/favicon.ico",
         "/api/items", "/api/items/:id", "/login", "/account"]
BROWSERS = [("Chrome", "Windows", "desktop"), ("Safari", "iOS", "mobile"),
            ("Firefox", "Linux", "desktop"), ("Chrome Mobile", "Android", "mobile")]
Rec = dict[str, Any]


def rate(t: float, low: float = 25.0, high: float = 110.0) -> float:
    """Requests a minute: a daily curve, low at 04:00 UTC, high at 16:00."""
    h = (t % 86400) / 3600.0
    return low + (high - low) * 0.5 * (1 - math.cos(2 * math.pi * (h - 4) / 24))


class Visitors:
    """A fixed population: each visitor has one network/country/ASN/browser for life."""

    def __init__(self, n: int, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.people = []
        for i in range(n):
            cc, asn, isp, _ = rng.choices(COUNTRIES, weights=[c[3] for c in COUNTRIES])[0]
            net = f"{10 + i % 200}.{(i * 7) % 250}.{i % 97}.0"
            self.people.append({"country": cc, "asn": asn, "isp": isp, "ip": net,
                                "ua": rng.choice(BROWSERS)})

    def record(self, rng: random.Random, t: float, i: int | None = None) -> tuple[Rec, int]:
        i = i if i is not None else min(int(rng.paretovariate(1.1)) - 1, len(self.people) - 1)
        i = rng.randrange(len(self.people)) if i >= len(self.people) else i
        p = self.people[i]
        browser, os_, device = p["ua"]
        path = rng.choice(PATHS)
        status = rng.choices([200, 304, 404, 500, 401, 302], [0.86, 0.06, 0.03, 0.003, 0.004,
                                                               0.043])[0]
        bot = rng.random() < 0.04
        rec = {"time": t, "site": "shop", "source": "edge", "ip": p["ip"],
               "country": p["country"], "asn": p["asn"], "isp": p["isp"], "path_template": path,
               "method": "GET", "status": status, "bytes": rng.randrange(200, 40000),
               "browser": "Googlebot" if bot else browser, "os": os_,
               "device_type": "bot" if bot else device, "is_bot": bot,
               "request_time": rng.expovariate(20.0)}
        sid = i * 100_000 + int(t // 1800)  # a visitor's session changes every 30 minutes
        return rec, sid


Incident = Callable[[random.Random, int], list[tuple[Rec, int | None]]]


def minute_records(vis: Visitors, t: int, seed: int, scale: float = 1.0
                   ) -> list[tuple[Rec, int | None]]:
    rng = random.Random(seed * 1_000_003 + t)
    n = int(rng.gauss(rate(t) * scale, math.sqrt(rate(t) * scale)))
    return [vis.record(rng, t + rng.random() * 59.9) for _ in range(max(0, n))]


def new_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for stmt in SCHEMA:
        conn.execute(stmt)
    return conn


def minutes(vis: Visitors, start: int, count: int, seed: int = 7,
            incidents: dict[int, Incident] | None = None, scale: dict[int, float] | None = None
            ) -> Iterator[tuple[int, dict[str, Minute]]]:
    """Yield (minute, {site: Minute}) for ``count`` minutes, with incidents mixed in."""
    conn, agg = new_db(), Aggregator()
    for k in range(count):
        t = start + 60 * k
        recs = minute_records(vis, t, seed, (scale or {}).get(t, 1.0))
        if incidents and t in incidents:
            recs += incidents[t](random.Random(t), t)
        agg.add([r for r, _ in recs], [s for _, s in recs])
        agg.flush(conn, float(t))
        loaded = load_minutes(conn, t, t + 60)
        conn.execute("DELETE FROM agg WHERE t < ?", (t,))  # keep the table small
        yield t, {site: m for (_, site), m in loaded.items()}
