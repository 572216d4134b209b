"""A batch as columns: the raw and the stored schema, rejects as rows, per-distinct-value mapping.

A **batch** is a polars DataFrame with a ``line`` column (1-based, for errors) and one column per
raw field (:data:`RAW_SCHEMA`). Each stage is ``batch -> (batch, rejects)``: the rows it rejects
leave the batch as a ``rejects`` frame of ``(line, reason)``; rows it drops (consent) simply leave.

Steps that cannot be vectorised (UA parsing, maxminddb, URL scrubbing with look-behind, the HMAC
session key, the exact address masker for rare shapes) run once per *distinct value* of their
input columns through :func:`map_distinct`, with a :class:`BoundedCache` that survives batches.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import polars as pl

from collector.record import RecordError

__all__ = [
    "OUT_SCHEMA",
    "RAW_SCHEMA",
    "REJECT_SCHEMA",
    "BoundedCache",
    "empty_rejects",
    "frame_from_records",
    "map_distinct",
    "rejects_from",
]

RAW_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.Int64(),
    "time": pl.Float64(),
    "client": pl.String(),
    "forwarded_for": pl.String(),
    "method": pl.String(),
    "target": pl.String(),
    "protocol": pl.String(),
    "host": pl.String(),
    "status": pl.Int64(),
    "bytes": pl.Int64(),
    "referrer": pl.String(),
    "user_agent": pl.String(),
    "accept_language": pl.String(),
    "request_time": pl.Float64(),
    "session_hint": pl.String(),
    "dnt": pl.Boolean(),
    "gpc": pl.Boolean(),
}

# The shaped batch handed to the store: the stored fields (but ``session``, which the store
# assigns), the pseudonymous ``session_key``, the shipper ``source`` and ``aggregate_only``.
OUT_SCHEMA: dict[str, pl.DataType] = {
    "time": pl.Float64(),
    "ip": pl.String(),
    "method": pl.String(),
    "host": pl.String(),
    "path": pl.String(),
    "path_template": pl.String(),
    "query": pl.String(),
    "protocol": pl.String(),
    "status": pl.Int64(),
    "bytes": pl.Int64(),
    "referrer": pl.String(),
    "browser": pl.String(),
    "browser_version": pl.String(),
    "os": pl.String(),
    "os_version": pl.String(),
    "device": pl.String(),
    "device_type": pl.String(),
    "is_bot": pl.Boolean(),
    "language": pl.String(),
    "languages": pl.List(pl.String()),
    "timezone": pl.String(),
    "country": pl.String(),
    "region": pl.String(),
    "city": pl.String(),
    "asn": pl.Int64(),
    "isp": pl.String(),
    "connection_type": pl.String(),
    "is_anonymous_proxy": pl.Boolean(),
    "is_vpn": pl.Boolean(),
    "is_tor": pl.Boolean(),
    "is_hosting": pl.Boolean(),
    "request_time": pl.Float64(),
    "dnt": pl.Boolean(),
    "source": pl.String(),
    "site": pl.String(),
    "session_key": pl.String(),
    "aggregate_only": pl.Boolean(),
}

REJECT_SCHEMA: dict[str, pl.DataType] = {"line": pl.Int64(), "reason": pl.String()}


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def rejects_from(pairs: Sequence[tuple[int, str]]) -> pl.DataFrame:
    if not pairs:
        return empty_rejects()
    return pl.DataFrame(list(pairs), schema=REJECT_SCHEMA, orient="row")


def frame_from_records(rows: Sequence[tuple[int, dict[str, Any]]]) -> pl.DataFrame:
    """Numbered raw records (from the per-line parsers) → a raw batch."""
    cols: dict[str, list[Any]] = {name: [] for name in RAW_SCHEMA}
    names = tuple(n for n in RAW_SCHEMA if n != "line")
    line_col = cols["line"]
    for line, rec in rows:
        line_col.append(line)
        get = rec.get
        for name in names:
            cols[name].append(get(name))
    return pl.DataFrame(cols, schema=RAW_SCHEMA)


class BoundedCache:
    """A dict with a size bound (least recently inserted evicted), living across batches."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        return self._data.get(key, _MISS)

    def put(self, key: Hashable, value: Any) -> None:
        data = self._data
        data[key] = value
        if len(data) > self.size:
            data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


_MISS = object()
ERROR = "_error"


def map_distinct(
    df: pl.DataFrame,
    keys: Sequence[str],
    fn: Callable[..., tuple[Any, ...]],
    out: dict[str, pl.DataType],
    cache: BoundedCache | None = None,
    cache_prefix: tuple[Any, ...] = (),
) -> pl.DataFrame:
    """Add ``out`` columns to ``df``: ``fn(*key_values)`` computed once per distinct key tuple.

    ``fn`` returns a tuple of values in the order of ``out``, or raises
    :class:`~collector.record.RecordError` (the row's reason, in column ``_error``). Any other
    exception is reported as an internal error for the rows of that value, never its text.
    """
    names = list(out)
    width = len(names)
    uniq = df.select(keys).unique()
    values: list[tuple[Any, ...]] = []
    errors: list[str | None] = []
    blank = (None,) * width
    for row in uniq.iter_rows():
        ckey = (*cache_prefix, *row) if cache is not None else None
        hit: Any = cache.get(ckey) if cache is not None else _MISS
        if hit is _MISS:
            try:
                hit = (fn(*row), None)
            except RecordError as exc:
                hit = (blank, str(exc))
            except Exception as exc:  # a bug must not take the batch down, nor leak a value
                hit = (blank, f"internal error ({type(exc).__name__})")
            if cache is not None:
                cache.put(ckey, hit)
        values.append(hit[0])
        errors.append(hit[1])
    table = pl.DataFrame(values, schema=out, orient="row") if values else pl.DataFrame(
        schema=out)
    table = uniq.hstack(table).with_columns(pl.Series(ERROR, errors, dtype=pl.String()))
    return df.join(table, on=list(keys), how="left", nulls_equal=True, maintain_order="left")


def split_errors(df: pl.DataFrame, column: str = ERROR) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows whose ``column`` holds a reason → rejects; the rest (without the column) → batch."""
    bad = df.filter(pl.col(column).is_not_null())
    good = df.filter(pl.col(column).is_null()).drop(column)
    if bad.height == 0:
        return good, empty_rejects()
    return good, bad.select(pl.col("line"), pl.col(column).alias("reason"))
