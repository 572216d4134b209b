"""Access-log parsers: every common dialect, auto-detection per batch, user formats, JSON.

``parse_lines`` yields ``(line_number, record_or_ParseError)``; records are raw records
(``collector.record.RAW_FIELDS``) holding the client field as logged — masking happens later.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from collector.parse.custom import compile_format
from collector.parse.errors import ParseError
from collector.parse.jsonmap import normalize_json
from collector.parse.lines import (
    ALB,
    APACHE_SSL,
    COMBINED,
    COMMON,
    ELB,
    HAPROXY,
    INGRESS_NGINX,
    NGINX_ERROR,
    S3,
    TRAEFIK_CLF,
    VHOST_COMBINED,
    CloudFrontParser,
    JsonLineParser,
    LineParser,
    W3CParser,
)

__all__ = [
    "FORMATS",
    "LineParser",
    "ParseError",
    "compile_format",
    "detect_format",
    "normalize_json",
    "parse_lines",
    "parse_one_line",
]

_JSON = JsonLineParser("json")
FORMATS: dict[str, LineParser] = {
    "combined": COMBINED,
    "common": COMMON,
    "vhost_combined": VHOST_COMBINED,
    "nginx_json": JsonLineParser("nginx_json"),
    "caddy_json": JsonLineParser("caddy_json"),
    "traefik_json": JsonLineParser("traefik_json"),
    "json": _JSON,
    "traefik_clf": TRAEFIK_CLF,
    "ingress_nginx": INGRESS_NGINX,
    "haproxy": HAPROXY,
    "elb": ELB,
    "alb": ALB,
    "s3": S3,
    "cloudfront": CloudFrontParser(),
    "w3c": W3CParser("w3c"),
    "iis": W3CParser("iis"),
    "nginx_error": NGINX_ERROR,
    "apache_ssl": APACHE_SSL,
}

# Detection order: most specific first; ties in the number of matching lines go to the earlier.
_DETECT: tuple[LineParser, ...] = (
    INGRESS_NGINX, TRAEFIK_CLF, ALB, ELB, S3, HAPROXY, APACHE_SSL, COMMON, COMBINED, NGINX_ERROR,
)
_SAMPLE = 20


def _is_comment(line: str) -> bool:
    return line.startswith("#")


def detect_format(lines: list[str]) -> LineParser | None:
    """The parser that matches most of the sample lines (comments and blanks ignored)."""
    sample = [ln for ln in lines if ln.strip() and not _is_comment(ln)][:_SAMPLE]
    if any(ln.lower().startswith(("#fields:", "#software:", "#version:")) for ln in lines[:10]):
        return W3CParser("w3c")
    if not sample:
        return None
    if sample[0].lstrip().startswith("{"):
        return _JSON
    best: LineParser | None = None
    best_count = 0
    for parser in _DETECT:
        count = sum(1 for ln in sample if parser.matches(ln))
        if count > best_count:
            best, best_count = parser, count
    if best is COMMON:
        # Common is a subset of combined; mixed files (common + combined lines) need combined.
        if sum(1 for ln in sample if COMBINED.matches(ln)) > best_count:
            best = COMBINED
        else:
            best = COMBINED if best_count < len(sample) else COMMON
    return best


def parse_one_line(line: str) -> dict[str, Any]:
    """Parse a single line of unknown format (e.g. a shipper's ``message``). Raises ParseError."""
    parser = detect_format([line])
    if parser is None:
        raise ParseError("line does not match any known access-log format")
    return parser.fresh().parse(line)


def parse_lines(
    lines: Iterable[str], fmt: str | LineParser | None = None
) -> Iterator[tuple[int, dict[str, Any] | ParseError]]:
    """Parse a batch: ``(1-based line number, raw record or ParseError)`` per non-blank line."""
    iterator = iter(lines)
    parser: LineParser | None
    if fmt is None:
        head: list[str] = []
        for raw in iterator:
            head.append(raw)
            if len([h for h in head if h.strip() and not _is_comment(h)]) >= _SAMPLE:
                break
        clean = [h.rstrip("\r\n") for h in head]
        parser = detect_format(clean)
        iterator = chain(head, iterator)
    elif isinstance(fmt, str):
        if fmt in FORMATS:
            parser = FORMATS[fmt]
        else:
            try:
                parser = compile_format(fmt)
            except ValueError as err:
                raise ParseError(f"unknown log format: {err}") from None
    else:
        parser = fmt
    if parser is not None:
        parser = parser.fresh()
    for number, raw in enumerate(iterator, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if line.startswith("#"):
            if parser is not None and parser.stateful:
                parser.header(line)
            continue
        if parser is None:
            yield number, ParseError("line does not match any known access-log format")
            continue
        try:
            yield number, parser.parse(line)
        except ParseError as err:
            yield number, err
