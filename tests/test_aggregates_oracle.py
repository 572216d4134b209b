"""The aggregate table the real service writes equals the independent oracle's, end to end.

The sample log (10,000 real lines of 2015) goes through ``POST /v1/logs`` into a real SQLite
store — parser, masking, enrichment, sessions, the store's writer and its aggregates — with a
long idle timeout, so every record stays and the oracle (``tests/agg_reference.py``, written
from the documented rules) can recount the whole table from the stored records in the order
they were written. No rollup (``minute_retention`` beyond the log's span).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from collector.aggregates.schema import COUNTERS, SCHEMA
from tests.agg_reference import Aggregator as Reference
from tests.agg_reference import mismatches
from tests.conftest import log_fixture
from tests.querytools import LONG_IDLE, client_for, ingest
from tests.service import make_settings

KEEP = {"aggregates.minute_retention": "3650d", "aggregates.retention": "3650d",
        "aggregates.k_anonymity": "5"}
ROWS = f"SELECT t, res, site, dim, value, {', '.join(COUNTERS)} FROM agg"


def _ship(data: Path, batch_lines: int | None) -> int:
    lines = log_fixture("elastic-examples_apache_logs").read_bytes().splitlines(keepends=True)
    batches = [lines] if batch_lines is None else [
        lines[i:i + batch_lines] for i in range(0, len(lines), batch_lines)]

    async def run() -> int:
        client = await client_for(make_settings(data, **{**LONG_IDLE, **KEEP}))
        try:
            accepted = 0
            for batch in batches:
                accepted += (await ingest(client, b"".join(batch)))["accepted"]
            return accepted
        finally:
            await client.close()

    return asyncio.run(run())


@pytest.mark.parametrize("batch_lines", [None, 997], ids=["one-request", "batches-of-997"])
def test_service_rows_equal_the_oracle(tmp_path: Path, batch_lines: int | None) -> None:
    data = tmp_path / "data"
    assert _ship(data, batch_lines) == 9999
    conn = sqlite3.connect(data / "lethelog.db")
    conn.row_factory = sqlite3.Row
    try:
        records: list[dict[str, Any]] = [
            dict(r) for r in conn.execute("SELECT * FROM records ORDER BY rid")]
        got = [tuple(r) for r in conn.execute(ROWS)]
    finally:
        conn.close()
    assert len(records) == 9999
    oracle = Reference(k=5)
    oracle.add(records, [r["sid"] for r in records])
    mem = sqlite3.connect(":memory:")
    for stmt in SCHEMA:
        mem.execute(stmt)
    oracle.flush(mem, 0.0)
    want = [tuple(r) for r in mem.execute(ROWS)]
    assert len(want) > 10_000 and {r[1] for r in got} == {60}
    bad = mismatches(got, want)
    assert bad == [], "\n".join(bad[:20])
    by_col = dict(zip(COUNTERS, zip(*(r[5:] for r in want), strict=True), strict=True))
    for col in ("sessions_new", "sessions_active", "s4xx", "bots", "paths_4xx", "targets_4xx"):
        assert sum(by_col[col]) > 0, col  # the real log exercises each
    assert any(r[3] == "path_template" and r[4] == "other" for r in want)
