"""Typed application keys: every shared resource of the running service, by name."""

from __future__ import annotations

from aiohttp import web

from collector.detect.runner import DetectorRunner
from collector.enrich.geo import GeoEnricher
from collector.enrich.ua import UAEnricher
from collector.keys import KeyRing
from collector.metrics import Metrics
from collector.pipeline import Pipeline
from collector.settings import Settings
from collector.store import Store

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
STORE = web.AppKey("store", Store)
KEYRING = web.AppKey("keyring", KeyRing)
GEO = web.AppKey("geo", GeoEnricher)
UA = web.AppKey("ua", UAEnricher)
PIPELINE = web.AppKey("pipeline", Pipeline)
STARTED = web.AppKey("started", float)
DETECTOR = web.AppKey("detector", DetectorRunner)
