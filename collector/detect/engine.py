"""The detectors of every site, minute after minute, and the anomalies they open and close.

Pure computation on :class:`~collector.detect.minute.Minute` objects (log time): the runner
feeds it from the aggregates, tests feed it directly. A site seen once keeps being evaluated
every minute (an empty minute is a minute of zero traffic: that is how drops are seen).
"""

from __future__ import annotations

from typing import Any

from collector.detect.detectors import build
from collector.detect.minute import Minute, empty
from collector.detect.model import Anomaly
from collector.detect.tracker import Tracker
from collector.settings import DetectSettings

Event = tuple[str, Anomaly]  # ("opened" | "updated" | "closed", anomaly)


class Engine:
    def __init__(self, cfg: DetectSettings, anonymizers: bool) -> None:
        self.cfg = cfg
        self.anonymizers = anonymizers
        self.detectors: dict[str, list[Any]] = {}
        self.tracker = Tracker(cfg.close_after)

    def feed(self, t: int, minutes: dict[str, Minute], track: bool = True) -> list[Event]:
        """Evaluate minute ``t`` for every known site (``minutes``: the sites with traffic)."""
        events: list[Event] = []
        for site in minutes:
            if site not in self.detectors:
                self.detectors[site] = build(self.cfg, self.anonymizers)
        for site, dets in self.detectors.items():
            m = minutes.get(site) or empty(t, site)
            findings = [f for det in dets for f in det(m)]
            if not track:
                continue
            opened, updated = self.tracker.step(t, site, findings)
            events.extend(("opened", a) for a in opened)
            events.extend(("updated", a) for a in updated)
        if track:
            events.extend(("closed", a) for a in self.tracker.close_quiet(t))
        return events
