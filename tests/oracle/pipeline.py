"""ORACLE — the record-at-a-time transform chain, kept only to check the columnar engine.

This is the chain ``collector/pipeline.py`` ran before the columnar engine (issue 12), kept
as the reference the differential test (tests/test_engine_differential.py) compares the
engine against. ``collector/`` never imports it. It shares ``masking/`` and the enrichers with
the engine (pure code), so a masking change applies to both.

The transform chain between a source and the store: check → mask → scrub → enrich → shape.

Each step is a small object configured in ``__init__`` with one cheap ``__call__(rec)`` that
returns the record (possibly changed) or ``None`` to drop it, and raises
:class:`~collector.record.RecordError` to reject it with a reason. ``build_steps`` is the one place
that decides the chain. Every step is stateless per record, so the chain runs inline in whichever
source calls it (HTTP handler, syslog receiver, import worker); the store is the only stateful
sink, behind its bounded queue.

The raw client address lives in ``rec["_ip"]`` only between ``MaskClient`` and ``Shape``; Shape
builds a fresh dict from the stored fields, so it cannot leak past the chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from collector.enrich.geo import GeoEnricher
from collector.enrich.ua import UAEnricher
from collector.keys import KeyRing
from collector.parse import ParseError
from collector.record import STORED_FIELDS, Record, RecordError
from collector.recordtime import time_problem
from collector.settings import Settings
from masking.consent import consent_flags
from masking.ip import AddressError, IPMasker
from masking.language import parse_accept_language
from masking.session import session_key
from masking.textaddr import CONTENT_HOST_FIELDS, CONTENT_TEXT_FIELDS, TextMasker
from masking.url import UrlScrubber, path_template

log = structlog.get_logger("lethelog.oracle")

Step = Callable[[Record], Record | None]


class CheckTime:
    """A record needs a time, may not be stamped beyond the wall clock plus the skew, nor
    (``max_age``, in ``serve``) further back than that (``collector.recordtime``)."""

    def __init__(self, max_skew: float, clock: Callable[[], float] = time.time,
                 max_age: float | None = None) -> None:
        self.max_skew = max_skew
        self.clock = clock
        self.max_age = max_age

    def __call__(self, rec: Record) -> Record:
        t = rec.get("time")
        if t is None:
            raise RecordError("missing timestamp")
        if not isinstance(t, int | float):
            raise RecordError("timestamp is not a number of seconds")
        problem = time_problem(t, self.clock(), self.max_skew, self.max_age)
        if problem is not None:
            raise RecordError(problem)
        return rec


class ResolveSite:
    """Which customer site a record belongs to: from its host, else the shipper's only site.

    A shipper token limited to sites may write only to those; a record whose host belongs to
    another site is rejected. Records of no configured site go to ``tenancy.default_site`` or are
    rejected (``tenancy.unknown_host = "reject"``).
    """

    def __init__(self, settings: Settings) -> None:
        self.sites = settings.sites
        self.default = settings.tenancy.default_site
        self.reject_unknown = settings.tenancy.unknown_host == "reject"

    def __call__(self, rec: Record) -> Record:
        allowed: frozenset[str] | None = rec.get("_allowed_sites")
        host = rec.get("host")
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
        rec["site"] = site
        return rec


class Consent:
    """DNT: 1 / Sec-GPC: 1 honoured by the site's policy: count in aggregates only, or drop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, rec: Record) -> Record | None:
        dnt, gpc = consent_flags(rec.get("dnt"), rec.get("gpc"))
        if not (dnt or gpc):
            rec["dnt"] = None
            return rec
        rec["dnt"] = True
        if self.settings.for_site(rec["site"], "consent") == "drop":
            return None
        rec["aggregate_only"] = True
        return rec


class MaskClient:
    """Truncate the client address and derive the pseudonymous session key from the full one."""

    def __init__(self, settings: Settings, keyring: KeyRing) -> None:
        m = settings.masking
        self.maskers = {
            site.name: IPMasker(settings.for_site(site.name, "ipv4_keep_bits"),
                                settings.for_site(site.name, "ipv6_keep_bits"), m.trusted_proxies)
            for site in settings.sites
        }
        self.default = IPMasker(m.ipv4_keep_bits, m.ipv6_keep_bits, m.trusted_proxies)
        self.keyring = keyring
        self.hint_fields = tuple(settings.sessions.hint_fields)

    def __call__(self, rec: Record) -> Record:
        raw = rec.get("client")
        if raw is None or raw == "":
            raise RecordError("missing client address")
        masker = self.maskers.get(rec.get("site") or "", self.default)
        try:
            client = masker.client(str(raw), rec.get("forwarded_for"))
        except AddressError as exc:
            raise RecordError(str(exc)) from None
        rec["ip"] = client.masked
        rec["_ip"] = client.ip
        if client.ip is None:
            rec["ip_note"] = client.reason
        hint = None
        for name in self.hint_fields:
            value = rec.get(name)
            if value:
                hint = str(value)
                break
        site = rec["site"]
        rec["session_key"] = session_key(
            self.keyring.current().secret, site, client.ip or client.reason or "",
            rec.get("user_agent"), hint,
        )
        return rec


class ScrubUrl:
    """Secrets and addresses out of the target and the referrer; a template of the path for
    grouping. ``scrubber`` serves every site without a scrubber of its own in ``per_site``
    (a site with its own keep bits masks addresses in URLs with them)."""

    def __init__(self, scrubber: UrlScrubber, per_site: dict[str, UrlScrubber] | None = None
                 ) -> None:
        self.scrubber = scrubber
        self.per_site = per_site or {}

    def __call__(self, rec: Record) -> Record:
        scrubber = self.per_site.get(rec.get("site") or "", self.scrubber)
        path, query = scrubber.target(rec.get("target"))
        rec["path"] = path
        rec["query"] = query
        rec["path_template"] = path_template(path)
        rec["referrer"] = scrubber.referrer(rec.get("referrer"))
        return rec


