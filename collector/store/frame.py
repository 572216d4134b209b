"""A batch as the store takes it: a polars DataFrame, one row per record.

Columns: every stored field (``collector.record.STORED_FIELDS`` but ``session``), plus
``session_key`` (the pseudonymous key, never output), ``source`` and ``aggregate_only`` (DNT/GPC:
counted in the aggregates, never kept). :data:`SCHEMA` gives each column's type; a missing column
is all null. ``list[Record]`` batches are converted once by :func:`to_frame`, so callers can move
to DataFrames one at a time.
"""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl

from collector.record import STORED_FIELDS, Record

COLUMNS: tuple[str, ...] = tuple(f for f in STORED_FIELDS if f != "session")
BOOLS = ("is_bot", "dnt", "is_anonymous_proxy", "is_vpn", "is_tor", "is_hosting")
_TYPES: dict[str, Any] = {
    "time": pl.Float64, "status": pl.Int64, "bytes": pl.Int64, "asn": pl.Int64,
    "request_time": pl.Float64, "languages": pl.List(pl.String),
    **{b: pl.Boolean for b in BOOLS},
}
SCHEMA: dict[str, Any] = {
    **{c: _TYPES.get(c, pl.String) for c in COLUMNS},
    "session_key": pl.String, "aggregate_only": pl.Boolean,
}

Batch = list[Record] | pl.DataFrame


def to_frame(batch: Batch) -> pl.DataFrame:
    """The batch as a DataFrame with every :data:`SCHEMA` column, in that order."""
    if isinstance(batch, pl.DataFrame):
        missing = [pl.lit(None, dtype=t).alias(c) for c, t in SCHEMA.items()
                   if c not in batch.columns]
        df = batch.with_columns(missing) if missing else batch
        casts = {c: t for c, t in SCHEMA.items()
                 if df.schema[c] != t and not (c == "languages" and df.schema[c] == pl.String)}
        if casts:
            df = df.with_columns(pl.col(c).cast(t, strict=False) for c, t in casts.items())
        return df.select(list(SCHEMA))
    return pl.from_dicts(batch, schema=SCHEMA, strict=False)


def to_records(batch: Batch) -> list[Record]:
    """The batch as dicts (backends and steps that still work a record at a time)."""
    if not isinstance(batch, pl.DataFrame):
        return batch
    recs = to_frame(batch).to_dicts()
    for rec in recs:
        if rec.get("aggregate_only") is None:
            rec.pop("aggregate_only", None)
        langs = rec.get("languages")
        if isinstance(langs, str):
            rec["languages"] = orjson.loads(langs)
    return recs


def sql_columns(df: pl.DataFrame) -> list[pl.Expr]:
    """``COLUMNS`` of ``df`` as the store's SQL row holds them: ``languages`` as JSON text
    (encoded once per distinct list), booleans as they are (sqlite3 stores them as 1/0)."""
    out = []
    for c in COLUMNS:
        if c == "languages" and df.schema[c] != pl.String:
            out.append(_languages_json(df))
        else:
            out.append(pl.col(c))
    return out


_SEP = "\x1f"  # never in a language tag


def _languages_json(df: pl.DataFrame) -> pl.Expr:
    joined = pl.col("languages").list.join(_SEP)
    distinct = df.select(joined.unique().alias("j"))["j"].to_list()
    mapping = {j: orjson.dumps(j.split(_SEP) if j else []).decode()
               for j in distinct if j is not None}
    return joined.replace_strict(mapping, default=None, return_dtype=pl.String).alias("languages")
