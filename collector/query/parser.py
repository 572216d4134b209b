"""Recursive-descent parser: tokens → :class:`~collector.query.ast.Query`.

Grammar (also in docs/query.md)::

    query      = [ expr ] { timerange } { "|" stage }
    expr       = term { "or" term }
    term       = factor { "and" factor }
    factor     = "not" factor | "(" expr ")" | comparison
    comparison = FIELD op value
               | FIELD [ "not" ] "in" "(" value { "," value } ")"
    op         = "=" | "!=" | "<" | "<=" | ">" | ">=" | "~" | "^="
    value      = STRING | NUMBER | TIMESTAMP | "true" | "false" | "null" | REGEX
    timerange  = "last" DURATION | "since" TIME | "until" TIME
    stage      = "count" [ "by" names ]
               | "distinct" names
               | ( "p50" | "p95" | "p99" ) NAME [ "by" names ]
               | "sort" NAME [ "asc" | "desc" ] { "," NAME [ "asc" | "desc" ] }
               | "limit" INTEGER
    names      = NAME { "," NAME }

Field types are checked here, at the operand's position: ``status = "x"`` is an error pointing
at ``"x"``, not a query that silently matches nothing.
"""

from __future__ import annotations

import math
from typing import Any

from collector.query import ast
from collector.query.errors import QueryError
from collector.query.fields import BOOL, FIELDS, INT, JSON, NUMERIC, REAL, TEXT, TIME
from collector.query.lexer import (
    DURATION,
    EOF,
    IDENT,
    NUMBER,
    OP,
    PUNCT,
    REGEX,
    STRING,
    TIMESTAMP,
    Token,
    tokenize,
)
from collector.query.regex import compile_regex
from collector.settings import parse_duration
from collector.timefmt import parse_rfc3339

MAX_QUERY_LENGTH = 10_000
MAX_IN_VALUES = 1000
MAX_DEPTH = 32  # nested parentheses and nots
MAX_COMPARISONS = 200
MAX_LIMIT = 1_000_000_000
KEYWORDS = frozenset({
    "and", "or", "not", "in", "last", "since", "until", "by", "count", "distinct", "p50", "p95",
    "p99", "sort", "limit", "asc", "desc", "true", "false", "null",
})
STAGES = "a stage: count, distinct, p50, p95, p99, sort or limit"
TIME_WORDS = ("last", "since", "until")
_ORDERABLE = frozenset({TEXT, INT, REAL, TIME})
_PATTERNABLE = frozenset({TEXT, JSON, INT})


def parse(text: str) -> ast.Query:
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(MAX_QUERY_LENGTH, "query too long",
                         f"at most {MAX_QUERY_LENGTH} characters", f"{len(text)} characters")
    return _Parser(text).query()


