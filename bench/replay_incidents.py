"""Replay the real sample log with injected incidents so the dashboard lights up.

    python -m bench.replay_incidents [--url http://127.0.0.1:8780] [--token T] [--log FILE]

Reads ``../shared/corpus/logs/elastic-examples_apache_logs`` (combined format, 2015), shifts it
so it ends now (live mode; ``--keep-time`` keeps 2015 and lets the detectors judge it on log
time), spreads each hour's requests over the hour (the sample stamps them all at minute 5, which
the volume detectors rightly call a spike every hour; ``--no-spread`` keeps that), injects
into its busiest hour: a scanner from 198.51.100.0/24 probing 40 distinct paths a minute (404),
a burst of 503s, and a credential-stuffing run (60 POST /login → 401 a minute from
203.0.113.0/24), and ships everything as NDJSON in time order. Then open /dashboard.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT.parent / "shared" / "corpus" / "logs" / "elastic-examples_apache_logs"
LINE = re.compile(r'^(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+) [^"]*" (\d{3}) (\S+) "([^"]*)" '
                  r'"([^"]*)"')


def read(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = LINE.match(line)
        if not m:
            continue
        t = datetime.strptime(m.group(2), "%d/%b/%Y:%H:%M:%S %z").timestamp()
        out.append({"client": m.group(1), "time": t, "method": m.group(3),
                    "target": m.group(4), "status": int(m.group(5)),
                    "bytes": int(m.group(6)) if m.group(6).isdigit() else 0,
                    "referrer": m.group(7), "user_agent": m.group(8)})
    return out


def incidents(t0: float, rng: random.Random) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in range(4):  # scanner
        for i in range(40):
            probe = f"/{rng.choice(['wp', 'cgi', 'old'])}-{m}-{i}.php"
            out.append({"client": f"198.51.100.{rng.randrange(2, 250)}", "time": t0 + 60 * m + i,
                        "method": "GET", "target": probe,
                        "status": 404, "bytes": 120, "user_agent": "zgrab/0.x"})
    for m in range(3):  # 5xx burst
        for i in range(60):
            out.append({"client": f"81.2.69.{rng.randrange(2, 250)}", "time": t0 + 600 + 60 * m + i,
                        "method": "GET", "target": "/presentations/", "status": 503, "bytes": 0,
                        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"})
    for m in range(4):  # credential stuffing
        for i in range(60):
            out.append({"client": f"203.0.113.{rng.randrange(2, 250)}",
                        "time": t0 + 1200 + 60 * m + i, "method": "POST", "target": "/login",
                        "status": 401, "bytes": 40, "user_agent": f"python-requests/2.{i % 30}"})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8780")
    ap.add_argument("--token")
    ap.add_argument("--log", type=Path, default=LOG)
    ap.add_argument("--keep-time", action="store_true", help="keep the log's own timestamps")
    ap.add_argument("--no-spread", action="store_true",
                    help="keep each hour's requests in the one minute the sample stamps them")
    ns = ap.parse_args()
    if not ns.log.exists():
        print(f"replay: {ns.log} not found (../shared/corpus)", file=sys.stderr)
        return 2
    recs = read(ns.log)
    rng = random.Random(7)
    if not ns.no_spread:  # the sample stamps a whole hour's requests in one minute (:05)
        by_hour: dict[int, list[dict[str, Any]]] = {}
        for r in recs:
            by_hour.setdefault(int(r["time"] // 3600), []).append(r)
        for hour, rs in by_hour.items():
            for i, r in enumerate(rs):
                r["time"] = hour * 3600 + 3600 * (i + rng.random()) / len(rs)
    hours: dict[int, int] = {}
    for r in recs:
        hours[int(r["time"] // 3600)] = hours.get(int(r["time"] // 3600), 0) + 1
    busiest = max(hours, key=lambda h: hours[h]) * 3600
    recs += incidents(float(busiest), rng)
    recs.sort(key=lambda r: r["time"])
    if not ns.keep_time:
        shift = time.time() - 120 - recs[-1]["time"]
        for r in recs:
            r["time"] += shift
    headers = {"Content-Type": "application/x-ndjson"}
    if ns.token:
        headers["Authorization"] = f"Bearer {ns.token}"
    sent = 0
    for i in range(0, len(recs), 2000):
        body = b"\n".join(orjson.dumps(r) for r in recs[i:i + 2000])
        req = urllib.request.Request(ns.url + "/v1/logs", data=body, headers=headers)
        with urllib.request.urlopen(req) as resp:
            sent += orjson.loads(resp.read())["accepted"]
    print(f"replayed {sent} records; incidents from "
          f"{datetime.fromtimestamp(busiest + (0 if ns.keep_time else shift)).isoformat()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
