"""Labelled replay benchmark of the anomaly detectors: recall, false alarms, time to report.

    .venv/bin/python -m bench.detect_eval [--days 7] [--seed 5] [--write]

Traffic (``bench/detect_traffic.py``): four sites of different sizes (peaks of 420, 130, 16 and
5 requests a minute) with a daily curve, weekends, a slow trend, a deploy-day step, a CDN
flush, declared crawlers and background probes; every incident kind injected at several sizes,
the hard ones included (a scanner with 7 templates, a slow scan over an hour, credential
stuffing over 50 networks, a 5xx burst on one path of the big site, a small site's outage, a
bot surge with browser-like agents). Records go through the aggregates' writer
(``Aggregator.add``: sessions, k-folded path templates, distinct 4xx targets) and the minute
rows it would write are fed to the detectors (``Engine.feed``) as the service does, without
SQLite or HTTP (fast).

Scoring: an incident is found when an anomaly of an accepted kind opens on its site (or the
all-sites view) between one minute before its start and two minutes after its end; time to
report is the first such anomaly's ``detected`` minus the incident's start (log minutes). Any
other anomaly overlapping an incident's minutes on its site is a side finding of it (a scanner's
ASN is also new; a bot surge is also a spike); every remaining anomaly is a false alarm.
``new_source`` anomalies are checked against the share the value held over the previous hour.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.common import command_line, machine, today, write_section
from bench.detect_traffic import DAY, T0, Incident, Rec, clean_minute, make_sites, schedule
from collector.aggregates.counter import Aggregator, add_targets
from collector.aggregates.schema import COUNTERS
from collector.detect.engine import ALL_SITES, Engine
from collector.detect.minute import DETECT_DIMS, Minute
from collector.detect.model import Anomaly
from collector.settings import DetectSettings


@dataclass
class Result:
    days: float
    sites: int
    records: int
    incidents: list[Incident]
    found: dict[int, Anomaly] = field(default_factory=dict)  # incident index -> first report
    anomalies: list[Anomaly] = field(default_factory=list)
    false_alarms: list[Anomaly] = field(default_factory=list)
    newcomer_violations: list[tuple[Anomaly, float]] = field(default_factory=list)
    seconds: float = 0.0


def to_minutes(pending: dict[tuple[int, str, str, str], list[float]]) -> dict[str, Minute]:
    """The minute rows the writer would upsert, as the detectors read them back."""
    out: dict[str, Minute] = {}
    wanted = set(DETECT_DIMS)
    for (t, site, dim, value), vals in pending.items():
        if dim not in wanted:
            continue
        m = out.get(site)
        if m is None:
            m = out[site] = Minute(t, site)
        counts = dict(zip(COUNTERS, vals, strict=True))
        if dim == "":
            m.total = counts
        else:
            m.by.setdefault(dim, {})[value] = counts
    return out


def run(days: float, seed: int) -> Result:
    started = time.perf_counter()
    sites = make_sites()
    incidents = schedule(days, seed)
    agg = Aggregator()
    engine = Engine(DetectSettings(), anonymizers=False)
    res = Result(days, len(sites), 0, incidents)
    # per site: the last hour of (country/asn value -> requests), for the new_source check
    hour: dict[str, list[dict[str, float]]] = defaultdict(list)
    rng = random.Random(seed)
    minutes = int(days * DAY // 60)
    for k in range(minutes):
        t = T0 + 60 * k
        recs: list[tuple[Rec, int | None]] = []
        for site in sites:
            active = [i for i in incidents if i.site == site.name and i.start <= t < i.end]
            if not any(i.outage for i in active):
                scale = max((i.scale for i in active), default=1.0)
                for _ in range(int(scale)):
                    recs += clean_minute(site, t, rng)
            for i in active:
                if i.inject is not None:
                    recs += i.inject(site, t, rng)
        res.records += len(recs)
        agg.add([r for r, _ in recs], [s for _, s in recs])
        by_site = to_minutes(pending_rows(agg))
        for what, a in engine.feed(t, by_site):
            if what == "opened":
                res.anomalies.append(a)
                if a.kind == "new_source":
                    _check_newcomer(res, a, hour[a.site])
        for name, m in by_site.items():
            shares = {f"{d}={v}": r.get("requests", 0.0) for d in ("country", "asn")
                      for v, r in m.rows(d).items()}
            shares["requests"] = m.get("requests")
            hour[name].append(shares)
            if len(hour[name]) > 60:
                hour[name].pop(0)
        if k % 60 == 0:
            agg.forget(set())
    res.seconds = time.perf_counter() - started
    _score(res)
    return res


def pending_rows(agg: Aggregator) -> dict[tuple[int, str, str, str], list[float]]:
    """What ``Aggregator.flush`` would upsert now (then forgotten, as after a flush)."""
    add_targets(agg.pending, agg.targets.drain())
    rows, agg.pending = agg.pending, {}
    return rows


def _check_newcomer(res: Result, a: Anomaly, hour: list[dict[str, float]]) -> None:
    (dim, value), = a.dims.items()
    total = sum(h.get("requests", 0.0) for h in hour)
    share = sum(h.get(f"{dim}={value}", 0.0) for h in hour) / total if total else 0.0
    if share >= 0.05:
        res.newcomer_violations.append((a, share))


def _score(res: Result) -> None:
    for a in res.anomalies:
        matched = False
        for n, i in enumerate(res.incidents):
            if a.site not in (i.site, ALL_SITES):
                continue
            if not (i.start - 60 <= a.start <= i.end + 120):
                if i.start - 60 <= a.start <= i.end + 600:
                    matched = True  # a tail of the incident (e.g. the level after it)
                continue
            matched = True
            if a.kind in i.accept and a.site == i.site and (
                    n not in res.found or a.detected < res.found[n].detected):
                res.found[n] = a
        if not matched:
            res.false_alarms.append(a)


def table(res: Result) -> str:
    kinds: dict[str, list[int]] = defaultdict(list)
    for n, i in enumerate(res.incidents):
        kinds[i.kind].append(n)
    lines = ["| incident kind | sizes | found / injected | recall | median time to report "
             "(log min) |", "|---|---|---|---|---|"]
    delays: list[float] = []
    for kind, idx in kinds.items():
        got = [n for n in idx if n in res.found]
        d = [(res.found[n].detected - res.incidents[n].start) / 60 for n in got]
        delays += d
        sizes = ", ".join(sorted({res.incidents[n].size for n in idx}))
        med = f"{statistics.median(d):.0f}" if d else "–"
        lines.append(f"| `{kind}` | {sizes} | {len(got)} / {len(idx)} | "
                     f"{len(got) / len(idx):.0%} | {med} |")
    total = len(res.incidents)
    site_weeks = res.sites * res.days / 7
    lines.append(f"| **all** | | **{len(res.found)} / {total}** | "
                 f"**{len(res.found) / max(total, 1):.0%}** | "
                 f"**{statistics.median(delays) if delays else float('nan'):.0f}** |")
    fa = res.false_alarms
    lines.append("")
    lines.append(f"False alarms: **{len(fa)}** in {res.days:g} days × {res.sites} sites "
                 f"({len(fa) / res.days:.2f} a day, {len(fa) / site_weeks:.2f} per site-week)"
                 + (": " + "; ".join(f"{a.site} {a.kind} {a.dims} at day "
                                     f"{(a.start - T0) / DAY:.2f}" for a in fa[:12])
                    if fa else "") + ".")
    lines.append(f"`new_source` for a country/ASN with ≥ 5 % of the previous hour: "
                 f"**{len(res.newcomer_violations)}**"
                 + (": " + "; ".join(f"{a.site} {a.dims} ({s:.0%})"
                                     for a, s in res.newcomer_violations[:5])
                    if res.newcomer_violations else "") + ".")
    missed = [i for n, i in enumerate(res.incidents) if n not in res.found]
    if missed:
        lines.append("Missed: " + "; ".join(f"{i.kind} ({i.size}) on {i.site}"
                                             for i in missed) + ".")
    lines.append(f"{res.records:,} records, {res.seconds:.0f} s.")
    return "\n".join(lines)


def summary(res: Result) -> dict[str, Any]:
    """The figures the goals are about (for tests and the smoke run)."""
    per_kind: dict[str, list[bool]] = defaultdict(list)
    for n, i in enumerate(res.incidents):
        per_kind[i.kind].append(n in res.found)
    delays = [(a.detected - res.incidents[n].start) / 60 for n, a in res.found.items()]
    return {"recall": len(res.found) / max(len(res.incidents), 1),
            "per_kind": {k: sum(v) / len(v) for k, v in per_kind.items()},
            "false_alarms": len(res.false_alarms),
            "per_site_week": len(res.false_alarms) / (res.sites * res.days / 7),
            "median_minutes": statistics.median(delays) if delays else None,
            "newcomer_violations": len(res.newcomer_violations),
            "incidents": len(res.incidents)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="write the table into bench/RESULTS.md")
    ns = ap.parse_args(argv)
    res = run(ns.days, ns.seed)
    out = table(res)
    print(out)
    if ns.write:
        write_section("Anomaly detection: labelled replay (bench/detect_eval.py)",
                      f"`{command_line(sys.argv)}` — {today()}, {machine()}\n\n{out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
