"""The query language on its own: what parses, what each mistake says, and where it points."""

from __future__ import annotations

import time

import pytest

from collector.query import QueryError, compile_query, parse
from collector.query import ast as q


def error(text: str) -> QueryError:
    with pytest.raises(QueryError) as info:
        parse(text)
    return info.value


def test_the_issue_example_parses() -> None:
    text = 'status >= 500 and path ^= "/api" last 15m | p95 request_time by path_template'
    got = parse(text)
    assert got.filter == q.And((q.Cmp("status", ">=", 500, 0),
                                q.Cmp("path", "^=", "/api", text.index("path"))))
    assert got.last == 900
    (stage,) = got.stages
    assert stage.stage == q.Percentile(95, q.Name("request_time", text.index("request_time")),
                                       (q.Name("path_template", text.index("path_t")),))


def test_precedence_not_binds_tighter_than_and_than_or() -> None:
    got = parse('not status = 200 and method = "GET" or is_bot = true')
    assert isinstance(got.filter, q.Or)
    first, second = got.filter.items
    assert isinstance(first, q.And) and isinstance(first.items[0], q.Not)
    assert second == q.Cmp("is_bot", "=", 1, 39)
    grouped = parse('not (status = 200 and (method = "GET" or method = "HEAD"))')
    assert isinstance(grouped.filter, q.Not) and isinstance(grouped.filter.item, q.And)


@pytest.mark.parametrize(("text", "value"), [
    ('path ~ "/a/*"', "/a/*"),
    ("path ~ /^\\/a\\/[0-9]+$/", q.Regex("^/a/[0-9]+$")),
    ('path ~ r"^/a/\\d+"', q.Regex("^/a/\\d+")),
    ("country = null", None),
    ("request_time > 0.25", 0.25),
    ("status = 5e2", 500),
    ("is_bot = false", 0),
    ("time >= 2015-05-18T10:00:00+02:00", 1431936000.0),
    ('browser_version ^= "1"', "1"),
])
def test_values(text: str, value: object) -> None:
    node = parse(text).filter
    assert isinstance(node, q.Cmp)
    assert node.value == value


def test_time_ranges_and_stages() -> None:
    got = parse("since 2015-05-18 until 2015-05-19T00:00:00Z last 2h "
                "| count by status, method | sort count desc, status | limit 10")
    assert got.since == 1431907200.0 and got.until == 1431993600.0 and got.last == 7200
    assert [type(s.stage) for s in got.stages] == [q.Count, q.Sort, q.Limit]
    assert got.bounds(now=1431990000.0) == (1431990000.0 - 7200, 1431993600.0)
    assert parse("last 1w").last == 7 * 86400
    assert parse("").filter is None and parse("| count").stages[0].stage == q.Count()


@pytest.mark.parametrize(("text", "position", "expected"), [
    ("status >= ", 10, "a number"),
    ("status >= 500 and", 17, "a field name"),
    ("statsu = 500", 0, "a field name (time, ip"),
    ('status = "500"', 9, "a number (status is a number)"),
    ('path = /api', 7, "a quoted string after path ="),
    ("status = 500 | cont by path", 15, "a stage: count, distinct"),
    ("(status = 500", 13, "')', 'and' or 'or'"),
    ("status 500", 7, "an operator"),
    ('path = "/a" status = 1', 12, "'and', 'or', a time range"),
    ("last soon", 5, "a duration like 15m"),
    ("since yesterday", 6, "an RFC 3339 time"),
    ("since 2015-13-45", 6, "an RFC 3339 time"),
    ("| limit 0", 8, "a whole number"),
    ("| count | limit x", 16, "a whole number"),
    ('path ~ /(unclosed/', 7, None),
    ('path ~ "x', 7, "a closing \""),
    ("status in (200, 'x')", 16, "a number"),
    ("is_bot > true", 9, "= or !="),
    ("time ~ /1/", 7, "a comparison time = value"),
    ("status > null", 9, "a value"),
    ("status = 1 $", 11, "'and', 'or'"),
    ("status = 1 & 2", 11, "'and', 'or'"),
])
def test_errors_point_at_the_mistake(text: str, position: int, expected: str | None) -> None:
    err = error(text)
    assert err.position == position, str(err)
    if expected is not None:
        assert err.expected is not None and err.expected.startswith(expected), str(err)
    assert f"at position {position}" in str(err)
    body = err.to_json(text)
    assert body["pointer"] == " " * position + "^" and body["column"] == position + 1


def test_errors_never_repeat_an_address() -> None:
    err = error("ip = 85.181.35.98")
    assert "85.181.35.98" not in str(err) and "85.181.35.0" in str(err)
    body = err.to_json("ip = 85.181.35.98")
    assert "85.181.35.98" not in str(body)
    err = error("ip = 2001:db8:85a3:8d3:1319:8a2e:370:7348")
    assert "7348" not in str(err.to_json("ip = 2001:db8:85a3:8d3:1319:8a2e:370:7348"))


def test_stage_columns_are_checked_when_compiling() -> None:
    now = time.time()
    for text, position in [("| count by status | sort path", 25),
                           ("| count by nope", 11),
                           ("| p95 path", 6),
                           ("| count by status, status", 19),
                           ("| distinct status | p95 bytes", 24)]:
        with pytest.raises(QueryError) as info:
            compile_query(parse(text), sites=None, now=now, max_rows=10)
        assert info.value.position == position, (text, str(info.value))


def test_operands_are_parameters_never_sql_text() -> None:
    hostile = "x' OR '1'='1\"; DROP TABLE records; --"
    parsed = parse(f'path = "{hostile.replace(chr(34), chr(92) + chr(34))}" | count')
    compiled = compile_query(parsed, sites=frozenset({"a'b"}), now=0.0, max_rows=10)
    assert hostile in compiled.params and "a'b" in compiled.params
    assert "DROP" not in compiled.sql and "a'b" not in compiled.sql
    assert compiled.sql.count("?") == len(compiled.params)


def test_site_scope_is_in_the_sql() -> None:
    compiled = compile_query(parse("| count"), sites=frozenset({"shop", "blog"}), now=0.0,
                             max_rows=10)
    assert "r.site IN (?, ?)" in compiled.sql and compiled.params[:2] == ["blog", "shop"]
    nothing = compile_query(parse("| count"), sites=frozenset(), now=0.0, max_rows=10)
    assert "WHERE 0" in nothing.sql
    everything = compile_query(parse("| count"), sites=None, now=0.0, max_rows=10)
    assert "site" not in everything.sql


def test_deep_or_long_filters_are_refused_not_crashed() -> None:
    deep = "(" * 40 + "status = 1" + ")" * 40
    assert error(deep).position == 32 and "nested" in str(error(deep))
    nots = "not " * 40 + "status = 1"
    assert error(nots).position == 128
    long = " or ".join(["status = 1"] * 201)
    assert error(long).position == len(" or ".join(["status = 1"] * 200)) + 4
    fine = parse(" or ".join(["status = 1"] * 200) + " | count")
    compile_query(fine, sites=None, now=0, max_rows=1)
