"""Acceptance: queries over the real log give the answers plain Python gives over the file.

The store is filled once per module through ``POST /v1/logs`` (idle timeout 10 years, so every
session stays live); each answer is computed independently from the raw lines. Percentiles are
nearest-rank on both sides (``tests.querytools.nearest_rank``).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from collector.audit import verify
from collector.timefmt import parse_rfc3339
from masking.url import UrlScrubber, path_template
from tests.conftest import log_fixture
from tests.querytools import (
    ELASTIC,
    LONG_IDLE,
    Line,
    assert_all_audited,
    build_elastic_store,
    client_for,
    copy_store,
    nearest_rank,
    query,
    read_combined,
    settings_with_tokens,
)

pytestmark = pytest.mark.usefixtures("backend")  # on SQLite and on a Redis Cluster


@pytest.fixture(scope="module")
def elastic_store(tmp_path_factory: pytest.TempPathFactory, backend: Any
                  ) -> tuple[Path, list[Line]]:
    data = tmp_path_factory.mktemp("elastic") / "data"
    answer = build_elastic_store(data)
    assert answer["accepted"] == 9999
    rejected = [e["line"] for e in answer["errors"]]
    lines = read_combined(log_fixture(ELASTIC), skip=rejected)
    assert len(lines) == answer["accepted"], "the independent reading sees the same lines"
    return data, lines


@pytest.fixture
async def sre(elastic_store: tuple[Path, list[Line]], tmp_path: Path
              ) -> AsyncIterator[tuple[TestClient[Any, Any], str, Path]]:
    data = copy_store(elastic_store[0], tmp_path / "data")
    settings, tokens = settings_with_tokens(data, {"alice": (["sre"], None)}, **LONG_IDLE)
    client = await client_for(settings)
    try:
        yield client, tokens["alice"], data
    finally:
        await client.close()
    assert assert_all_audited(client, data) > 0, "every query of the test is in the audit log"


def rows_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert body["source"] == "records"
    data: list[dict[str, Any]] = body["data"]
    return data


def template(target: str) -> str | None:
    return path_template(UrlScrubber().target(target)[0])


async def test_count_by_status(sre: Any, elastic_store: Any) -> None:
    client, token, _ = sre
    status, body, headers = await query(client, "| count by status", token)
    assert status == 200, body
    assert headers["X-Lethelog-Source"] == "records"
    want = Counter(line.status for line in elastic_store[1])
    assert {r["status"]: r["count"] for r in rows_of(body)} == dict(want)
    counts = [r["count"] for r in body["data"]]
    assert counts == sorted(counts, reverse=True), "most frequent first"


async def test_count_by_path_template(sre: Any, elastic_store: Any) -> None:
    client, token, _ = sre
    status, body, _ = await query(client, "| count by path_template", token)
    assert status == 200, body
    want = Counter(template(line.target) for line in elastic_store[1])
    assert len(want) > 1000
    assert {r["path_template"]: r["count"] for r in rows_of(body)} == dict(want)


async def test_distinct_sessions(sre: Any, elastic_store: Any) -> None:
    client, token, _ = sre
    lines = elastic_store[1]
    want = len({(line.ip, line.agent) for line in lines})
    status, body, _ = await query(client, "| distinct session | count", token)
    assert status == 200, body
    assert rows_of(body) == [{"count": want}]
    status, body, _ = await query(client, "| distinct session", token)
    assert len(rows_of(body)) == want
    assert len({r["session"] for r in body["data"]}) == want


async def test_p95_bytes_by_status(sre: Any, elastic_store: Any) -> None:
    client, token, _ = sre
    by_status: dict[int, list[float]] = {}
    for line in elastic_store[1]:
        if line.bytes is not None:
            by_status.setdefault(line.status, []).append(line.bytes)
    for p in (50, 95, 99):
        status, body, _ = await query(client, f"| p{p} bytes by status", token)
        assert status == 200, body
        got = {r["status"]: (r[f"p{p}_bytes"], r["count"]) for r in rows_of(body)}
        want = {s: (nearest_rank(v, p), len(v)) for s, v in by_status.items()}
        assert got == want, p
    status, body, _ = await query(client, "| p95 bytes", token)
    everything = [float(line.bytes) for line in elastic_store[1] if line.bytes is not None]
    assert rows_of(body) == [{"p95_bytes": nearest_rank(everything, 95),
                              "count": len(everything)}]


async def test_time_range(sre: Any, elastic_store: Any) -> None:
    client, token, _ = sre
    lo, hi = "2015-05-18T00:00:00Z", "2015-05-19T06:30:00Z"
    a, b = parse_rfc3339(lo), parse_rfc3339(hi)
    inside = [line for line in elastic_store[1] if a <= line.time < b]
    assert 0 < len(inside) < len(elastic_store[1])
    status, body, _ = await query(client, f"since {lo} until {hi} | count by status", token)
    assert status == 200, body
    assert {r["status"]: r["count"] for r in rows_of(body)} == dict(
        Counter(line.status for line in inside))
    # quoted times and time comparisons in the filter agree with since/until
    status, body, _ = await query(client, f'time >= "{lo}" and time < "{hi}" | count', token)
    assert rows_of(body) == [{"count": len(inside)}]
    # "last" counts back from now: the 2015 log is older than any recent window
    status, body, _ = await query(client, "last 1h | count", token)
    assert rows_of(body) == [{"count": 0}]


async def test_filters_agree_with_python(sre: Any, elastic_store: Any) -> None:
    client, token, _ = sre
    lines: list[Line] = elastic_store[1]

    def path(line: Line) -> str:
        return UrlScrubber().target(line.target)[0] or ""

    cases: list[tuple[str, Any]] = [
        ('status >= 400 and path ^= "/presentations"',
         lambda x: x.status >= 400 and path(x).startswith("/presentations")),
        ('method in ("HEAD", "POST") or status = 206',
         lambda x: x.method in ("HEAD", "POST") or x.status == 206),
        ('not (status = 200) and not method = "GET"',
         lambda x: x.status != 200 and x.method != "GET"),
        ('path ~ "/images/*.png"', lambda x: fnmatch.fnmatchcase(path(x), "/images/*.png")),
        (r'path ~ /^\/blog\/.*tag/', lambda x: re.search(r"^/blog/.*tag", path(x)) is not None),
        ('status != 200 and bytes > 10000', lambda x: x.status != 200 and (x.bytes or 0) > 10000),
        ('status not in (200, 304)', lambda x: x.status not in (200, 304)),
    ]
    for text, pred in cases:
        status, body, _ = await query(client, f"{text} | count", token)
        assert status == 200, (text, body)
        want = sum(1 for line in lines if pred(line))
        assert want > 0, text
        assert rows_of(body) == [{"count": want}], text


async def test_pipeline_sort_limit_and_formats(sre: Any, elastic_store: Any) -> None:
    client, token, _ = sre
    lines: list[Line] = elastic_store[1]
    want = Counter(line.status for line in lines)
    status, body, _ = await query(client, "| count by status | sort status desc | limit 3",
                                  token)
    assert [r["status"] for r in rows_of(body)] == sorted(want, reverse=True)[:3]
    # NDJSON (the default) and CSV carry the same rows
    status, text, headers = await query(client, "| count by status", token, fmt="ndjson")
    assert headers["Content-Type"].startswith("application/x-ndjson")
    assert {r["status"]: r["count"] for r in map(orjson.loads, text.splitlines())} == dict(want)
    status, text, headers = await query(client, "| count by status", token, fmt="csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert {int(r["status"]): int(r["count"]) for r in table} == dict(want)
    # whole records, newest first, with their session id and never the key
    _, body, _ = await query(client, 'status = 404 | limit 5', token)
    recs = rows_of(body)
    assert len(recs) == 5 and body["truncated"] is True
    assert all(r["status"] == 404 and r["session"] and "session_key" not in r for r in recs)
    times = [r["time"] for r in recs]
    assert times == sorted(times, reverse=True)
    newest_404 = max(line.time for line in lines if line.status == 404)
    assert parse_rfc3339(times[0]) == newest_404


async def test_max_rows_cuts_with_a_note(elastic_store: Any, tmp_path: Path) -> None:
    data = copy_store(elastic_store[0], tmp_path / "data")
    settings, tokens = settings_with_tokens(data, {"bob": (["sre"], None)},
                                            **LONG_IDLE, **{"query.max_rows": "7"})
    client = await client_for(settings)
    try:
        status, body, headers = await query(client, "| count by path_template", tokens["bob"])
        assert status == 200
        assert len(body["data"]) == 7 and body["truncated"] is True
        assert headers["X-Lethelog-Truncated"] == "true"
    finally:
        await client.close()
    assert assert_all_audited(client, data) == 1


async def test_every_query_is_audited(sre: Any) -> None:
    client, token, data = sre
    asked = ["| count by status", 'path ^= "/blog" | count', "status >= | oops",
             'ip = "83.149.9.216" | count']
    for q in asked:
        await query(client, q, token)
    entries = [orjson.loads(x) for x in (data / "audit.log").read_bytes().splitlines()]
    assert [e["query"] for e in entries] == [*asked[:3], 'ip = "83.149.9.0" | count']
    assert [e["outcome"] for e in entries] == ["ok", "ok", "rejected", "ok"]
    assert all(e["token"] == "alice" and e["role"] == "sre" and e["endpoint"] == "/v1/query"
               for e in entries)
    assert entries[0]["rows"] == 8 and entries[2]["rows"] == 0
    assert verify(data / "audit.log").ok
    raw = (data / "audit.log").read_bytes()
    assert b"83.149.9.216" not in raw, "an address typed into a query is kept truncated"
