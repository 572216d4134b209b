"""The detectors. Each is a small object configured from ``[detect]`` whose ``__call__`` looks at
one site's completed minute and returns its findings (the condition holds this minute); the
tracker turns findings into anomalies that open and close. Rules in docs/detection.md
``## Anomaly detection``; every number that tripped a rule is in the finding's evidence.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from collector.detect.baseline import DecayingShares, RateBaseline, SeasonalBaseline
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
    """traffic_spike / traffic_drop: the minute's requests against the seasonal forecast."""

    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        self.base = SeasonalBaseline(cfg.baseline_halflife, cfg.season_halflife)
        self.warm = int(cfg.warmup // 60)

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        x = m.get("requests")
        f, sigma = self.base.forecast(m.t)
        out: list[Finding] = []
        if self.base.n >= self.warm and self.base.level is not None:
            z = (x - f) / sigma
            ev = {"requests": int(x), "forecast": _r(f), "sigma": _r(sigma), "z": _r(z)}
            if x >= c.spike_min_requests and x >= c.spike_ratio * f and z >= c.spike_z:
                out.append(Finding("traffic_spike", {}, ev,
                                   min(z / c.spike_z, x / max(c.spike_ratio * f, 1.0))))
            elif f >= c.drop_min_baseline and x <= c.drop_ratio * f and -z >= c.drop_z:
                out.append(Finding("traffic_drop", {}, ev, (f - x) / max(f * (1 - c.drop_ratio),
                                                                        1.0)))
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
    """error_rate: the minute's 5xx share against its baseline share."""

    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        self.base = RateBaseline(cfg.baseline_halflife)

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        errors, req = m.get("s5xx"), m.get("requests")
        rate = errors / req if req else 0.0
        need = max(c.error_rate, c.error_factor * self.base.rate)
        if errors >= c.error_min and rate >= need:
            ev = {"status_5xx": int(errors), "requests": int(req), "rate": _r(rate),
                  "baseline_rate": _r(self.base.rate),
                  "top_paths": _top(m.rows("path_template"), lambda r: r.get("s5xx", 0))}
            return [Finding("error_rate", {}, ev, rate / need, "medium")]
        self.base.update(errors, req)
        return []


class Scan:
    """scan: one masked network (or ASN) collecting 4xx on many distinct paths."""

    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        self.window = max(1, int(cfg.scan_window // 60))
        self.recent: deque[tuple[int, dict[str, dict[str, Counts]]]] = deque()

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        self.recent.append((m.t, {d: m.rows(d) for d in ("network", "asn")}))
        while self.recent and self.recent[0][0] <= m.t - self.window * 60:
            self.recent.popleft()
        out: list[Finding] = []
        for dim in ("network", "asn"):
            sums: dict[str, list[float]] = {}
            for _, rows in self.recent:
                for value, r in rows[dim].items():
                    s = sums.setdefault(value, [0.0, 0.0, 0.0, 0.0])
                    s[0] += r.get("paths_4xx", 0)
                    s[1] += r.get("s4xx", 0)
                    s[2] += r.get("requests", 0)
                    s[3] += r.get("s404", 0)
            for value, (paths, s4xx, req, s404) in sums.items():
                if value == "" or value not in m.rows(dim):
                    continue  # only report while the network is still active
                share = s4xx / req if req else 0.0
                if paths >= c.scan_min_paths and share >= c.scan_min_share:
                    ev = {"distinct_4xx_paths": int(paths), "status_4xx": int(s4xx),
                          "status_404": int(s404), "requests": int(req),
                          "share_4xx": _r(share), "window_minutes": self.window}
                    dims = {dim: int(value) if dim == "asn" and value.isdigit() else value}
                    out.append(Finding("scan", dims, ev, paths / c.scan_min_paths, "medium"))
        return out


class AuthFailures:
    """auth_failures: bursts of 401/403, on login-like paths or on the whole site."""

    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        self.login = re.compile(cfg.auth_paths)
        self.site_base = RateBaseline(cfg.baseline_halflife)  # failures per request
        self.path_base: dict[str, float] = {}  # path -> EWMA of failures a minute
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
            base = self.path_base.get(path, 0.0)
            need = max(float(c.auth_min_failures), c.auth_factor * base)
            if n >= need:
                ev = {"failures": int(n), "status_401": int(r.get("s401", 0)),
                      "status_403": int(r.get("s403", 0)), "requests": int(r.get("requests", 0)),
                      "baseline_per_minute": _r(base), "top_networks": top_nets}
                out.append(Finding("auth_failures", {"path_template": path}, ev, n / need,
                                   "medium"))
            else:
                self.path_base[path] = base + self.alpha * (n - base)
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
    """new_source: a country or ASN nearly absent from the baseline suddenly takes a share."""

    def __init__(self, cfg: DetectSettings) -> None:
        self.cfg = cfg
        # "the baseline" is the last day or so: shares decay with a one-day half-life
        self.shares = {d: DecayingShares(max(cfg.baseline_halflife * 24, 3600.0))
                       for d in ("country", "asn")}
        self.warm = int(cfg.warmup // 60)
        self.n = 0

    def __call__(self, m: Minute) -> list[Finding]:
        c = self.cfg
        req = m.get("requests")
        out: list[Finding] = []
        for dim, book in self.shares.items():
            rows = m.rows(dim)
            flagged: set[str] = set()
            now = {v: r.get("requests", 0) / req for v, r in rows.items() if req and v}
            for value, share in now.items():
                n = rows[value].get("requests", 0)
                before = book.get(value, m.t)
                if (self.n >= self.warm and n >= c.newcomer_min_requests
                        and share >= c.newcomer_share and before < c.newcomer_absent_share):
                    ev = {"requests": int(n), "share": _r(share), "baseline_share": _r(before),
                          "site_requests": int(req)}
                    dims = {dim: int(value) if dim == "asn" and value.isdigit() else value}
                    out.append(Finding("new_source", dims, ev, share / c.newcomer_share))
                    flagged.add(value)
            book.update(m.t, {v: s for v, s in now.items() if v not in flagged})
        self.n += 1
        return out


def build(cfg: DetectSettings, anonymizers: bool) -> list[Any]:
    """One site's detector set (anonymizer detection only with an Anonymous-IP database)."""
    out: list[Any] = [Volume(cfg), ErrorRate(cfg), Scan(cfg), AuthFailures(cfg), BotSurge(cfg),
                      Newcomer(cfg)]
    if anonymizers:
        out.append(Anonymizers(cfg))
    return out


KINDS = ("traffic_spike", "traffic_drop", "error_rate", "scan", "auth_failures", "bot_surge",
         "anonymizer", "new_source")
