"""After sessions end, ``| count [by DIM]`` over their time is answered by the aggregates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import log_fixture
from tests.querytools import (
    ELASTIC,
    assert_all_audited,
    client_for,
    ingest,
    query,
    settings_with_tokens,
)

pytestmark = pytest.mark.usefixtures("backend")  # on SQLite and on a Redis Cluster


async def test_counts_come_from_aggregates_once_records_are_gone(tmp_path: Path) -> None:
    settings, tokens = settings_with_tokens(
        tmp_path / "data", {"ship": (["shipper"], None), "sre": (["sre"], None),
                            "sec": (["security"], None)},
        **{"sessions.idle_timeout": "30m"})
    client = await client_for(settings)
    try:
        answer = await ingest(client, log_fixture(ELASTIC).read_bytes(), tokens["ship"])
        assert answer["accepted"] == 9999
        _, live, _ = await query(client, "| count", tokens["sre"])
        kept = live["data"][0]["count"]
        assert 0 < kept < 9999, "the log clock ended most sessions: their records are gone"

        whole = "since 2015-05-17T00:00:00Z until 2015-05-22T00:00:00Z"
        status, body, headers = await query(client, f"{whole} | count", tokens["sec"])
        assert status == 200, body
        assert body["source"] == "aggregates" and headers["X-Lethelog-Source"] == "aggregates"
        assert body["data"][0]["count"] == 9999, "every request was counted before forgetting"
        assert body["columns"] == ["count", "sessions"]

        status, body, _ = await query(client, f"{whole} | count by device_type | sort count "
                                      "desc | limit 3", tokens["sre"])
        assert body["source"] == "aggregates" and len(body["data"]) <= 3
        counts = [r["count"] for r in body["data"]]
        assert counts == sorted(counts, reverse=True) and sum(counts) <= 9999
        assert all(r["sessions"] >= 5 for r in body["data"]), "k-anonymous groups only"

        # the records answer what the aggregates cannot (and what the caller forces)
        status, body, headers = await query(client, f"{whole} | count", tokens["sre"],
                                            source="records")
        assert body["source"] == "records" and body["data"] == [{"count": kept}]
        status, body, _ = await query(client, f"{whole} | count by status", tokens["sre"])
        assert body["source"] == "records", "status is not an aggregate dimension"
        status, body, _ = await query(client, "| count", tokens["sre"])
        assert body["source"] == "records", "no time range: the live records"
        status, body, _ = await query(client, f"status = 200 {whole} | count", tokens["sre"],
                                      source="aggregates")
        assert status == 400 and "aggregates cannot answer" in body["error"]
    finally:
        await client.close()
    assert assert_all_audited(client, tmp_path / "data") == 7
