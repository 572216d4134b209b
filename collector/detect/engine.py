"""The detectors of every site, minute after minute, and the anomalies they open and close.

Pure computation on :class:`~collector.detect.minute.Minute` objects (log time): the runner
feeds it from the aggregates, tests feed it directly. A site seen once keeps being evaluated
every minute (an empty minute is a minute of zero traffic: that is how drops are seen). Each site
may be fed at its own pace (:meth:`Engine.feed_site`, the runner's per-site cursors); the
all-sites view's minute ``t`` (:meth:`Engine.feed_all`) comes after the sites' minute ``t``.

**Per-site baselines.** Each site has its own detector set and baselines, so a small site's
spike is judged against the small site's normal, never hidden in the sum of all sites.

**All-sites view** (site :data:`ALL_SITES`, ``"*"``): once two or more sites are known, one more
detector set watches the sum of every site's minute, for what only the sum shows (a scan spread
thinly over many sites, a spike no single site crosses its threshold with). A finding of the same
kind and dimensions that some site reported in the same minute is left to that site's anomaly
(the sum is not reported twice). The all-sites baselines are learnt afresh whenever a new site
appears (its traffic would otherwise look like a jump in the sum), so the all-sites view is
silent for ``detect.warmup`` after that. Only tokens that hold every site see these anomalies.
"""

from __future__ import annotations

from typing import Any

from collector.detect.detectors import Finding, build
from collector.detect.minute import Minute, combine, empty
from collector.detect.model import Anomaly
from collector.detect.tracker import Tracker
from collector.settings import DetectSettings

Event = tuple[str, Anomaly]  # ("opened" | "updated" | "closed", anomaly)
ALL_SITES = "*"  # the site of an all-sites anomaly (never a configured site's name)


class Engine:
    def __init__(self, cfg: DetectSettings, anonymizers: bool, all_sites: bool = True,
                 asn: bool = True) -> None:
        self.cfg = cfg
        self.anonymizers = anonymizers
        self.asn = asn
        self.all_sites = all_sites
        self.detectors: dict[str, list[Any]] = {}
        self.summed: list[Any] | None = None  # the all-sites view's detectors (2+ sites)
        self.tracker = Tracker(cfg.close_after)
        # what the sites found per minute, so the all-sites view does not repeat it
        self.seen: dict[int, set[tuple[str, str]]] = {}
        self.all_next = 0  # the all-sites view's next minute

    def add_site(self, site: str) -> None:
        """Start detectors for a site (a new sum of every site is learnt afresh from then)."""
        if site == ALL_SITES or site in self.detectors:
            return
        self.detectors[site] = build(self.cfg, self.anonymizers, self.asn)
        if self.all_sites and len(self.detectors) >= 2:
            self.summed = build(self.cfg, self.anonymizers, self.asn)

    def feed(self, t: int, minutes: dict[str, Minute], track: bool = True) -> list[Event]:
        """Evaluate minute ``t`` for every known site (``minutes``: the sites with traffic),
        then the all-sites view."""
        events: list[Event] = []
        minutes = {s: m for s, m in minutes.items() if s != ALL_SITES}  # reserved (settings)
        for site in minutes:
            self.add_site(site)
        for site in list(self.detectors):
            events.extend(self.feed_site(t, site, minutes.get(site), track))
        events.extend(self.feed_all(t, minutes, track))
        return events

    def feed_site(self, t: int, site: str, minute: Minute | None, track: bool = True
                  ) -> list[Event]:
        """Evaluate one site's minute ``t`` (``None``: no traffic, a minute of zero)."""
        self.add_site(site)
        m = minute or empty(t, site)
        findings = [f for det in self.detectors[site] for f in det(m)]
        if self.summed is not None and t >= self.all_next:  # for the all-sites view's minute t
            self.seen.setdefault(t, set()).update(_what(f) for f in findings)
        if not track:
            return []
        opened, updated = self.tracker.step(t, site, findings)
        events: list[Event] = [("opened", a) for a in opened]
        events.extend(("updated", a) for a in updated)
        events.extend(("closed", a) for a in self.tracker.close_quiet(t, (site,)))
        return events

    def feed_all(self, t: int, minutes: dict[str, Minute], track: bool = True) -> list[Event]:
        """Evaluate the all-sites view's minute ``t`` (after the sites' own minute ``t``)."""
        seen = self.seen.pop(t, set())
        for old in [k for k in self.seen if k < t]:
            del self.seen[old]
        self.all_next = t + 60
        if self.summed is None:
            return []
        m = combine(t, ALL_SITES, (v for s, v in minutes.items() if s != ALL_SITES))
        findings = [f for det in self.summed for f in det(m)]
        if not track:
            return []
        opened, updated = self.tracker.step(
            t, ALL_SITES, [f for f in findings if _what(f) not in seen])
        events: list[Event] = [("opened", a) for a in opened]
        events.extend(("updated", a) for a in updated)
        events.extend(("closed", a) for a in self.tracker.close_quiet(t, (ALL_SITES,)))
        return events

def _what(f: Finding) -> tuple[str, str]:
    return f.kind, repr(sorted(f.dims.items()))