def field_list() -> str:
    return ", ".join(FIELDS)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0
        self.comparisons = 0

    # ------------------------------------------------------------------ helpers

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def advance(self) -> Token:
        t = self.toks[self.i]
        if t.kind != EOF:
            self.i += 1
        return t

    def fail(self, expected: str, tok: Token | None = None, message: str = "syntax error"
             ) -> QueryError:
        tok = tok or self.tok
        return QueryError(tok.pos, message, expected, tok.show())

    def punct(self, c: str) -> bool:
        return self.tok.kind == PUNCT and self.tok.text == c

    def expect_punct(self, c: str, expected: str | None = None) -> Token:
        if not self.punct(c):
            raise self.fail(expected or repr(c))
        return self.advance()

    # ------------------------------------------------------------------ query

    def query(self) -> ast.Query:
        node: ast.Node | None = None
        if self.tok.kind != EOF and not self.punct("|") and not self.tok.is_word(*TIME_WORDS):
            node = self.expr()
        since = until = last = None
        while self.tok.is_word(*TIME_WORDS):
            word = self.advance()
            kw = word.text.lower()
            if kw == "last":
                tok = self.advance()
                if tok.kind != DURATION:
                    raise self.fail("a duration like 15m, 2h or 7d", tok)
                last = parse_duration(tok.text.replace("w", "d")) * (7 if "w" in tok.text else 1)
            else:
                value = self.time_value(self.advance())
                if kw == "since":
                    since = value
                else:
                    until = value
        if since is not None and until is not None and until <= since:
            raise QueryError(self.tok.pos, "empty time range", "until after since")
        stages: list[ast.StageAt] = []
        while self.punct("|"):
            self.advance()
            pos = self.tok.pos
            stages.append(ast.StageAt(self.stage(), pos))
        if self.tok.kind != EOF:
            if stages:
                raise self.fail("'|' or end of query")
            if node is None and since is None and until is None and last is None:
                raise self.fail("a comparison like status >= 500, a time range or '|'")
            raise self.fail("'and', 'or', a time range (last, since, until), '|' or end of query")
        return ast.Query(self.text, node, since, until, last, tuple(stages))

    def time_value(self, tok: Token) -> float:
        if tok.kind not in (TIMESTAMP, STRING):
            raise self.fail("an RFC 3339 time like 2015-05-18T10:00:00Z", tok)
        try:
            return parse_rfc3339(tok.text)
        except ValueError:
            raise self.fail("an RFC 3339 time like 2015-05-18T10:00:00Z", tok,
                            "not a valid time") from None

    # ------------------------------------------------------------------ filter

    def expr(self) -> ast.Node:
        items = [self.term()]
        while self.tok.is_word("or"):
            self.advance()
            items.append(self.term())
        return items[0] if len(items) == 1 else ast.Or(tuple(items))

    def term(self) -> ast.Node:
        items = [self.factor()]
        while self.tok.is_word("and"):
            self.advance()
            items.append(self.factor())
        return items[0] if len(items) == 1 else ast.And(tuple(items))

    def factor(self) -> ast.Node:
        if self.tok.is_word("not") or self.punct("("):
            if self.depth >= MAX_DEPTH:
                raise self.fail(f"at most {MAX_DEPTH} nested parentheses or nots",
                                message="filter nested too deeply")
            self.depth += 1
            try:
                if self.advance().text == "(":
                    node = self.expr()
                    self.expect_punct(")", "')', 'and' or 'or'")
                    return node
                return ast.Not(self.factor())
            finally:
                self.depth -= 1
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise self.fail(f"at most {MAX_COMPARISONS} comparisons in a filter",
                            message="filter too long")
        return self.comparison()

    def comparison(self) -> ast.Node:
        tok = self.tok
        if tok.kind != IDENT or tok.text.lower() in KEYWORDS:
            raise self.fail("a field name, 'not' or '('")
        field = FIELDS.get(tok.text)
        if field is None:
            raise self.fail(f"a field name ({field_list()})", tok, "unknown field")
        self.advance()
        negate = False
        if self.tok.is_word("not"):
            self.advance()
            negate = True
            if not self.tok.is_word("in"):
                raise self.fail("'in' after 'not'")
        if self.tok.is_word("in"):
            self.advance()
            self.expect_punct("(", "'(' after 'in'")
            values = [self.value(field.name, field.kind, "in")]
            while self.punct(","):
                self.advance()
                values.append(self.value(field.name, field.kind, "in"))
                if len(values) > MAX_IN_VALUES:
                    raise self.fail(f"at most {MAX_IN_VALUES} values in a list")
            self.expect_punct(")", "',' or ')'")
            node: ast.Node = ast.Cmp(field.name, "in", tuple(values), tok.pos)
            return ast.Not(node) if negate else node
        op = self.tok
        if op.kind != OP:
            raise self.fail("an operator (=, !=, <, <=, >, >=, ~, ^=) or 'in'")
        self.advance()
        value = self.value(field.name, field.kind, op.text)
        return ast.Cmp(field.name, op.text, value, tok.pos)

    def value(self, name: str, kind: str, op: str) -> Any:
        tok = self.advance()
        where = f"{name} {op}"
        if tok.kind == REGEX:
            if op != "~":
                raise self.fail(f"a plain value after {where} (regular expressions go with ~)",
                                tok)
            if kind not in _PATTERNABLE:
                raise self.fail(f"a comparison {name} = value ({name} is {kind})", tok)
            try:
                compile_regex(tok.text)
            except ValueError as exc:
                raise QueryError(tok.pos, f"invalid regular expression ({exc})",
                                 "a valid RE2 regular expression") from None
            return ast.Regex(tok.text)
        if tok.is_word("null"):
            if op not in ("=", "!="):
                raise self.fail(f"a value ({name} {op} null is never true; use = or != null)",
                                tok)
            return None
        if op in ("~", "^="):
            if kind not in _PATTERNABLE:
                raise self.fail(f"a comparison other than {op} ({name} is {kind})", tok)
            if tok.kind not in (STRING, NUMBER, TIMESTAMP):
                raise self.fail(f"a quoted pattern after {where}", tok)
            return tok.text
        if op in ("<", "<=", ">", ">=") and kind not in _ORDERABLE:
            raise self.fail(f"= or != ({name} is {kind})", tok)
        if kind in NUMERIC:
            if tok.kind != NUMBER:
                raise self.fail(f"a number ({name} is a number)", tok)
            number = float(tok.text)
            if not math.isfinite(number):  # 1e309 overflows to infinity
                raise self.fail(f"a finite number ({name} is a number)", tok,
                                "number out of range")
            if kind == INT:  # 500, 5e2
                if abs(number) > 2**62 or number != int(number):
                    raise self.fail(f"an integer ({name} is an integer)", tok)
                return int(number)
            return number
        if kind == REAL:  # pragma: no cover - covered by NUMERIC
            return float(tok.text)
        if kind == TIME:
            return self.time_value(tok)
        if kind == BOOL:
            if not tok.is_word("true", "false"):
                raise self.fail(f"true or false ({name} is a flag)", tok)
            return 1 if tok.text.lower() == "true" else 0
        if tok.kind in (STRING, NUMBER, TIMESTAMP):
            return tok.text
        raise self.fail(f"a quoted string after {where} (write values in double quotes)", tok)

    # ------------------------------------------------------------------ stages

    def name(self) -> ast.Name:
        tok = self.tok
        if tok.kind != IDENT:
            raise self.fail("a field or column name")
        self.advance()
        return ast.Name(tok.text, tok.pos)

    def names(self) -> tuple[ast.Name, ...]:
        out = [self.name()]
        while self.punct(","):
            self.advance()
            out.append(self.name())
        return tuple(out)

    def stage(self) -> ast.Stage:
        tok = self.tok
        word = tok.text.lower() if tok.kind == IDENT else ""
        if word == "count":
            self.advance()
            if self.tok.is_word("by"):
                self.advance()
                return ast.Count(self.names())
            return ast.Count()
        if word == "distinct":
            self.advance()
            return ast.Distinct(self.names())
        if word in ("p50", "p95", "p99"):
            self.advance()
            target = self.name()
            by: tuple[ast.Name, ...] = ()
            if self.tok.is_word("by"):
                self.advance()
                by = self.names()
            return ast.Percentile(int(word[1:]), target, by)
        if word == "sort":
            self.advance()
            keys = [self.sort_key()]
            while self.punct(","):
                self.advance()
                keys.append(self.sort_key())
            return ast.Sort(tuple(keys))
        if word == "limit":
            self.advance()
            n = self.advance()
            if n.kind != NUMBER or not n.text.isdigit() or not 1 <= int(n.text) <= MAX_LIMIT:
                raise self.fail(f"a whole number 1..{MAX_LIMIT}", n)
            return ast.Limit(int(n.text))
        raise self.fail(STAGES)

    def sort_key(self) -> ast.SortKey:
        name = self.name()
        desc = False
        if self.tok.is_word("asc", "desc"):
            desc = self.advance().text.lower() == "desc"
        return ast.SortKey(name.name, desc, name.pos)
