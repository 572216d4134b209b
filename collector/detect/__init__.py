"""Anomaly detection on the aggregates (docs/detection.md).

``baseline`` (seasonal EWMA and friends), ``minute`` (a site's minute read from the
aggregates), ``detectors`` (one class per rule), ``tracker`` (open/close), ``engine`` (all sites,
minute by minute), ``book`` (anomalies.db), ``webhook``, ``runner`` (the service's task).
"""

from collector.detect.engine import Engine
from collector.detect.runner import DetectorRunner

__all__ = ["DetectorRunner", "Engine"]
