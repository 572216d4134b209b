"""Record enrichment: GeoIP (country … anonymizer flags) and User-Agent (browser … bot).

``GeoEnricher`` (``collector.enrich.geo``) and ``UAEnricher`` (``collector.enrich.ua``) each
return a dict holding every key of ``GEO_FIELDS`` / ``UA_FIELDS``, ``None`` where unknown.
"""

from __future__ import annotations

from .geo import GEO_FIELDS, GeoEnricher
from .ua import UA_FIELDS, UAEnricher

__all__ = ["GEO_FIELDS", "UA_FIELDS", "GeoEnricher", "UAEnricher"]
