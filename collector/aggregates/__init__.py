"""Anonymous per-minute aggregates that outlive sessions (see docs/aggregates.md).

``counter`` (writer side, in memory), ``schema`` (the one table), ``read`` (k-anonymous
breakdowns and series), ``maintain`` (rollup and retention), ``store_hook`` (what the SQLite
store's writer calls).
"""

from collector.aggregates.read import (
    AggregateQueryError,
    aggregate_counts,
    aggregate_series,
    k_for,
)

__all__ = ["AggregateQueryError", "aggregate_counts", "aggregate_series", "k_for"]
