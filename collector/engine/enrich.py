"""Stages that add derived fields, each once per distinct input value: URL, GeoIP, agent, language.

URL scrubbing and language parsing are pure: their answers are cached across batches. GeoIP and
User-Agent answers are not cached here (the enrichers keep their own caches, which a database
reload or ``cache_clear`` must be able to empty); the batch asks them once per distinct value.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from collector.engine.batch import OUT_SCHEMA, BoundedCache, map_distinct, split_errors
from collector.engine.stage import Batch
from collector.enrich.geo import GEO_FIELDS, GeoEnricher
from collector.enrich.ua import UA_FIELDS, UAEnricher
from masking.language import parse_accept_language
from masking.url import UrlScrubber, path_template

__all__ = ["EnrichAgent", "EnrichGeo", "Language", "ScrubUrl"]


def _out(names: tuple[str, ...]) -> dict[str, pl.DataType]:
    return {n: OUT_SCHEMA[n] for n in names}


class ScrubUrl:
    """Secrets and addresses out of the target and the referrer; a template of the path for
    grouping. ``scrubber`` serves every site without a scrubber of its own in ``per_site``."""

    def __init__(self, scrubber: UrlScrubber, per_site: dict[str, UrlScrubber] | None = None,
                 cache_size: int = 65536) -> None:
        self.scrubber = scrubber
        self.per_site = per_site or {}
        self.targets = BoundedCache(cache_size)
        self.referrers = BoundedCache(cache_size)

    def _target(self, site: str | None, raw: str | None
                ) -> tuple[str | None, str | None, str | None]:
        path, query = self.per_site.get(site or "", self.scrubber).target(raw)
        return path, query, path_template(path)

    def _referrer(self, site: str | None, raw: str | None) -> tuple[str | None]:
        return (self.per_site.get(site or "", self.scrubber).referrer(raw),)

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        sites = [s for s in self.per_site if s]
        df = batch.frame.with_columns(
            _url_site=pl.when(pl.col("site").is_in(sites)).then(pl.col("site")).otherwise(None)
            if sites else pl.lit(None, pl.String))
        df = map_distinct(df, ["_url_site", "target"], self._target,
                          _out(("path", "query", "path_template")), self.targets)
        good, rejects = split_errors(df)
        good = good.rename({"referrer": "_referrer_in"})
        good = map_distinct(good, ["_url_site", "_referrer_in"], self._referrer,
                            _out(("referrer",)), self.referrers)
        good, rejects2 = split_errors(good)
        return (batch.with_frame(good.drop("_referrer_in", "_url_site")),
                pl.concat([rejects, rejects2]))


class EnrichGeo:
    def __init__(self, geo: GeoEnricher) -> None:
        self.geo = geo

    def _lookup(self, address: str | None) -> tuple[Any, ...]:
        found = self.geo.lookup(address, address)
        return tuple(found[f] for f in GEO_FIELDS)

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        column = "_ip" if self.geo.from_full_address else "ip"
        # enrich.geo_cache_size = 0 asks for no remembered answers: each row is looked up on
        # its own, so a database reload mid-batch applies from the next row (as record at a time)
        keys = [column] if self.geo.settings.geo_cache_size else [column, "line"]
        df = map_distinct(batch.frame, keys, lambda a, *_: self._lookup(a), _out(GEO_FIELDS))
        good, rejects = split_errors(df)
        return batch.with_frame(good), rejects


class EnrichAgent:
    def __init__(self, ua: UAEnricher) -> None:
        self.ua = ua

    def _parse(self, agent: str | None) -> tuple[Any, ...]:
        found = self.ua(agent)
        return tuple(found[f] for f in UA_FIELDS)

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        df = map_distinct(batch.frame, ["user_agent"], self._parse, _out(UA_FIELDS))
        good, rejects = split_errors(df)
        return batch.with_frame(good), rejects


class Language:
    def __init__(self, cache_size: int = 16384) -> None:
        self.cache = BoundedCache(cache_size)

    @staticmethod
    def _parse(header: str | None) -> tuple[str | None, list[str] | None]:
        primary, ordered = parse_accept_language(header)
        return primary, ordered or None

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        df = map_distinct(batch.frame, ["accept_language"], self._parse,
                          _out(("language", "languages")), self.cache)
        good, rejects = split_errors(df)
        return batch.with_frame(good), rejects
