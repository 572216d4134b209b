"""A realistic Apache/nginx ``combined`` access log of N lines, time-ordered, deterministic.

Usage::

    .venv/bin/python bench/gen_log.py [-n 1000000] [-o bench/data/access-1M.log] [--seed 1]

What it holds (printed to stderr at the end so a run documents itself):

* ``--clients`` (50,000) clients, ~5 % of them IPv6, spread over many /24 (/48) networks;
  their activity follows a Zipf law (s=0.35: busy clients, a long tail of one-visit ones);
* at least 20,000 distinct real-looking User-Agents with a long tail: Chrome, Firefox, Safari,
  Edge, Opera, Samsung Internet on Windows/macOS/Linux/Android/iOS with real version and build
  numbers, in-app WebViews, crawlers and tools, plus every ``user_agent_string`` of uap-core's
  ``tests/data/ua/test_ua.yaml``; 70 % of clients each take their own agent from that pool, the
  rest share a popular head (current Chrome/Firefox/Safari);
* sessions of realistic length: a visit is a geometric number of page views (mean 4) with
  exponential think times (mean 40 s), each page followed by 0–6 assets within two seconds;
  a client comes back for more visits hours later;
* Zipf-distributed pages (5,000 paths, many with ids and query strings: search terms, paging,
  utm tags, now and then a secret such as ``?token=`` that the scrubber must remove);
* referrers (own pages, search engines, social sites, none), a status mix (200/304/301/302/404/
  403/500/503) and sizes.

The log starts at ``--start`` (UTC, default 2026-06-01) and runs at ``--rate`` lines per second
on average (default 20: 1M lines span ~14 h), so every line is in the past.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import math
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
UA_YAML = ROOT / "tests" / "data" / "ua" / "test_ua.yaml"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# ----------------------------------------------------------------------------- User-Agents

_WIN = ("Windows NT 10.0; Win64; x64", "Windows NT 10.0; WOW64", "Windows NT 6.1; Win64; x64",
        "Windows NT 6.3; Win64; x64", "Windows NT 10.0", "Windows NT 6.1")
_MAC = tuple(f"Macintosh; Intel Mac OS X {v}" for v in (
    "10_15_7", "10_15_6", "10_14_6", "10_13_6", "10_12_6", "10_11_6", "11_7_10", "12_6_1",
    "13_5_2", "14_2_1", "10_15"))
_LINUX = ("X11; Linux x86_64", "X11; Ubuntu; Linux x86_64", "X11; Fedora; Linux x86_64",
          "X11; CrOS x86_64 14541.0.0", "X11; Linux i686")
_ANDROID_MODELS = (
    "SM-G991B", "SM-G998B", "SM-A515F", "SM-A525F", "SM-S901B", "SM-S908B", "SM-G973F",
    "SM-G960F", "SM-N986B", "SM-A135F", "SM-T870", "SM-X200", "Pixel 7", "Pixel 7 Pro",
    "Pixel 6a", "Pixel 8", "Pixel 5", "Pixel 4a", "M2101K6G", "Redmi Note 8 Pro",
    "Redmi Note 10 Pro", "2201117TG", "M2007J20CG", "CPH2211", "CPH2409", "ONEPLUS A6013",
    "IN2023", "LE2123", "moto g(30)", "moto g power (2022)", "Moto G (5)", "VOG-L29", "ELE-L29",
    "MAR-LX1A", "LM-Q720", "Nokia 7.2", "RMX3085", "V2111", "TECNO KG5", "Infinix X6816",
    "SAMSUNG SM-A226B", "K", "Lenovo TB-X606F", "KFTRWI", "HD1913", "ASUS_I005DA", "XQ-BC52",
    "SO-51A", "SH-M15", "A002OP")
_ANDROID_VERSIONS = ("8.0.0", "8.1.0", "9", "10", "11", "12", "13", "14", "7.0", "6.0.1")
_IOS_VERSIONS = ("12_5_7", "13_7", "14_8_1", "15_7_9", "15_8", "16_1_2", "16_6_1", "16_7_2",
                 "17_0_3", "17_1_2", "17_2_1", "17_3", "17_4_1", "17_5_1", "18_0", "18_1")
_APPS = ("Instagram 312.0.0.32.112", "FBAV/442.0.0.39.107", "GSA/298.0.595435837",
         "Twitter for iPhone/10.27", "LinkedInApp/9.29.4", "Pinterest/12.22",
         "Snapchat/12.61.0.38", "TikTok 32.5.0", "Line/13.20.0", "MicroMessenger/8.0.44")
_BOTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/{c}.0.{b}.{p} Mobile Safari/537.36 (compatible; Googlebot/2.1; "
    "+http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 (compatible; DotBot/1.2; +https://opensiteexplorer.org/dotbot; help@moz.com)",
    "Mozilla/5.0 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
    "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0", "curl/7.{m}.0", "curl/8.{m}.1", "Wget/1.{m}", "python-requests/2.{m}.0",
    "Go-http-client/1.1", "Go-http-client/2.0", "okhttp/4.{m}.0", "Apache-HttpClient/4.5.{m}",
    "axios/1.{m}.2", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "Prometheus/2.{m}.0", "kube-probe/1.{m}", "UptimeRobot/2.0; http://www.uptimerobot.com/",
)


def _chrome_build(major: int, rng: random.Random) -> str:
    build = 3000 + (major - 60) * 60 + rng.randrange(0, 40) if major < 110 else \
        5400 + (major - 110) * 70 + rng.randrange(0, 40)
    return f"{major}.0.{build}.{rng.randrange(0, 230)}"


def build_ua_pool(size: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """(head, pool): a small popular head and a large long-tailed pool of distinct agents."""
    pool: dict[str, None] = {}
    head: list[str] = []
    for major in range(124, 132):  # the popular head: current Chrome/Safari/Firefox
        for plat in (_WIN[0], _MAC[0], _LINUX[0]):
            head.append(f"Mozilla/5.0 ({plat}) AppleWebKit/537.36 (KHTML, like Gecko) "
                        f"Chrome/{major}.0.0.0 Safari/537.36")
        head.append(f"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
                    f"Chrome/{major}.0.0.0 Mobile Safari/537.36")
        head.append(f"Mozilla/5.0 ({_WIN[0]}; rv:{major}.0) Gecko/20100101 Firefox/{major}.0")
    for ios in _IOS_VERSIONS[-6:]:
        v = ios.split("_")[0] + "." + ios.split("_")[1]
        head.append(f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) "
                    f"AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v} Mobile/15E148 "
                    "Safari/604.1")
    if UA_YAML.exists():
        for line in UA_YAML.read_text("utf-8").splitlines():
            line = line.strip()
            if line.startswith("- user_agent_string:"):
                value = line.split(":", 1)[1].strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1].replace("''", "'")
                if value and '"' not in value:
                    pool[value] = None

    def one() -> str:
        r = rng.random()
        if r < 0.30:
            major = rng.randrange(70, 132)
            plat = rng.choice(_WIN + _MAC + _LINUX)
            ua = (f"Mozilla/5.0 ({plat}) AppleWebKit/537.36 (KHTML, like Gecko) "
                  f"Chrome/{_chrome_build(major, rng)} Safari/537.36")
            if rng.random() < 0.15:
                ua += f" Edg/{major}.0.{rng.randrange(1000, 2500)}.{rng.randrange(0, 120)}"
            elif rng.random() < 0.05:
                ua += f" OPR/{major - 14}.0.{rng.randrange(4000, 5200)}.{rng.randrange(0, 100)}"
            return ua
        if r < 0.55:
            major = rng.randrange(70, 132)
            model = rng.choice(_ANDROID_MODELS)
            av = rng.choice(_ANDROID_VERSIONS)
            build = "" if rng.random() < 0.5 else f" Build/{rng.choice('NPQRST')}" \
                f"{rng.choice('KPQ')}{rng.randrange(1, 4)}A.{rng.randrange(190000, 240000)}." \
                f"{rng.randrange(1, 30):03d}"
            if rng.random() < 0.12:
                return (f"Mozilla/5.0 (Linux; Android {av}; {model}{build}) AppleWebKit/537.36 "
                        f"(KHTML, like Gecko) SamsungBrowser/{rng.randrange(9, 25)}.0 "
                        f"Chrome/{major}.0.0.0 Mobile Safari/537.36")
            if rng.random() < 0.10:
                return (f"Mozilla/5.0 (Linux; Android {av}; {model}{build}; wv) AppleWebKit/"
                        f"537.36 (KHTML, like Gecko) Version/4.0 Chrome/"
                        f"{_chrome_build(major, rng)} Mobile Safari/537.36 "
                        f"{rng.choice(_APPS)}")
            return (f"Mozilla/5.0 (Linux; Android {av}; {model}{build}) AppleWebKit/537.36 "
                    f"(KHTML, like Gecko) Chrome/{_chrome_build(major, rng)} Mobile "
                    "Safari/537.36")
        if r < 0.75:
            ios = rng.choice(_IOS_VERSIONS)
            dev = rng.choice(("iPhone; CPU iPhone OS", "iPad; CPU OS", "iPhone; CPU iPhone OS"))
            v = ".".join(ios.split("_")[:2])
            mobile = f"{rng.randrange(15, 22)}{rng.choice('ABCDEFGH')}{rng.randrange(5, 400)}"
            if rng.random() < 0.15:
                return (f"Mozilla/5.0 ({dev} {ios} like Mac OS X) AppleWebKit/605.1.15 "
                        f"(KHTML, like Gecko) Mobile/{mobile} {rng.choice(_APPS)}")
            if rng.random() < 0.15:
                return (f"Mozilla/5.0 ({dev} {ios} like Mac OS X) AppleWebKit/605.1.15 "
                        f"(KHTML, like Gecko) CriOS/{_chrome_build(rng.randrange(90, 132), rng)}"
                        f" Mobile/{mobile} Safari/604.1")
            return (f"Mozilla/5.0 ({dev} {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
                    f"like Gecko) Version/{v} Mobile/{mobile} Safari/604.1")
        if r < 0.87:
            fv = rng.randrange(60, 133)
            plat = rng.choice(_WIN + _MAC + _LINUX)
            if rng.random() < 0.2:
                plat = f"Android {rng.choice(_ANDROID_VERSIONS)}; Mobile"
            return (f"Mozilla/5.0 ({plat}; rv:{fv}.0) Gecko/20100101 "
                    f"Firefox/{fv}.{rng.randrange(3)}")
        if r < 0.95:
            mac = rng.choice(_MAC)
            sv = f"{rng.randrange(12, 18)}.{rng.randrange(0, 7)}"
            if rng.random() < 0.5:
                sv += f".{rng.randrange(1, 4)}"
            return (f"Mozilla/5.0 ({mac}) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                    f"Version/{sv} Safari/605.1.15")
        bot = rng.choice(_BOTS)
        return bot.format(c=rng.randrange(100, 132), b=rng.randrange(5000, 6800),
                          p=rng.randrange(0, 200), m=rng.randrange(10, 90))

    tries = 0
    while len(pool) < size and tries < size * 20:
        pool[one()] = None
        tries += 1
    return head, list(pool)


# ----------------------------------------------------------------------------- clients

_V4_FIRST = [o for o in range(1, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203)]


def make_clients(n: int, v6_share: float, rng: random.Random) -> list[str]:
    """``n`` addresses; ~n/4 distinct /24 networks, a few providers per IPv6 /32."""
    nets = [f"{rng.choice(_V4_FIRST)}.{rng.randrange(256)}.{rng.randrange(256)}"
            for _ in range(max(1, n // 4))]
    v6nets = [f"2{rng.choice('0a')}{rng.randrange(16):x}{rng.randrange(16):x}:"
              f"{rng.randrange(0x10000):x}:{rng.randrange(0x10000):x}"
              for _ in range(max(1, n // 60))]
    out: set[str] = set()
    while len(out) < n:
        if rng.random() < v6_share:
            out.add(f"{rng.choice(v6nets)}:{rng.randrange(0x10000):x}:"
                    f"{rng.randrange(0x10000):x}:{rng.randrange(0x10000):x}:"
                    f"{rng.randrange(0x10000):x}:{rng.randrange(1, 0x10000):x}")
        else:
            out.add(f"{rng.choice(nets)}.{rng.randrange(1, 255)}")
    clients = sorted(out)
    rng.shuffle(clients)
    return clients


# ----------------------------------------------------------------------------- pages

_WORDS = ("shoes", "jacket", "linux", "privacy", "router", "garden", "coffee", "camera",
          "python", "travel", "bike", "laptop", "recipe", "music", "hotel", "paris", "berlin")
_SECTIONS = ("blog", "products", "docs", "news", "category", "tag", "users", "help", "api/v1/items",
             "events", "jobs", "forum/t")
_ASSETS = ("/static/css/main.{h}.css", "/static/js/app.{h}.js", "/static/js/vendor.{h}.js",
           "/img/logo.svg", "/img/hero-{n}.webp", "/fonts/inter-{n}.woff2", "/favicon.ico",
           "/img/products/{n}.jpg", "/static/js/chunk-{n}.{h}.js")


def make_pages(n: int, rng: random.Random) -> list[str]:
    pages = ["/", "/about", "/contact", "/login", "/search", "/cart", "/robots.txt",
             "/sitemap.xml", "/feed.xml", "/pricing"]
    while len(pages) < n:
        s = rng.choice(_SECTIONS)
        r = rng.random()
        if r < 0.4:
            p = f"/{s}/{rng.randrange(1, 200000)}"
        elif r < 0.7:
            p = f"/{s}/{rng.choice(_WORDS)}-{rng.choice(_WORDS)}-{rng.randrange(1, 99)}"
        else:
            p = f"/{s}/{rng.choice(_WORDS)}/{rng.randrange(1, 5000)}/reviews"
        pages.append(p)
    return pages


def with_query(path: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.70:
        return path
    if r < 0.80:
        return f"{path}?page={rng.randrange(2, 40)}"
    if r < 0.88:
        sort = rng.choice(("new", "top"))
        return f"/search?q={rng.choice(_WORDS)}+{rng.choice(_WORDS)}&sort={sort}"
    if r < 0.96:
        return (f"{path}?utm_source={rng.choice(('newsletter', 'twitter', 'google'))}"
                f"&utm_medium={rng.choice(('email', 'social', 'cpc'))}"
                f"&utm_campaign=c{rng.randrange(90)}")
    if r < 0.98:
        return f"{path}?id={rng.randrange(10**6)}&ref={rng.choice(_WORDS)}"
    return f"{path}?token={rng.getrandbits(128):032x}"  # a secret the scrubber must remove


class Zipf:
    """Draws ranks 0..n-1 with P(k) ∝ 1/(k+1)^s (inverse CDF by bisection)."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        self.cdf = list(itertools.accumulate(weights))
        self.total = self.cdf[-1]
        self.rng = rng

    def __call__(self) -> int:
        return min(bisect.bisect_left(self.cdf, self.rng.random() * self.total), len(self.cdf) - 1)


