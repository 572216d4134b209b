"""The transform chain between a source and the store, on columns: a batch at a time.

check time → resolve site → consent → mask → session key → scrub URL → GeoIP → User-Agent →
language → mask content → shape. Each stage (``collector.engine``) takes a batch (a polars
DataFrame of raw fields plus a ``line`` column) and returns the batch without the rows it
rejected or dropped, plus its rejects as ``(line, reason)`` rows. ``build_steps`` is the one
place that decides the chain; every source (HTTP bodies, syslog batches, ``import`` chunks)
runs it through :class:`Pipeline`.

The raw client address lives in the ``_ip`` column only between MaskClient and Shape; Shape
selects the stored columns only, so it cannot leak past the chain. The record-at-a-time chain
this replaces is kept as the test oracle (``tests/oracle/``) and checked against this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import structlog

from collector.engine.batch import OUT_SCHEMA, frame_from_records
from collector.engine.checks import CheckTime, Consent, ResolveSite
from collector.engine.content import MaskContent
from collector.engine.enrich import EnrichAgent, EnrichGeo, Language, ScrubUrl
from collector.engine.mask import MaskClient, SessionKey
from collector.engine.parse import parse_body, parse_text_lines
from collector.engine.shape import Shape
from collector.engine.stage import Batch, Stage
from collector.enrich.geo import GeoEnricher
from collector.enrich.ua import UAEnricher
from collector.keys import KeyRing
from collector.parse import LineParser, ParseError
from collector.record import Record, RecordError
from collector.settings import Settings
from masking.ip import IPMasker
from masking.textaddr import TextMasker
from masking.url import UrlScrubber

__all__ = ["BatchResult", "Pipeline", "Stage", "build_steps", "records_of"]

log = structlog.get_logger("lethelog.pipeline")

# kept for callers that name the old type
Step = Stage


def _text_maskers(settings: Settings) -> tuple[TextMasker, dict[str, TextMasker]]:
    m = settings.masking
    default = TextMasker(IPMasker(m.ipv4_keep_bits, m.ipv6_keep_bits).mask_packed)
    per_site = {site.name: TextMasker(IPMasker(settings.for_site(site.name, "ipv4_keep_bits"),
                                               settings.for_site(site.name, "ipv6_keep_bits"))
                                      .mask_packed) for site in settings.sites}
    return default, per_site


def build_steps(settings: Settings, keyring: KeyRing, geo: GeoEnricher, ua: UAEnricher,
                source: str, max_age: float | None = None) -> list[Stage]:
    """The chain; ``max_age``: refuse records older than this (``serve``; ``import``: None)."""
    text_default, text_sites = _text_maskers(settings)
    secret = settings.masking.secret_params
    return [
        CheckTime(settings.sessions.max_clock_skew, max_age=max_age),
        ResolveSite(settings),
        Consent(settings),
        MaskClient(settings),
        SessionKey(settings, keyring),
        ScrubUrl(UrlScrubber(secret, text_default),
                 {name: UrlScrubber(secret, t) for name, t in text_sites.items()}),
        EnrichGeo(geo),
        EnrichAgent(ua),
        Language(),
        MaskContent(text_default, text_sites),
        Shape(source),
    ]


def records_of(frame: pl.DataFrame) -> list[Record]:
    """A shaped batch as stored-record dicts (``aggregate_only`` only where it is true)."""
    rows = frame.to_dicts()
    for row in rows:
        if not row.pop("aggregate_only", False):
            continue
        row["aggregate_only"] = True
    return rows


@dataclass
class BatchResult:
    """The shaped batch (``frame``, :data:`~collector.engine.batch.OUT_SCHEMA`), the per-line
    errors in line order, and how many records consent dropped."""

    frames: list[pl.DataFrame] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    dropped: int = 0
    line_numbers: list[pl.Series] = field(default_factory=list, repr=False)
    _records: list[Record] | None = field(default=None, repr=False)

    @property
    def frame(self) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(schema=OUT_SCHEMA)
        if len(self.frames) > 1:
            self.frames = [pl.concat(self.frames, how="vertical")]
        return self.frames[0]

    @property
    def accepted(self) -> int:
        return sum(f.height for f in self.frames)

    @property
    def records(self) -> list[Record]:
        """The shaped batch as stored-record dicts (for stores that take records)."""
        if self._records is None:
            self._records = records_of(self.frame)
        return self._records

    @property
    def lines(self) -> list[int]:
        """The input line number of each row of ``frame``."""
        return [n for s in self.line_numbers for n in s.to_list()]

    @property
    def rejected(self) -> int:
        return len(self.errors)

    def extend(self, other: BatchResult) -> None:
        self.frames.extend(f for f in other.frames if f.height)
        self.line_numbers.extend(s for s in other.line_numbers if len(s))
        self.errors.extend(other.errors)
        self.dropped += other.dropped
        self._records = None


class Pipeline:
    """Runs batches through the stages; collects the shaped batch and per-line errors."""

    def __init__(self, steps: list[Stage]) -> None:
        self.steps = steps

    def run(self, batch: Batch, errors: list[tuple[int, str]] | None = None) -> BatchResult:
        """Run one raw batch (``collector.engine.batch.RAW_SCHEMA`` columns) through the chain;
        ``errors`` are the batch's parse errors, merged with the stages' rejects in line order."""
        result = BatchResult(errors=list(errors or ()))
        rejects: list[pl.DataFrame] = []
        before = batch.frame.height
        last = len(self.steps) - 1
        lines: pl.Series | None = None
        for index, step in enumerate(self.steps):
            if batch.frame.height == 0:
                break
            if index == last:
                lines = batch.frame["line"]  # the last step (Shape) keeps the row order
            try:
                batch, rej = step(batch)
            except Exception as exc:  # a bug must not take the source down, nor leak a value
                log.error("pipeline_step_failed", step=type(step).__name__,
                          error=type(exc).__name__)
                reason = f"internal error ({type(exc).__name__})"
                rejects.append(batch.frame.select(
                    pl.col("line"), pl.lit(reason, dtype=pl.String).alias("reason")))
                batch = batch.with_frame(batch.frame.clear())
                break
            if rej.height:
                rejects.append(rej)
        rejected = 0
        for rej in rejects:
            rejected += rej.height
            result.errors.extend(rej.iter_rows())
        out = batch.frame
        if out.height:
            result.frames.append(out)
            if lines is not None:
                result.line_numbers.append(lines)
        result.dropped = before - rejected - out.height
        result.errors.sort(key=lambda e: e[0])
        return result

    def process(self, items: Iterable[tuple[int, Record | ParseError | RecordError]],
                source: str | None = None, sites: frozenset[str] | None = None
                ) -> BatchResult:
        """Run numbered parsed items (raw records or their errors) for one shipper
        (``source``), which may write only to ``sites`` (None: any site)."""
        rows: list[tuple[int, dict[str, Any]]] = []
        errors: list[tuple[int, str]] = []
        for line, item in items:
            if isinstance(item, ParseError | RecordError):
                errors.append((line, str(item)))
            else:
                rows.append((line, item))
        return self.run(Batch(frame_from_records(rows), source, sites), errors)

    def process_body(self, data: bytes, content_type: str, fmt: str | None, max_line: int,
                     source: str | None = None, sites: frozenset[str] | None = None
                     ) -> BatchResult:
        """A whole shipped body (NDJSON, JSON or text lines) through parse and the chain.
        Raises :class:`~collector.sources.body.BodyError` when the body as a whole is bad."""
        frame, errors = parse_body(data, content_type, fmt, max_line)
        return self.run(Batch(frame, source, sites), errors)

    def process_lines(self, lines: list[str], fmt: str | LineParser | None = None,
                      source: str | None = None, sites: frozenset[str] | None = None,
                      first: int = 1) -> BatchResult:
        """Text lines (numbered from ``first``) through parse and the chain."""
        frame, errors = parse_text_lines(lines, fmt, first)
        return self.run(Batch(frame, source, sites), errors)

    def warm(self) -> None:
        """Run one made-up line through every stage and throw the result away: polars' thread
        pool, allocator and compiled patterns are set up now rather than in the first request
        (its latency, and a steady memory figure from start-up on)."""
        line = (b'192.0.2.1 - - [01/Jan/2000:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" '
                b'"warm-up"\n')
        self.process_body(line, "text/plain", None, len(line) + 1)
