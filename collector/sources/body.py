"""Turn one shipped body into numbered items: raw records or the error of their line.

Shared by every source that receives whole documents (HTTP today, files via ``import``):
``application/x-ndjson`` (one JSON object a line), ``application/json`` (one object or an
array; an element's number is its "line"), and ``text/plain`` access-log lines in any format
``collector.parse`` knows (detected per batch unless ``fmt`` names one).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import Any

import orjson

from collector.parse import ParseError, normalize_json, parse_lines

Item = tuple[int, dict[str, Any] | ParseError]

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonlines",
                "application/x-jsonlines", "application/json-seq")
TEXT_TYPES = ("text/plain", "application/octet-stream", "")


class BodyError(ValueError):
    """The body as a whole can't be read (encoding, size, type). Answered with 4xx."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip ``data``; refuse (413) once the output would exceed ``limit`` bytes."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise BodyError(f"body is not valid gzip: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise BodyError(f"decompressed body exceeds the {limit}-byte limit", status=413)
    if not d.eof:
        raise BodyError("gzip body is truncated")
    return out


def _ndjson(data: bytes, max_line: int) -> Iterator[Item]:
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.strip()
        if not line:
            continue
        if len(line) > max_line:
            yield number, ParseError(f"record is longer than {max_line} bytes")
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, ParseError(f"invalid JSON: {_json_reason(exc)}")
            continue
        yield number, _from_obj(obj)


def _json(data: bytes) -> Iterator[Item]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"invalid JSON body: {_json_reason(exc)}") from None
    items = doc if isinstance(doc, list) else [doc]
    for number, obj in enumerate(items, 1):
        yield number, _from_obj(obj)


def _from_obj(obj: Any) -> dict[str, Any] | ParseError:
    if not isinstance(obj, dict):
        return ParseError(f"expected a JSON object, got {type(obj).__name__}")
    try:
        return normalize_json(obj)
    except ParseError as exc:
        return exc


def _json_reason(exc: orjson.JSONDecodeError) -> str:
    # orjson messages quote positions, never the document: safe to show.
    return str(exc).split(":")[0]


def _text(data: bytes, fmt: str | None, max_line: int) -> Iterator[Item]:
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    too_long = {i for i, line in enumerate(lines, 1) if len(line) > max_line}
    if too_long:
        lines = ["" if i in too_long else line for i, line in enumerate(lines, 1)]
        for i in sorted(too_long):
            yield i, ParseError(f"line is longer than {max_line} bytes")
    try:
        yield from parse_lines([line.rstrip("\r") for line in lines], fmt)
    except (KeyError, ValueError) as exc:
        raise BodyError(f"format: {exc}") from None


_MIME = re.compile(r"[a-z][a-z0-9.+-]{0,30}/[a-z][a-z0-9.+-]{0,60}")


def _shown(ctype: str) -> str:
    """The type, quoted, when it has the shape of a media type (no digits-and-dots host or
    address can pass for one); otherwise nothing of what the client sent is repeated."""
    if _MIME.fullmatch(ctype) and not any(ch.isdigit() for ch in ctype.split("/")[0]):
        return f" {ctype!r}"
    return ""


def read_body(data: bytes, content_type: str, fmt: str | None, max_line: int) -> Iterator[Item]:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in NDJSON_TYPES:
        return _ndjson(data, max_line)
    if ctype in JSON_TYPES:
        return _json(data)
    if ctype in TEXT_TYPES or ctype.startswith("text/"):
        return _text(data, fmt, max_line)
    raise BodyError(
        f"unsupported Content-Type{_shown(ctype)}: use application/x-ndjson, application/json "
        "or text/plain",
        status=415,
    )