class MaskContent:
    """Addresses out of every other stored text a client chose: ``host`` (read as a host: any
    ``inet_aton`` form), and ``method``, ``protocol`` and the User-Agent-derived fields (an
    Android agent's device model, a browser family captured from free text) as text. Masked
    with the record's site's keep bits (``masking.textaddr``)."""

    HOST = CONTENT_HOST_FIELDS[0]
    TEXT = CONTENT_TEXT_FIELDS

    def __init__(self, default: TextMasker, per_site: dict[str, TextMasker]) -> None:
        self.default = default
        self.per_site = per_site

    def __call__(self, rec: Record) -> Record:
        masker = self.per_site.get(rec.get("site") or "", self.default)
        host = rec.get(self.HOST)
        if host:
            rec[self.HOST] = masker.host(str(host))
        for name in self.TEXT:
            value = rec.get(name)
            if value and value.__class__ is str:
                rec[name] = masker.text(value)
        langs = rec.get("languages")
        if langs:
            rec["languages"] = [masker.text(v) if isinstance(v, str) else v for v in langs]
        return rec


class EnrichGeo:
    def __init__(self, geo: GeoEnricher) -> None:
        self.geo = geo

    def __call__(self, rec: Record) -> Record:
        rec.update(self.geo.lookup(rec.get("ip"), rec.get("_ip")))
        return rec


class EnrichAgent:
    def __init__(self, ua: UAEnricher) -> None:
        self.ua = ua

    def __call__(self, rec: Record) -> Record:
        rec.update(self.ua(rec.get("user_agent")))
        return rec


class Language:
    def __call__(self, rec: Record) -> Record:
        primary, ordered = parse_accept_language(rec.get("accept_language"))
        rec["language"] = primary
        rec["languages"] = ordered or None
        return rec


class Shape:
    """Build the stored record: only STORED_FIELDS, plus the key and source for the store."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.fields = tuple(f for f in STORED_FIELDS if f not in ("session", "source"))

    def __call__(self, rec: Record) -> Record:
        values = list(map(rec.get, self.fields))
        out = dict(zip(self.fields, values, strict=True))
        if "" in values or "-" in values:  # rare: one scan instead of a test per field
            for f, v in out.items():
                if v == "" or (v == "-" and f in ("method", "host", "protocol")):
                    out[f] = None  # unknown is null, never an empty-string guess
        out["source"] = rec.get("_source") or self.source
        out["session_key"] = rec["session_key"]
        if rec.get("aggregate_only"):
            out["aggregate_only"] = True  # counted in aggregates, never stored as a record
        return out


def _text_maskers(settings: Settings) -> tuple[TextMasker, dict[str, TextMasker]]:
    m = settings.masking
    default = TextMasker(IPMasker(m.ipv4_keep_bits, m.ipv6_keep_bits).mask_packed)
    per_site = {site.name: TextMasker(IPMasker(settings.for_site(site.name, "ipv4_keep_bits"),
                                               settings.for_site(site.name, "ipv6_keep_bits"))
                                      .mask_packed) for site in settings.sites}
    return default, per_site


def build_steps(settings: Settings, keyring: KeyRing, geo: GeoEnricher, ua: UAEnricher,
                source: str, max_age: float | None = None) -> list[Step]:
    """The chain; ``max_age``: refuse records older than this (``serve``; ``import``: None)."""
    text_default, text_sites = _text_maskers(settings)
    secret = settings.masking.secret_params
    return [
        CheckTime(settings.sessions.max_clock_skew, max_age=max_age),
        ResolveSite(settings),
        Consent(settings),
        MaskClient(settings, keyring),
        ScrubUrl(UrlScrubber(secret, text_default),
                 {name: UrlScrubber(secret, t) for name, t in text_sites.items()}),
        EnrichGeo(geo),
        EnrichAgent(ua),
        Language(),
        MaskContent(text_default, text_sites),
        Shape(source),
    ]


@dataclass
class BatchResult:
    records: list[Record] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    dropped: int = 0

    @property
    def rejected(self) -> int:
        return len(self.errors)


class Pipeline:
    """Runs parsed items through the steps; collects good records and per-line errors."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps

    def run(self, rec: Record) -> Record | None:
        for step in self.steps:
            out = step(rec)
            if out is None:
                return None
            rec = out
        return rec

    def process(self, items: Iterable[tuple[int, Record | ParseError | RecordError]],
                source: str | None = None, sites: frozenset[str] | None = None
                ) -> BatchResult:
        """Run numbered items through the chain for one shipper (``source``), which may write
        only to ``sites`` (None: any site)."""
        result = BatchResult()
        for line, item in items:
            if isinstance(item, ParseError | RecordError):
                result.errors.append((line, str(item)))
                continue
            if source is not None:
                item["_source"] = source
            item["_allowed_sites"] = sites
            try:
                out = self.run(item)
            except (RecordError, ParseError) as exc:
                result.errors.append((line, str(exc)))
                continue
            except Exception as exc:  # a bug must not take the batch down, nor leak a value
                log.error("pipeline_step_failed", line=line, error=type(exc).__name__)
                result.errors.append((line, f"internal error ({type(exc).__name__})"))
                continue
            if out is None:
                result.dropped += 1
            else:
                result.records.append(out)
        return result
