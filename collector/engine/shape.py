"""The last stage: the stored columns only (the raw address and raw fields cannot pass it)."""

from __future__ import annotations

import polars as pl

from collector.engine.batch import OUT_SCHEMA, empty_rejects
from collector.engine.stage import Batch

__all__ = ["Shape"]

_DASH_IS_NULL = frozenset(("method", "host", "protocol"))


class Shape:
    """Build the stored batch: exactly :data:`~collector.engine.batch.OUT_SCHEMA`'s columns."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, batch: Batch) -> tuple[Batch, pl.DataFrame]:
        df = batch.frame
        exprs: list[pl.Expr] = []
        for name, dtype in OUT_SCHEMA.items():
            if name == "source":
                exprs.append(pl.lit(batch.source or self.source, dtype=pl.String).alias(name))
                continue
            col = pl.col(name) if name in df.columns else pl.lit(None, dtype=dtype)
            if name == "aggregate_only":
                col = col.fill_null(False)
            elif dtype == pl.String:
                # unknown is null, never an empty-string guess
                empty = col == ""
                if name in _DASH_IS_NULL:
                    empty = empty | (col == "-")
                col = pl.when(empty).then(None).otherwise(col)
            exprs.append(col.cast(dtype).alias(name))
        return batch.with_frame(df.select(exprs)), empty_rejects()
