"""Query → one parameterised SQL statement over the records table.

Safety by construction: every identifier in the SQL comes from the field allowlist
(:mod:`collector.query.fields`) or is a fixed alias built from allowlisted names; every operand
is a bound parameter (``?``); the caller's sites are a ``site IN (...)`` condition inside the
statement itself. Comparisons are two-valued: a comparison against a null field is false
(``!=`` is true), so ``not`` means what it says.

Stages wrap the previous statement as a subquery, so a pipeline is one statement, run by SQLite
in one pass under one time limit. Percentiles use the **nearest-rank** method: the value at
rank ⌈p/100 · n⌉ of the n non-null values sorted ascending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collector.query import ast
from collector.query.errors import QueryError
from collector.query.fields import FIELDS, INT, NUMERIC, RECORD_FIELDS

_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass
class Compiled:
    sql: str
    params: list[Any]
    columns: list[str]
    kinds: dict[str, str]  # column -> field kind, for showing values
    limit: int  # rows asked for (the statement fetches one more to detect truncation)
    start: float | None = None
    end: float | None = None


@dataclass
class _Select:
    """One SELECT under construction; ``source`` is a FROM clause (table or subquery)."""

    columns: list[tuple[str, str]]  # (name, SQL expression)
    kinds: dict[str, str]
    source: str
    where: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    limit: int | None = None
    params: list[Any] = field(default_factory=list)  # in order of appearance in the text

    def sql(self) -> str:
        cols = ", ".join(f'{expr} AS "{name}"' for name, expr in self.columns)
        text = f"SELECT {cols} FROM {self.source}"
        if self.where:
            text += " WHERE " + " AND ".join(self.where)
        if self.group:
            text += " GROUP BY " + ", ".join(self.group)
        if self.order:
            text += " ORDER BY " + ", ".join(self.order)
        if self.limit is not None:
            text += f" LIMIT {int(self.limit)}"
        return text

    def as_source(self) -> tuple[str, dict[str, str]]:
        """This select as a subquery: its FROM text and each column's reference."""
        order = self.order
        if self.limit is None:
            self.order = []  # an order that no limit depends on is work for nothing
        text = f"({self.sql()}) AS t"
        self.order = order
        return text, {name: f't."{name}"' for name, _ in self.columns}


class _Base:
    """The filtered records: conditions over ``records r`` (joined with ``sessions s``)."""

    def __init__(self, where: list[str], params: list[Any], joins: bool) -> None:
        self.where = where
        self.params = params
        self.joins = joins
        self.source = "records r" + (" JOIN sessions s ON s.sid = r.sid" if joins else "")
        self.refs = {name: f.sql for name, f in FIELDS.items()}
        self.kinds = {name: f.kind for name, f in FIELDS.items()}


def _uses_session(q: ast.Query) -> bool:
    names: list[str] = []

    def walk(n: ast.Node | None) -> None:
        if isinstance(n, ast.Cmp):
            names.append(n.field)
        elif isinstance(n, ast.And | ast.Or):
            for i in n.items:
                walk(i)
        elif isinstance(n, ast.Not):
            walk(n.item)

    walk(q.filter)
    if not q.stages or not isinstance(q.stages[0].stage, ast.Count | ast.Distinct
                                      | ast.Percentile):
        return True  # whole records are shown, with their session id
    st = q.stages[0].stage
    if isinstance(st, ast.Count):
        names.extend(n.name for n in st.by)
    elif isinstance(st, ast.Distinct):
        names.extend(n.name for n in st.fields)
    elif isinstance(st, ast.Percentile):
        names.extend(n.name for n in (st.field, *st.by))
    return "session" in names


def _cond(node: ast.Node, params: list[Any]) -> str:
    if isinstance(node, ast.And):
        return "(" + " AND ".join(_cond(i, params) for i in node.items) + ")"
    if isinstance(node, ast.Or):
        return "(" + " OR ".join(_cond(i, params) for i in node.items) + ")"
    if isinstance(node, ast.Not):
        return f"(NOT {_cond(node.item, params)})"
    f = FIELDS[node.field]  # the parser admits allowlisted fields only
    col, v = f.sql, node.value
    nullable = f.name not in ("time", "site", "session")
    if node.op == "=":
        params.append(v)
        return f"({col} IS ?)"
    if node.op == "!=":
        params.append(v)
        return f"({col} IS NOT ?)"
    if node.op == "in":
        params.extend(v)
        expr = f"{col} IN ({', '.join('?' * len(v))})"
    elif node.op in _CMP:
        params.append(v)
        expr = f"{col} {_CMP[node.op]} ?"
    elif node.op == "^=":
        params.extend([len(v), v])
        expr = f"substr({col}, 1, ?) = ?"
    elif node.op == "~" and isinstance(v, ast.Regex):
        params.append(v.pattern)
        expr = f"regexp(?, {col})"
    elif node.op == "~":
        params.append(v)
        expr = f"{col} GLOB ?"
    else:  # pragma: no cover - the parser knows no other operator
        raise QueryError(node.pos, f"unknown operator {node.op}")
    return f"coalesce({expr}, 0)" if nullable else f"({expr})"


