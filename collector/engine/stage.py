"""The unit of the columnar chain: a batch with the context of its shipper, and the stage type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import polars as pl

__all__ = ["Batch", "Stage"]


@dataclass(frozen=True, slots=True)
class Batch:
    """A raw (then progressively shaped) batch of one shipper.

    ``source``: the shipper's name (None: the chain's default); ``sites``: the sites the shipper
    may write to (None: any site).
    """

    frame: pl.DataFrame
    source: str | None = None
    sites: frozenset[str] | None = None

    def with_frame(self, frame: pl.DataFrame) -> Batch:
        return replace(self, frame=frame)


# One stage: the batch in, the batch out (rows rejected or dropped removed) and the rejects
# as a frame of (line, reason).
Stage = Callable[[Batch], tuple[Batch, pl.DataFrame]]
