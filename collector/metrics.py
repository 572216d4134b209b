"""Prometheus metrics, hand-rolled: counters, gauges and one latency histogram.

Label values are closed vocabularies (format names, reasons, shipper names) — never a client
address, a path or anything taken from a record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[tuple[str, str], ...]


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[Labels, float]] = {}
        self._hist: dict[str, tuple[list[int], list[float]]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._series_gauges: dict[str, Callable[[], dict[Labels, float]]] = {}
        for name, kind, text in (
            ("lethelog_records_accepted_total", "counter", "Records accepted and stored."),
            ("lethelog_records_rejected_total", "counter", "Records rejected, by reason class."),
            ("lethelog_sessions_started_total", "counter", "Sessions opened."),
            ("lethelog_sessions_ended_total", "counter", "Sessions ended (and forgotten)."),
            ("lethelog_records_deleted_total", "counter", "Records deleted with their session."),
            ("lethelog_requests_refused_total", "counter", "Ingest requests refused, by reason."),
            ("lethelog_ingest_seconds", "histogram", "Time from request to commit."),
        ):
            self._help[name] = (kind, text)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values.setdefault(name, {})
            series[key] = series.get(key, 0.0) + value

    def get(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        with self._lock:
            if labels:
                return self._values.get(name, {}).get(key, 0.0)
            return sum(self._values.get(name, {}).values())

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            counts, sums = self._hist.setdefault(name, ([0] * (len(_BUCKETS) + 1), [0.0]))
            for i, edge in enumerate(_BUCKETS):
                if seconds <= edge:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            sums[0] += seconds

    def gauge(self, name: str, text: str, read: Callable[[], float]) -> None:
        self._help[name] = ("gauge", text)
        self._gauges[name] = read

    def gauge_series(self, name: str, text: str,
                     read: Callable[[], dict[Labels, float]]) -> None:
        """A gauge with one series per label set, read at scrape time (labels must be closed
        vocabularies, as every label here)."""
        self._help[name] = ("gauge", text)
        self._series_gauges[name] = read

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, text) in self._help.items():
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "gauge" and name in self._gauges:
                    lines.append(f"{name} {float(self._gauges[name]())}")
                elif kind == "gauge" and name in self._series_gauges:
                    for labels, value in self._series_gauges[name]().items():
                        lines.append(f"{name}{_fmt(labels)} {float(value)}")
                elif kind == "histogram":
                    counts, sums = self._hist.get(name, ([0] * (len(_BUCKETS) + 1), [0.0]))
                    acc = 0
                    for edge, c in zip(_BUCKETS, counts, strict=False):
                        acc += c
                        lines.append(f'{name}_bucket{{le="{edge}"}} {acc}')
                    acc += counts[-1]
                    lines.append(f'{name}_bucket{{le="+Inf"}} {acc}')
                    lines.append(f"{name}_sum {sums[0]}")
                    lines.append(f"{name}_count {acc}")
                else:
                    series = self._values.get(name) or {(): 0.0}
                    for labels, value in series.items():
                        lines.append(f"{name}{_fmt(labels)} {value}")
        return "\n".join(lines) + "\n"


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
