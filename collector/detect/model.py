"""An anomaly: kind, severity, site, start/end (log time), dimensions and evidence."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from collector.timefmt import rfc3339

SEVERITIES = ("low", "medium", "high")


def severity(score: float, floor: str = "low") -> str:
    """How far past its threshold: < 2x low, < 4x medium, else high (never below ``floor``)."""
    level = 0 if score < 2 else 1 if score < 4 else 2
    return SEVERITIES[max(level, SEVERITIES.index(floor))]


@dataclass(slots=True)
class Anomaly:
    kind: str
    site: str
    dims: dict[str, Any]
    start: float  # first anomalous minute (log time)
    evidence: dict[str, Any]
    severity: str
    detected: float  # log time when it was reported (end of its first minute)
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    end: float | None = None
    last_seen: float = 0.0  # start of the last anomalous minute
    minutes: int = 1
    peak: dict[str, Any] = field(default_factory=dict)
    peak_score: float = 0.0

    @property
    def key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        return (self.site, self.kind, tuple(sorted((k, str(v)) for k, v in self.dims.items())))

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "severity": self.severity, "site": self.site,
            "status": "open" if self.end is None else "closed",
            "start": rfc3339(self.start), "end": rfc3339(self.end) if self.end else None,
            "start_epoch": self.start, "end_epoch": self.end,
            "detected": rfc3339(self.detected), "minutes": self.minutes,
            "dimensions": self.dims, "evidence": self.evidence, "peak": self.peak,
        }