_REFERRERS = ("https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/",
              "https://t.co/abc", "https://www.facebook.com/", "https://news.ycombinator.com/",
              "https://www.reddit.com/r/programming/")
_STATUS = ((200, 0.84), (304, 0.06), (404, 0.04), (301, 0.02), (302, 0.02), (403, 0.007),
           (500, 0.006), (503, 0.003), (206, 0.004))


def clf_time(t: float) -> str:
    d = datetime.fromtimestamp(t, UTC)
    return (f"{d.day:02d}/{_MONTHS[d.month - 1]}/{d.year}:{d.hour:02d}:{d.minute:02d}:"
            f"{d.second:02d} +0000")


# ----------------------------------------------------------------------------- the log

def generate(n: int, out: Path | None, seed: int, clients_n: int, v6_share: float,
             ua_pool_size: int, rate: float, start: float) -> dict[str, int]:
    rng = random.Random(seed)
    head, pool = build_ua_pool(ua_pool_size, rng)
    clients = make_clients(clients_n, v6_share, rng)
    # 30 % of clients use a popular head agent; the others each take the next agent of the
    # long-tailed pool (so distinct agents grow with the clients a log reaches).
    tail = iter(itertools.cycle(pool))
    client_ua = [rng.choice(head) if rng.random() < 0.3 else next(tail) for _ in clients]
    pages = make_pages(5000, rng)
    deploys = [f"{rng.getrandbits(32):08x}" for _ in range(3)]  # asset hashes of 3 releases
    page_rank = Zipf(len(pages), 1.05, rng)
    client_rank = Zipf(len(clients), 0.35, rng)
    status_values = [s for s, _ in _STATUS]
    status_cum = list(itertools.accumulate(w for _, w in _STATUS))
    span = n / rate
    # A heap of (next time, seq, state) per visit; pop the earliest, emit, push its next request.
    heap: list[tuple[float, int, list[Any]]] = []
    seq = itertools.count()
    emitted = 0
    uas: set[str] = set()
    seen_clients: set[int] = set()
    visits = 0
    fh = open(out, "w", encoding="utf-8") if out is not None else sys.stdout
    buf: list[str] = []
    mean_visit_lines = 4 * 3.5  # pages × (1 + assets)
    visit_rate = rate / mean_visit_lines  # visits started per second

    def new_visit(t: float) -> None:
        nonlocal visits
        c = client_rank()
        pages_left = 1 + int(-math.log(1 - rng.random()) * 3)  # geometric-ish, mean ~4
        heapq.heappush(heap, (t, next(seq), [c, pages_left, None, 0]))
        visits += 1

    t_next_visit = start
    while emitted < n:
        while t_next_visit <= (heap[0][0] if heap else t_next_visit):
            new_visit(t_next_visit)
            t_next_visit += -math.log(1 - rng.random()) / visit_rate * (
                1.0 + 0.5 * math.sin((t_next_visit - start) / 86400 * 2 * math.pi))
        t, _, state = heapq.heappop(heap)
        c, _pages_left, last_page, assets_left = state
        ip, ua = clients[c], client_ua[c]
        if assets_left > 0:
            path = rng.choice(_ASSETS).format(h=rng.choice(deploys), n=rng.randrange(1, 300))
            ref = f"https://www.example.com{last_page}"
            method = "GET"
            state[3] -= 1
        else:
            page = with_query(pages[page_rank()], rng)
            if last_page is None:
                ref = "-" if rng.random() < 0.5 else rng.choice(_REFERRERS)
            else:
                ref = f"https://www.example.com{last_page.split('?')[0]}"
            path = page
            method = "POST" if page.startswith(("/login", "/cart")) and rng.random() < 0.3 \
                else "GET"
            state[2] = page
            state[1] -= 1
            state[3] = rng.randrange(0, 7) if "bot" not in ua.lower() else 0
        status = status_values[bisect.bisect_left(status_cum, rng.random() * status_cum[-1])]
        size = "-" if status in (304, 301, 302) and rng.random() < 0.5 else \
            str(int(rng.lognormvariate(8.5, 1.6)))
        buf.append(f'{ip} - - [{clf_time(t)}] "{method} {path} HTTP/1.1" {status} {size} '
                   f'"{ref}" "{ua}"\n')
        emitted += 1
        uas.add(ua)
        seen_clients.add(c)
        if len(buf) >= 10000:
            fh.write("".join(buf))
            buf.clear()
        if state[3] > 0:
            heapq.heappush(heap, (t + rng.random() * 0.4, next(seq), state))
        elif state[1] > 0:
            heapq.heappush(heap, (t + 1 + rng.expovariate(1 / 40), next(seq), state))
    fh.write("".join(buf))
    if out is not None:
        fh.close()
    v6 = sum(1 for c in seen_clients if ":" in clients[c])
    return {"lines": emitted, "clients": len(seen_clients), "ipv6_clients": v6,
            "user_agents": len(uas), "visits": visits, "span_s": int(span)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--lines", type=int, default=1_000_000)
    p.add_argument("-o", "--output", type=Path, default=None, help="file (default: stdout)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--clients", type=int, default=50_000)
    p.add_argument("--ipv6-share", type=float, default=0.05)
    p.add_argument("--ua-pool", type=int, default=40_000, help="distinct agents to draw from")
    p.add_argument("--rate", type=float, default=20.0, help="average lines per second of log time")
    p.add_argument("--start", default="2026-06-01T00:00:00", help="first timestamp (UTC)")
    ns = p.parse_args(argv)
    start = datetime.fromisoformat(ns.start).replace(tzinfo=UTC).timestamp()
    began = time.perf_counter()
    stats = generate(ns.lines, ns.output, ns.seed, ns.clients, ns.ipv6_share, ns.ua_pool,
                     ns.rate, start)
    stats["seconds"] = round(time.perf_counter() - began, 1)  # type: ignore[assignment]
    print("gen_log: " + ", ".join(f"{k}={v}" for k, v in stats.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
