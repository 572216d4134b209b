"""Addresses out of every other stored text a client chose, once per distinct (site, value)."""

from __future__ import annotations

from typing import Any

import polars as pl

from collector.engine.batch import BoundedCache, map_distinct, split_errors
from collector.engine.stage import Batch
from masking.language import parse_accept_language
from masking.textaddr import CONTENT_HOST_FIELDS, CONTENT_TEXT_FIELDS, TextMasker

__all__ = ["MaskContent"]


class MaskContent:
    """``host`` (read as a host: any ``inet_aton`` form), and ``method``, ``protocol`` and the
    User-Agent-derived fields as text, masked with the record's site's keep bits
    (``masking.textaddr``); ``languages`` element by element."""

    HOST = CONTENT_HOST_FIELDS[0]
    TEXT = CONTENT_TEXT_FIELDS

    def __init__(self, default: TextMasker, per_site: dict[str, TextMasker],
                 cache_size: int = 65536) -> None:
        self.default = default
        self.per_site = per_site
        self.cache = BoundedCache(cache_size)

    def _masker(self, site: str | None) -> TextMasker:
        return self.per_site.get(site or "", self.default)

    def _host(self, site: str | None, value: Any) -> tuple[Any]:
        return (self._masker(site).host(str(value)) if value else value,)

    def _text(self, site: str | None, value: Any) -> tuple[Any]:
        if value and value.__class__ is str:
            return (self._masker(site).text(value),)
        return (value,)

    def _languages(self, site: str | None, header: str | None) -> tuple[list[str] | None]:
        _, ordered = parse_accept_language(header)
        if not ordered:
            return (None,)
        masker = self._masker(site)
        return ([masker.text(v) for v in ordered],)

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        df = batch.frame
        sites = [s for s in self.per_site if s]
        df = df.with_columns(_tm_site=pl.when(pl.col("site").is_in(sites)).then(pl.col("site"))
                             .otherwise(None) if sites else pl.lit(None, pl.String))
        names: list[tuple[str, Any]] = [(self.HOST, self._host)]
        names += [(n, self._text) for n in self.TEXT if n in df.columns]
        rejects: list[pl.DataFrame] = []
        for name, fn in names:
            dtype = df.schema[name]
            df = map_distinct(df, ["_tm_site", name], fn, {"_tm_out": dtype}, self.cache,
                              (name,))
            df, rej = split_errors(df)
            rejects.append(rej)
            df = df.drop(name).rename({"_tm_out": name})
        df = df.drop("languages")
        df = map_distinct(df, ["_tm_site", "accept_language"], self._languages,
                          {"languages": pl.List(pl.String())}, self.cache, ("languages",))
        good, rej = split_errors(df)
        rejects.append(rej)
        return batch.with_frame(good.drop("_tm_site")), pl.concat(rejects)
