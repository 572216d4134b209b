"""Parse a body into a raw batch: native column parsing for the common shapes, exact fallback.

Text bodies in the ``combined`` / ``common`` format (the most common access log by far) are
split into columns by one native regex over the whole batch (polars ``str.extract_groups``);
the time, request line and client field are then converted once per *distinct* value by the
same functions the per-line parser uses (``clf_time``, ``split_request``, ``check_client``).
A line the native pattern does not cover exactly (escapes, chains, vhosts, odd spacing, a bad
time or client) takes the per-line parser of ``collector.parse``, so its record or its error is
the one that parser gives. NDJSON bodies whose objects use the canonical field names
(``collector.record.RAW_FIELDS``) with plain values go to columns directly; other objects are
mapped by ``normalize_json``. Everything else (other dialects, W3C, custom formats) is parsed
per line and then turned into columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import polars as pl

from collector.engine.batch import RAW_SCHEMA, frame_from_records
from collector.parse import FORMATS, ParseError, detect_format, parse_lines
from collector.parse.custom import compile_format
from collector.parse.fields import check_client, split_request
from collector.parse.lines import COMBINED, COMMON, LineParser
from collector.parse.timeparse import clf_time
from collector.sources.body import (
    JSON_TYPES,
    NDJSON_TYPES,
    TEXT_TYPES,
    BodyError,
    read_body,
)

__all__ = ["parse_body", "parse_text_lines"]

Errors = list[tuple[int, str]]

_Q = r'"([^"\\]*)"'
# ``combined`` (and ``common`` when the referrer and agent are absent) without escapes, chains,
# vhosts or trailing text: for such a line COMBINED's own regex gives exactly these groups.
_FAST_COMBINED = (
    r'^([^\s",]+) \S+ \S+ \[([^\]]+)\] ' + _Q + r" (\d{3}|-) (\d{1,18}|-)"
    r"(?: " + _Q + " " + _Q + ")?$"
)
_FAST_COMMON = r'^([^\s",]+) \S+ \S+ \[([^\]]+)\] ' + _Q + r" (\d{3}|-) (\d{1,18}|-)$"
_GROUPS = ("client", "time_clf", "request", "status", "bytes", "referrer", "user_agent")


def _resolve(lines: list[str], fmt: str | LineParser | None) -> LineParser | None:
    if fmt is None:
        sample: list[str] = []
        for raw in lines:
            sample.append(raw)
            if len([h for h in sample if h.strip() and not h.startswith("#")]) >= 20:
                break
        return detect_format([h.rstrip("\r\n") for h in sample])
    if isinstance(fmt, str):
        if fmt in FORMATS:
            return FORMATS[fmt]
        try:
            return compile_format(fmt)
        except ValueError as err:
            raise ParseError(f"unknown log format: {err}") from None
    return fmt


def _time(text: str) -> tuple[float | None]:
    try:
        return (clf_time(text),)
    except (ValueError, OverflowError):
        return (None,)


def _client_ok(text: str | None) -> tuple[bool]:
    if text is None:
        return (False,)
    try:
        check_client(text, None)
    except ParseError:
        return (False,)
    return (True,)


def _distinct(df: pl.DataFrame, columns: list[str], fn: Any, out: dict[str, pl.DataType]
              ) -> pl.DataFrame:
    """A table of ``columns``' distinct value tuples and ``fn``'s answer for each."""
    uniq = df.select(columns).unique()
    rows = [fn(*k) for k in uniq.iter_rows()]
    table = pl.DataFrame(rows, schema=out, orient="row") if rows else pl.DataFrame(schema=out)
    return uniq.hstack(table)


def _per_value(df: pl.DataFrame, column: str, fn: Any, out: dict[str, pl.DataType]
               ) -> pl.DataFrame:
    return df.join(_distinct(df, [column], fn, out), on=column, how="left", nulls_equal=True,
                   maintain_order="left")


def _fast_clf(df: pl.DataFrame, pattern: str) -> tuple[pl.DataFrame, list[int]]:
    """The rows (of ``line``, ``_text``) the native pattern parses exactly, and the numbers of
    the lines it leaves to the per-line parser."""
    groups = pl.col("_text").str.extract_groups(pattern)
    df = df.with_columns(_g=groups).unnest("_g")
    df = df.rename({str(i + 1): name for i, name in enumerate(_GROUPS) if str(i + 1) in df.columns})
    if "referrer" not in df.columns:
        df = df.with_columns(referrer=pl.lit(None, pl.String), user_agent=pl.lit(None, pl.String))
    matched = df.filter(pl.col("client").is_not_null())
    matched = _per_value(matched, "time_clf", _time, {"time": pl.Float64()})
    matched = _per_value(matched, "client", _client_ok, {"_client_ok": pl.Boolean()})
    matched = _per_value(matched, "request", lambda r: split_request(r),
                         {"method": pl.String(), "target": pl.String(),
                          "protocol": pl.String()})
    ok = pl.col("time").is_not_null() & pl.col("_client_ok")
    good = matched.filter(ok)
    rest = pl.concat([df.filter(pl.col("client").is_null())["line"],
                      matched.filter(~ok)["line"]]).sort().to_list()

    def dash_null(name: str) -> pl.Expr:
        col = pl.col(name)
        return pl.when((col == "-") | (col == "")).then(None).otherwise(col).alias(name)

    good = good.select(
        pl.col("line"),
        pl.col("time"),
        pl.col("client"),
        pl.lit(None, pl.String).alias("forwarded_for"),
        pl.col("method"), pl.col("target"), pl.col("protocol"),
        pl.lit(None, pl.String).alias("host"),
        pl.col("status").cast(pl.Int64, strict=False),
        pl.col("bytes").cast(pl.Int64, strict=False),
        dash_null("referrer"), dash_null("user_agent"),
        pl.lit(None, pl.String).alias("accept_language"),
        pl.lit(None, pl.Float64).alias("request_time"),
        pl.lit(None, pl.String).alias("session_hint"),
        pl.lit(None, pl.Boolean).alias("dnt"),
        pl.lit(None, pl.Boolean).alias("gpc"),
    )
    return good, rest


def parse_text_lines(lines: list[str], fmt: str | LineParser | None = None,
                     first: int = 1, series: pl.Series | None = None
                     ) -> tuple[pl.DataFrame, Errors]:
    """Lines of a text body (numbered from ``first``) → a raw batch and the parse errors.
    ``series``: the same lines as a polars Series, when the caller has it."""
    parser = _resolve(lines, fmt)
    if parser is COMBINED or parser is COMMON:
        if series is None:
            series = pl.Series("_text", lines, dtype=pl.String)
        texts = series.str.strip_chars_end("\r\n")
        df = pl.DataFrame({"line": pl.int_range(first, first + len(texts), eager=True,
                                                dtype=pl.Int64), "_text": texts})
        # blank and comment lines are skipped (the per-line path decides any line whose
        # blankness polars and Python could judge differently: it gets there unmatched)
        df = df.filter((pl.col("_text").str.len_bytes() > 0)
                       & ~pl.col("_text").str.starts_with("#"))
        if df.height == 0:
            return pl.DataFrame(schema=RAW_SCHEMA), []
        fast, rest = _fast_clf(df, _FAST_COMBINED if parser is COMBINED else _FAST_COMMON)
        if not rest:
            return fast, []
        slow_rows, errors = _per_line([(n, lines[n - first]) for n in rest], parser)
        slow = frame_from_records(slow_rows)
        frame = pl.concat([fast, slow]).sort("line") if slow.height else fast
        return frame, errors
    rows: list[tuple[int, dict[str, Any]]] = []
    errors = []
    for number, item in parse_lines(lines, parser):
        if isinstance(item, ParseError):
            errors.append((number + first - 1, str(item)))
        else:
            rows.append((number + first - 1, item))
    return frame_from_records(rows), errors


def _per_line(numbered: list[tuple[int, str]], parser: LineParser
              ) -> tuple[list[tuple[int, dict[str, Any]]], Errors]:
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: Errors = []
    p = parser.fresh()
    for number, raw in numbered:
        line = raw.rstrip("\r\n")
        if not line.strip() or line.startswith("#"):
            continue
        try:
            rows.append((number, p.parse(line)))
        except ParseError as err:
            errors.append((number, str(err)))
    return rows, errors


# --------------------------------------------------------------------------- NDJSON

_CANON_STR = ("client", "forwarded_for", "method", "target", "protocol", "host", "referrer",
              "user_agent", "accept_language", "session_hint")
_CANON = frozenset((*_CANON_STR, "time", "status", "bytes", "request_time"))


def _canonical(obj: Any) -> bool:
    """An object the column path maps exactly as ``normalize_json`` would: canonical keys only,
    a numeric epoch time, a valid client, strings that are not ``""``/``"-"``, int counts."""
    if type(obj) is not dict or not obj.keys() <= _CANON:
        return False
    t = obj.get("time")
    if type(t) is not float and type(t) is not int:
        return False
    if not (0 <= t <= 1e11):  # plain seconds (no ms/µs/ns scaling), never NaN
        return False
    for name in _CANON_STR:
        v = obj.get(name)
        if v is not None and (type(v) is not str or v == "" or v == "-" or "\\" in v):
            return False
    client = obj.get("client")
    if client is None or client != client.strip():
        return False
    s = obj.get("status")
    if s is not None and (type(s) is not int or not 0 <= s <= 999):
        return False
    b = obj.get("bytes")
    if b is not None and (type(b) is not int or not -(2**62) < b < 2**62):
        return False
    rt = obj.get("request_time")
    return rt is None or type(rt) is float or type(rt) is int


def _ndjson(data: bytes, max_line: int) -> tuple[pl.DataFrame, Errors]:
    from collector.sources.body import _from_obj, _json_reason

    canon: list[tuple[int, dict[str, Any]]] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: Errors = []
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.strip()
        if not line:
            continue
        if len(line) > max_line:
            errors.append((number, f"record is longer than {max_line} bytes"))
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            errors.append((number, f"invalid JSON: {_json_reason(exc)}"))
            continue
        if _canonical(obj):
            canon.append((number, obj))
            continue
        item = _from_obj(obj)
        if isinstance(item, ParseError):
            errors.append((number, str(item)))
        else:
            rows.append((number, item))
    frame, bad = _canon_frame(canon)
    errors.extend(bad)
    errors.sort(key=lambda e: e[0])
    if rows:
        frame = pl.concat([frame, frame_from_records(rows)]).sort("line")
    return frame, errors


def _client_error(client: str, forwarded_for: str | None) -> tuple[str | None]:
    try:
        check_client(client, forwarded_for)
    except ParseError as err:
        return (str(err),)
    return (None,)


def _canon_frame(canon: list[tuple[int, dict[str, Any]]]) -> tuple[pl.DataFrame, Errors]:
    if not canon:
        return pl.DataFrame(schema=RAW_SCHEMA), []
    frame = frame_from_records(canon)
    checked = frame.join(
        _distinct(frame, ["client", "forwarded_for"], _client_error, {"_bad": pl.String()}),
        on=["client", "forwarded_for"], how="left", nulls_equal=True, maintain_order="left")
    bad = checked.filter(pl.col("_bad").is_not_null())
    errors: Errors = list(bad.select("line", "_bad").iter_rows()) if bad.height else []
    return checked.filter(pl.col("_bad").is_null()).drop("_bad"), errors


def parse_body(data: bytes, content_type: str, fmt: str | None, max_line: int
               ) -> tuple[pl.DataFrame, Errors]:
    """A whole body → (raw batch, parse errors). Raises BodyError like ``read_body``."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in NDJSON_TYPES:
        return _ndjson(data, max_line)
    if ctype in JSON_TYPES:
        pass
    elif ctype in TEXT_TYPES or ctype.startswith("text/"):
        text = data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        series = pl.Series("_text", lines, dtype=pl.String)
        errors: Errors = []
        long = (series.str.len_chars() > max_line).arg_true().to_list()
        if long:
            for i in long:
                errors.append((i + 1, f"line is longer than {max_line} bytes"))
                lines[i] = ""
            series = pl.Series("_text", lines, dtype=pl.String)
        try:
            frame, more = parse_text_lines(lines, fmt, series=series)
        except (KeyError, ValueError) as exc:
            raise BodyError(f"format: {exc}") from None
        return frame, errors + more
    items: Iterator[Any] = read_body(data, content_type, fmt, max_line)
    rows: list[tuple[int, dict[str, Any]]] = []
    errors = []
    for number, item in items:
        if isinstance(item, ParseError):
            errors.append((number, str(item)))
        else:
            rows.append((number, item))
    return frame_from_records(rows), errors
