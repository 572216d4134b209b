"""The detectors. Each is a small object configured from ``[detect]`` whose ``__call__`` looks at
one site's completed minute and returns its findings (the condition holds this minute); the
tracker turns findings into anomalies that open and close. Rules in docs/detection.md
``## Anomaly detection``; every number that tripped a rule is in the finding's evidence.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from collector.detect.baseline import DecayingShares, Ewma, RateBaseline, SeasonalBaseline
from collector.detect.minute import Counts, Minute
from collector.settings import DetectSettings


@dataclass(slots=True)
class Finding:
    kind: str
    dims: dict[str, Any]
    evidence: dict[str, Any]
    score: float  # how far past the threshold: 1 = just tripped
    severity_floor: str = "low"
    extra: dict[str, Any] = field(default_factory=dict)


def _r(x: float) -> float:
    return round(float(x), 3)


def _top(rows: dict[str, Counts], key: Any, n: int = 3) -> list[dict[str, Any]]:
    ranked = sorted(rows.items(), key=lambda kv: -key(kv[1]))[:n]
    return [{"value": v, "count": int(key(c))} for v, c in ranked if key(c) > 0]


class Volume:
    """traffic_spike / traffic_drop: requests against the seasonal forecast, judged over the
    current run of minutes that are each past the ratio (a single minute on a big site; a few
    on a small site, whose flash crowd or outage is clear only summed over minutes).

    Spike: every minute of the run ≥ ``spike_ratio`` × its forecast; over the run, requests ≥
    ``spike_min_requests`` and ≥ ``spike_z`` sigmas above the expected. Drop: every minute ≤
    ``drop_ratio`` × its forecast; over the run, expected ≥ ``drop_min_baseline`` and requests
    ``drop_z`` sigmas below it, and the site had at least ``drop_min_baseline`` requests in the
    hour before the run (a forecast alone is no proof that traffic was there to drop)."""

    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        self.base = SeasonalBaseline(cfg.baseline_halflife, cfg.season_halflife)
        self.warm = int(cfg.warmup // 60)
        self.high = [0, 0.0, 0.0, 0.0]  # run of high minutes: minutes, requests, expected, var
        self.low = [0, 0.0, 0.0, 0.0]  # run of low minutes
        self.hour: deque[float] = deque(maxlen=60)  # requests of the last hour's minutes
        self.before = 0.0  # requests in the hour before the current low run began

    @staticmethod
    def _run(run: list[Any], inside: bool, x: float, f: float, sigma: float) -> list[Any]:
        if not inside:
            return [0, 0.0, 0.0, 0.0]
        return [run[0] + 1, run[1] + x, run[2] + f, run[3] + sigma * sigma]

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        x = m.get("requests")
        f, sigma = self.base.forecast(m.t)
        out: list[Finding] = []
        if self.base.n >= self.warm and self.base.level is not None:
            z = (x - f) / sigma
            ev: dict[str, Any] = {"requests": int(x), "forecast": _r(f), "sigma": _r(sigma),
                                  "z": _r(z)}
            self.high = hi = self._run(self.high, x >= c.spike_ratio * f and x > 0, x, f, sigma)
            self.low = lo = self._run(self.low, f > 0 and x <= c.drop_ratio * f, x, f, sigma)
            if lo[0] == 1:
                self.before = sum(self.hour)
            if hi[0] and hi[1] >= c.spike_min_requests and hi[1] >= c.spike_ratio * hi[2] \
                    and x >= c.spike_ratio * f \
                    and (hi[1] - hi[2]) / math.sqrt(max(hi[3], 1.0)) >= c.spike_z:
                if hi[0] > 1:
                    ev.update(minutes=hi[0], requests_in_run=int(hi[1]),
                              expected_in_run=_r(hi[2]))
                out.append(Finding("traffic_spike", {}, ev,
                                   min(z / c.spike_z, hi[1] / max(c.spike_ratio * hi[2], 1.0))))
            elif lo[0] and lo[2] >= c.drop_min_baseline and lo[1] <= c.drop_ratio * lo[2] \
                    and self.before >= c.drop_min_baseline \
                    and (lo[2] - lo[1]) / math.sqrt(max(lo[3], 1.0)) >= c.drop_z:
                if lo[0] > 1:
                    ev.update(minutes=lo[0], requests_in_run=int(lo[1]),
                              expected_in_run=_r(lo[2]))
                out.append(Finding("traffic_drop", {}, ev,
                                   (lo[2] - lo[1]) / max(lo[2] * (1 - c.drop_ratio), 1.0)))
        self.hour.append(x)
        if not out:
            self.base.update(m.t, x)
        return out


class BotSurge:
    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        self.base = SeasonalBaseline(cfg.baseline_halflife, cfg.season_halflife)
        self.warm = int(cfg.warmup // 60)

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        x = m.get("bots")
        f, sigma = self.base.forecast(m.t)
        z = (x - f) / sigma
        if (self.base.n >= self.warm and x >= c.bot_min and x >= c.bot_ratio * f
                and z >= c.bot_z):
            req = max(m.get("requests"), 1.0)
            ev = {"bots": int(x), "forecast": _r(f), "sigma": _r(sigma), "z": _r(z),
                  "bot_share": _r(x / req)}
            return [Finding("bot_surge", {}, ev, min(z / c.bot_z, x / max(c.bot_ratio * f, 1)))]
        self.base.update(m.t, x)
        return []


class ErrorRate:
    """error_rate: the minute's 5xx share against its baseline share; and per path template,
    over the last ``PATH_WINDOW`` minutes, one path's 5xx share against that path's baseline
    (a broken endpoint of a big site hardly moves the site's share)."""

    PATH_WINDOW = 3

    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        self.base = RateBaseline(cfg.baseline_halflife)
        self.paths: dict[str, RateBaseline] = {}
        self.recent: deque[dict[str, tuple[float, float]]] = deque(maxlen=self.PATH_WINDOW)
        self.site: deque[tuple[float, float]] = deque(maxlen=self.PATH_WINDOW)

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        errors, req = m.get("s5xx"), m.get("requests")
        self.site.append((errors, req))
        need = max(c.error_rate, c.error_factor * self.base.rate)
        rows = m.rows("path_template")
        # the minute alone, else the last PATH_WINDOW minutes (a small site's burst)
        for n, (e, r) in enumerate(((errors, req), (sum(x for x, _ in self.site),
                                                    sum(y for _, y in self.site)))):
            rate = e / r if r else 0.0
            if errors and e >= (c.error_window_min if n else c.error_min) and rate >= need:
                ev = {"status_5xx": int(e), "requests": int(r), "rate": _r(rate),
                      "baseline_rate": _r(self.base.rate),
                      "top_paths": _top(rows, lambda r: r.get("s5xx", 0))}
                if n:
                    ev["window_minutes"] = len(self.site)
                return [Finding("error_rate", {}, ev, rate / need, "medium")]
        self.base.update(errors, req)
        return self._paths(rows)

    def _paths(self, rows: dict[str, Counts]) -> list[Finding]:
        c = self.cfg
        self.recent.append({p: (r.get("s5xx", 0.0), r.get("requests", 0.0))
                            for p, r in rows.items() if p and p != "other"})
        sums: dict[str, list[float]] = {}
        for minute in self.recent:
            for p, (e, n) in minute.items():
                s = sums.setdefault(p, [0.0, 0.0])
                s[0] += e
                s[1] += n
        out: list[Finding] = []
        for p, (e, n) in sums.items():
            base = self.paths.get(p)
            if base is None:
                base = self.paths[p] = RateBaseline(self.cfg.baseline_halflife)
            share = e / n if n else 0.0
            need = max(c.error_path_rate, c.error_factor * base.rate)
            if p in rows and e >= c.error_min and share >= need:
                ev = {"status_5xx": int(e), "requests": int(n), "rate": _r(share),
                      "baseline_rate": _r(base.rate), "window_minutes": len(self.recent)}
                out.append(Finding("error_rate", {"path_template": p}, ev, share / need,
                                   "medium"))
            elif p in rows:
                base.update(rows[p].get("s5xx", 0.0), rows[p].get("requests", 0.0))
        if len(self.paths) > 5000:  # templates long unseen are forgotten
            self.paths = {p: b for p, b in self.paths.items() if p in sums}
        return out


class Scan:
    """scan: one masked network (or ASN) collecting 4xx on many distinct targets or paths.

    Per minute the aggregates hold, per network and ASN, its distinct 4xx request paths
    (``targets_4xx``, a HyperLogLog estimate: a scanner probing 480 URLs under 7 templates has
    480 targets) and its distinct 4xx path templates (``paths_4xx``). Summed over ``scan_window``
    (short rule) or ``scan_slow_window`` (slow rule, over the minutes in which the network got a
    4xx), with at least ``scan_min_share`` of those requests answered 4xx. The finding names
    the masked network or the ASN and gives counts only: never a path (k-safe)."""

    DIMS = ("network", "asn")

    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        self.window = max(1, int(cfg.scan_window // 60))
        self.slow = max(self.window, int(cfg.scan_slow_window // 60))
        # the short window's minutes: (t, dim -> the minute's rows), shared, not copied
        self.short: deque[tuple[int, dict[str, dict[str, Counts]]]] = deque()
        # the slow window's minutes, only values that got a 4xx: (t, dim -> value -> (targets,
        # paths, 4xx, requests, 404)), and their running sums
        self.slow_rows: deque[tuple[int, dict[str, dict[str, tuple[float, ...]]]]] = deque()
        self.slow_sums: dict[str, dict[str, list[float]]] = {d: {} for d in self.DIMS}

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        now = {d: m.rows(d) for d in self.DIMS}
        compact: dict[str, dict[str, tuple[float, ...]]] = {
            d: {v: (r.get("targets_4xx", 0), r.get("paths_4xx", 0), r.get("s4xx", 0),
                    r.get("requests", 0), r.get("s404", 0))
                for v, r in rows.items() if v and r.get("s4xx", 0)}
            for d, rows in now.items()}
        self.short.append((m.t, now))
        while self.short[0][0] <= m.t - self.window * 60:
            self.short.popleft()
        self.slow_rows.append((m.t, compact))
        for d in self.DIMS:
            for v, x in compact[d].items():
                _acc(self.slow_sums[d], v, x, 1)
        while self.slow_rows[0][0] <= m.t - self.slow * 60:
            _, old = self.slow_rows.popleft()
            for d in self.DIMS:
                sums = self.slow_sums[d]
                for v, gone in old[d].items():
                    _acc(sums, v, gone, -1)
                    if sums[v][2] <= 0:
                        del sums[v]
        out: list[Finding] = []
        recent = [rows for t, rows in self.slow_rows if t > m.t - self.window * 60]
        for dim in self.DIMS:
            here = now[dim]
            candidates = {v for rows in recent for v in rows[dim] if v in here}
            candidates.update(v for v in self.slow_sums[dim] if v in here)
            for value in candidates:  # only while the network is still active
                s = [0.0] * 5
                for rows in recent:
                    got = rows[dim].get(value)
                    if got is not None:
                        for k in (0, 1, 2, 4):
                            s[k] += got[k]
                s[3] = sum(full[dim][value].get("requests", 0.0)
                           for _, full in self.short if value in full[dim])
                f = self._judge(dim, value, s, self.window, c.scan_min_targets, c.scan_min_paths)
                slow = self.slow_sums[dim].get(value)
                if f is None and slow is not None and self.slow > self.window:
                    f = self._judge(dim, value, list(slow), self.slow, c.scan_slow_min_targets,
                                    0)
                if f is not None:
                    out.append(f)
        return out

    def _judge(self, dim: str, value: str, s: list[float], window: int, min_targets: int,
               min_paths: int) -> Finding | None:
        targets, paths, s4xx, req, s404 = s
        share = s4xx / req if req else 0.0
        score = max(targets / max(min_targets, 1), paths / min_paths if min_paths else 0.0)
        if score < 1.0 or share < self.cfg.scan_min_share:
            return None
        ev = {"distinct_4xx_targets": int(targets), "distinct_4xx_paths": int(paths),
              "status_4xx": int(s4xx), "status_404": int(s404), "requests": int(req),
              "share_4xx": _r(share), "window_minutes": window}
        dims = {dim: int(value) if dim == "asn" and value.isdigit() else value}
        return Finding("scan", dims, ev, score, "medium")


def _acc(into: dict[str, list[float]], value: str, x: tuple[float, ...], sign: int) -> None:
    s = into.get(value)
    if s is None:
        into[value] = [sign * v for v in x]
    else:
        for i, v in enumerate(x):
            s[i] += sign * v


class AuthFailures:
    """auth_failures: bursts of 401/403, on login-like paths or on the whole site."""

    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        self.login = re.compile(cfg.auth_paths)
        self.site_base = RateBaseline(cfg.baseline_halflife)  # failures per request
        self.path_base: dict[str, Ewma] = {}  # path -> EWMA of failures a minute
        self.alpha = self.site_base.alpha

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        out: list[Finding] = []
        nets = m.rows("network")

        def fails(r: Counts) -> float:
            return float(r.get("s401", 0) + r.get("s403", 0))

        top_nets = _top(nets, fails)
        for path, r in m.rows("path_template").items():
            if not path or not self.login.search(path):
                continue
            n = fails(r)
            avg = self.path_base.get(path)
            base = avg.mean if avg is not None else 0.0
            need = max(float(c.auth_min_failures), c.auth_factor * base)
            if n >= need:
                ev = {"failures": int(n), "status_401": int(r.get("s401", 0)),
                      "status_403": int(r.get("s403", 0)), "requests": int(r.get("requests", 0)),
                      "baseline_per_minute": _r(base), "top_networks": top_nets}
                out.append(Finding("auth_failures", {"path_template": path}, ev, n / need,
                                   "medium"))
            else:
                if avg is None:
                    avg = self.path_base[path] = Ewma(self.alpha)
                avg.update(n)
        total, req = fails(m.total), m.get("requests")
        need_site = max(float(c.auth_site_min_failures),
                        c.auth_factor * self.site_base.rate * req)
        if not out and total >= need_site:
            ev = {"failures": int(total), "requests": int(req),
                  "baseline_rate": _r(self.site_base.rate), "top_networks": top_nets}
            out.append(Finding("auth_failures", {}, ev, total / need_site))
        elif not out:
            self.site_base.update(total, req)
        return out


class Anonymizers:
    """anonymizer: a burst of VPN/Tor/proxy (optionally hosting) traffic."""

    FLAGS = ("anon_tor", "anon_vpn", "anon_proxy", "anon_hosting")

    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        self.flags = self.FLAGS if cfg.anon_hosting else self.FLAGS[:3]

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        counts = {f: m.get(f) for f in self.flags}
        n, req = sum(counts.values()), m.get("requests")
        share = n / req if req else 0.0
        if n >= c.anon_min and share >= c.anon_share:
            kind = max(counts, key=lambda f: counts[f]).removeprefix("anon_")
            ev = {"requests": int(req), "anonymized": int(n), "share": _r(share),
                  **{f.removeprefix("anon_"): int(v) for f, v in counts.items()},
                  "top_networks": _top(m.rows("network"),
                                       lambda r: sum(r.get(f, 0) for f in self.flags))}
            return [Finding("anonymizer", {"anonymizer": kind}, ev,
                            min(n / c.anon_min, share / max(c.anon_share, 1e-9)))]
        return []


class Newcomer:
    """new_source: a country or ASN absent from the baseline suddenly takes a share.

    "Absent" needs evidence: the value's share of the baseline (a one-day window, see
    :class:`DecayingShares`) and of the last hour are both below ``newcomer_absent_share``, and
    the baseline holds at least ``5 / newcomer_absent_share`` requests (enough that a value with
    that share would have shown up)."""

    HOUR = 60

    def __init__(self, cfg: DetectSettings, dims: tuple[str, ...] = ("country", "asn")) -> None:
        self.cfg = cfg
        # "the baseline" is the last day or so: shares decay with a one-day half-life
        self.shares = {d: DecayingShares(max(cfg.baseline_halflife * 24, 3600.0))
                       for d in dims}
        self.hour: dict[str, deque[dict[str, float]]] = {d: deque() for d in self.shares}
        self.hour_total: deque[float] = deque()
        self.warm = int(cfg.warmup // 60)
        self.need_seen = 5.0 / max(cfg.newcomer_absent_share, 1e-6)
        self.n = 0

    def _hour_share(self, dim: str, value: str) -> float:
        total = sum(self.hour_total)
        return sum(c.get(value, 0.0) for c in self.hour[dim]) / total if total else 0.0

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        req = m.get("requests")
        out: list[Finding] = []
        flagged_req = 0.0
        kept: dict[str, dict[str, float]] = {}
        for dim, book in self.shares.items():
            rows = m.rows(dim)
            flagged: set[str] = set()
            counts = {v: float(r.get("requests", 0)) for v, r in rows.items() if req and v}
            enough = self.n >= self.warm and book.seen(m.t) >= self.need_seen
            for value, n in counts.items():
                share = n / req
                if not (enough and n >= c.newcomer_min_requests and share >= c.newcomer_share):
                    continue
                before = book.get(value, m.t)
                hour = self._hour_share(dim, value)
                if before < c.newcomer_absent_share and hour < c.newcomer_absent_share:
                    ev = {"requests": int(n), "share": _r(share), "baseline_share": _r(before),
                          "last_hour_share": _r(hour), "site_requests": int(req)}
                    dims = {dim: int(value) if dim == "asn" and value.isdigit() else value}
                    out.append(Finding("new_source", dims, ev, share / c.newcomer_share))
                    flagged.add(value)
                    flagged_req = max(flagged_req, n)
            kept[dim] = {v: n for v, n in counts.items() if v not in flagged}
        total = req - flagged_req  # a newcomer's requests are not learnt as normal
        for dim, book in self.shares.items():
            if total > 0:
                book.update(m.t, {v: n / total for v, n in kept[dim].items()}, total)
            self.hour[dim].append(kept[dim])
            if len(self.hour[dim]) > self.HOUR:
                self.hour[dim].popleft()
        self.hour_total.append(max(total, 0.0))
        if len(self.hour_total) > self.HOUR:
            self.hour_total.popleft()
        self.n += 1
        return out


def build(cfg: DetectSettings, anonymizers: bool, asn: bool = True) -> list[Any]:
    """One site's detector set (anonymizer detection only with an Anonymous-IP database; new
    ASNs only with a database that answers AS numbers)."""
    out: list[Any] = [Volume(cfg), ErrorRate(cfg), Scan(cfg), AuthFailures(cfg), BotSurge(cfg),
                      Newcomer(cfg, ("country", "asn") if asn else ("country",))]
    if anonymizers:
        out.append(Anonymizers(cfg))
    return out


KINDS = ("traffic_spike", "traffic_drop", "error_rate", "scan", "auth_failures", "bot_surge",
         "anonymizer", "new_source")