def compile_query(q: ast.Query, *, sites: frozenset[str] | None, now: float, max_rows: int,
                  ) -> Compiled:
    """The statement for ``q`` as seen by a caller limited to ``sites`` (``None``: all)."""
    params: list[Any] = []
    where: list[str] = []
    if sites is not None:
        if sites:
            where.append(f"r.site IN ({', '.join('?' * len(sites))})")
            params.extend(sorted(sites))
        else:
            where.append("0")
    start, end = q.bounds(now)
    if start is not None:
        where.append("r.time >= ?")
        params.append(start)
    if end is not None:
        where.append("r.time < ?")
        params.append(end)
    if q.filter is not None:
        where.append(_cond(q.filter, params))
    base = _Base(where, params, _uses_session(q))

    current: _Select | None = None
    for at in q.stages:
        st = at.stage
        if isinstance(st, ast.Sort):
            current = current or _records(base)
            if current.limit is not None:
                current = _wrap(current)
            refs = dict(current.columns)
            order = []
            for key in st.keys:
                if key.column not in refs:
                    raise QueryError(key.pos, "unknown column", _one_of(refs), key.column)
                order.append(f'"{key.column}"{" DESC" if key.descending else ""}')
            current.order = order
        elif isinstance(st, ast.Limit):
            current = current or _records(base)
            current.limit = st.n if current.limit is None else min(current.limit, st.n)
        else:
            current = _aggregate(st, base if current is None else current, at.pos)
    current = current or _records(base)
    wanted = max_rows if current.limit is None else min(current.limit, max_rows)
    current.limit = wanted + 1
    return Compiled(current.sql(), current.params, [n for n, _ in current.columns],
                    dict(current.kinds), wanted, start, end)


def _one_of(refs: dict[str, Any]) -> str:
    return "one of " + ", ".join(refs)


def _records(base: _Base) -> _Select:
    cols = [(name, base.refs[name]) for name in RECORD_FIELDS if base.joins or name != "session"]
    return _Select(cols, {n: base.kinds[n] for n, _ in cols}, base.source, list(base.where),
                   order=["r.time DESC", "r.rid DESC"], params=list(base.params))


def _wrap(sel: _Select) -> _Select:
    source, refs = sel.as_source()
    return _Select([(n, refs[n]) for n, _ in sel.columns], dict(sel.kinds), source,
                   params=list(sel.params))


def _inputs(prev: _Base | _Select) -> tuple[str, dict[str, str], dict[str, str], list[str],
                                             list[Any]]:
    if isinstance(prev, _Base):
        return prev.source, prev.refs, prev.kinds, list(prev.where), list(prev.params)
    source, refs = prev.as_source()
    return source, refs, prev.kinds, [], list(prev.params)


def _resolve(names: tuple[ast.Name, ...], refs: dict[str, str]) -> list[str]:
    seen: set[str] = set()
    for n in names:
        if n.name not in refs:
            raise QueryError(n.pos, "unknown field" if n.name not in FIELDS else
                             "column not available at this stage", _one_of(refs), n.name)
        if n.name in seen:
            raise QueryError(n.pos, "column named twice", "a different column", n.name)
        seen.add(n.name)
    return [n.name for n in names]


def _aggregate(st: ast.Stage, prev: _Base | _Select, pos: int) -> _Select:
    source, refs, kinds, where, params = _inputs(prev)
    if isinstance(st, ast.Count):
        by = _resolve(st.by, refs)
        cols = [(n, refs[n]) for n in by] + [("count", "count(*)")]
        out = {n: kinds[n] for n in by} | {"count": INT}
        order = ['"count" DESC', *(f'"{n}"' for n in by)]
        return _Select(cols, out, source, where, group=[refs[n] for n in by], order=order,
                       params=params)
    if isinstance(st, ast.Distinct):
        names = _resolve(st.fields, refs)
        cols = [(n, refs[n]) for n in names]
        return _Select(cols, {n: kinds[n] for n in names}, source, where,
                       group=[refs[n] for n in names], order=[f'"{n}"' for n in names],
                       params=params)
    if isinstance(st, ast.Percentile):
        (target,) = _resolve((st.field,), refs)
        if kinds[target] not in NUMERIC:
            raise QueryError(st.field.pos, f"p{st.p} needs a number", "a numeric column",
                             f"{target} ({kinds[target]})")
        by = _resolve(st.by, refs)
        if target in by:
            raise QueryError(st.field.pos, "column named twice", "a different column", target)
        part = f"PARTITION BY {', '.join(refs[n] for n in by)} " if by else ""
        inner_cols = [(n, refs[n]) for n in by] + [
            ("v", refs[target]),
            ("rn", f"row_number() OVER ({part}ORDER BY {refs[target]})"),
            ("n", f"count(*) OVER ({part.strip()})" if part else "count(*) OVER ()"),
        ]
        inner = _Select(inner_cols, {}, source, [*where, f"{refs[target]} IS NOT NULL"],
                        params=params)
        name = f"p{st.p}_{target}"
        cols = [(n, f't."{n}"') for n in by] + [(name, 't."v"'), ("count", 't."n"')]
        out = {n: kinds[n] for n in by} | {name: kinds[target], "count": INT}
        return _Select(cols, out, f"({inner.sql()}) AS t",
                       ['(t."rn" = (? * t."n" + 99) / 100)'],
                       order=[f'"{n}"' for n in by], params=[*inner.params, st.p])
    raise QueryError(pos, "unknown stage")  # pragma: no cover

