"""Stages that decide whether and where a record goes: check time, resolve site, consent."""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl

from collector.engine.batch import empty_rejects, map_distinct, rejects_from, split_errors
from collector.engine.stage import Batch
from collector.record import RecordError
from collector.recordtime import time_problem
from collector.settings import Settings
from masking.consent import consent_flags

__all__ = ["CheckTime", "Consent", "ResolveSite"]


class CheckTime:
    """A record needs a time, may not be stamped beyond the wall clock plus the skew, nor
    (``max_age``, in ``serve``) further back than that (``collector.recordtime``). The bounds
    are compared on the column; the few rows outside get ``time_problem``'s exact answer."""

    def __init__(self, max_skew: float, clock: Callable[[], float] = time.time,
                 max_age: float | None = None) -> None:
        self.max_skew = max_skew
        self.clock = clock
        self.max_age = max_age

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        df = batch.frame
        now = self.clock()
        t = pl.col("time")
        outside = t.is_null() | t.is_nan() | ((t - now) > self.max_skew)
        if self.max_age:
            outside = outside | ((now - t) > self.max_age)
        candidates = df.filter(outside)
        if candidates.height == 0:
            return batch, empty_rejects()
        reasons: list[tuple[int, str]] = []
        for line, value in candidates.select("line", "time").iter_rows():
            problem = ("missing timestamp" if value is None
                       else time_problem(value, now, self.max_skew, self.max_age))
            if problem is not None:
                reasons.append((line, problem))
        if not reasons:
            return batch, empty_rejects()
        rejects = rejects_from(reasons)
        bad_lines = rejects["line"].implode()
        return batch.with_frame(df.filter(~pl.col("line").is_in(bad_lines))), rejects


class ResolveSite:
    """Which customer site a record belongs to: from its host, else the shipper's only site.

    A shipper token limited to sites may write only to those; a record whose host belongs to
    another site is rejected. Records of no configured site go to ``tenancy.default_site`` or are
    rejected (``tenancy.unknown_host = "reject"``). Decided once per distinct host.
    """

    def __init__(self, settings: Settings) -> None:
        self.sites = settings.sites
        self.default = settings.tenancy.default_site
        self.reject_unknown = settings.tenancy.unknown_host == "reject"

    def site_of(self, host: str | None, allowed: frozenset[str] | None) -> str:
        site = None
        if host and self.sites:
            name = str(host).split(":")[0] if not str(host).startswith("[") else str(host)
            site = next((s.name for s in self.sites if s.matches(name)), None)
        if site is None:
            if host and self.reject_unknown and self.sites:
                raise RecordError("host matches no configured site (tenancy.unknown_host = "
                                  "reject)")
            if allowed is not None and len(allowed) == 1:
                site = next(iter(allowed))
            elif self.reject_unknown and self.sites:
                raise RecordError("record has no host and the token holds several sites "
                                  "(tenancy.unknown_host = reject)")
            else:
                site = self.default
        if allowed is not None and site not in allowed:
            raise RecordError(f"record for site {site!r} but this token may write only to "
                              f"{', '.join(sorted(allowed))}")
        return site

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        allowed = batch.sites
        df = map_distinct(batch.frame, ["host"], lambda h: (self.site_of(h, allowed),),
                          {"site": pl.String()})
        good, rejects = split_errors(df)
        return batch.with_frame(good), rejects


class Consent:
    """DNT: 1 / Sec-GPC: 1 honoured by the site's policy: count in aggregates only, or drop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def decide(self, dnt: bool | None, gpc: bool | None, site: str) -> tuple[bool | None, bool,
                                                                              bool | None]:
        """(stored dnt, drop, aggregate_only)."""
        d, g = consent_flags(dnt, gpc)
        if not (d or g):
            return None, False, None
        if self.settings.for_site(site, "consent") == "drop":
            return True, True, None
        return True, False, True

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        df = batch.frame.rename({"dnt": "_dnt_in"})
        df = map_distinct(df, ["_dnt_in", "gpc", "site"], self.decide,
                          {"dnt": pl.Boolean(), "_drop": pl.Boolean(),
                           "aggregate_only": pl.Boolean()})
        good, rejects = split_errors(df)
        good = good.filter(~pl.col("_drop")).drop("_dnt_in", "_drop")
        return batch.with_frame(good), rejects
