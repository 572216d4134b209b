"""From per-minute findings to anomalies that open, grow and close."""

from __future__ import annotations

from collections.abc import Iterable

from collector.detect.detectors import Finding
from collector.detect.model import Anomaly, severity


class Tracker:
    """Open anomalies by (site, kind, dimensions). ``close_after`` quiet minutes close one."""

    def __init__(self, close_after: int) -> None:
        self.close_after = close_after
        self.open: dict[tuple[str, str, tuple[tuple[str, str], ...]], Anomaly] = {}

    def step(self, minute: int, site: str, findings: Iterable[Finding]
             ) -> tuple[list[Anomaly], list[Anomaly]]:
        """Feed one site's minute. Returns (opened, updated)."""
        opened: list[Anomaly] = []
        updated: list[Anomaly] = []
        for f in findings:
            a = Anomaly(f.kind, site, f.dims, float(minute), f.evidence,
                        severity(f.score, f.severity_floor), float(minute + 60))
            existing = self.open.get(a.key)
            if existing is None:
                a.last_seen = minute
                a.peak, a.peak_score = dict(f.evidence), f.score
                self.open[a.key] = a
                opened.append(a)
                continue
            existing.last_seen = minute
            existing.minutes += 1
            existing.evidence = f.evidence
            if f.score > existing.peak_score:
                existing.peak, existing.peak_score = dict(f.evidence), f.score
                existing.severity = severity(f.score, f.severity_floor)
            updated.append(existing)
        return opened, updated

    def close_quiet(self, minute: int, sites: Iterable[str] | None = None) -> list[Anomaly]:
        """Close anomalies quiet for ``close_after`` minutes as of the end of ``minute``."""
        closed = []
        wanted = set(sites) if sites is not None else None
        for key, a in list(self.open.items()):
            if wanted is not None and a.site not in wanted:
                continue
            if minute - a.last_seen >= self.close_after * 60:
                a.end = a.last_seen + 60
                del self.open[key]
                closed.append(a)
        return closed
