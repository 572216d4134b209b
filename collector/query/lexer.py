"""Tokens of the query language, each with its position in the text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from collector.query.errors import QueryError

IDENT, STRING, REGEX, NUMBER, DURATION, TIMESTAMP, OP, PUNCT, WORD, EOF = (
    "identifier", "string", "regex", "number", "duration", "timestamp", "operator",
    "punctuation", "bare word", "end of query")

_SPACE = re.compile(r"\s+")
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[Tt]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?"
    r"(?![\w:.-])")
_DURATION = re.compile(r"\d+(?:\.\d+)?(?:ms|s|m|h|d|w)(?![\w.:])")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.:])")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?![^\s()|,=<>!~^\"'])")
_WORD = re.compile(r"[^\s()|,=<>!~^\"']+")
_OPS = ("!=", "<=", ">=", "^=", "==", "=", "<", ">", "~")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "/": "/"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str  # the value (strings unescaped)
    pos: int
    source: str  # the text as written

    def is_word(self, *words: str) -> bool:
        return self.kind == IDENT and self.text.lower() in words

    def show(self) -> str:
        if self.kind == EOF:
            return "end of query"
        return repr(self.source)


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        m = _SPACE.match(text, i)
        if m:
            i = m.end()
            continue
        c = text[i]
        if c in "\"'" or (c in "rR" and i + 1 < n and text[i + 1] in "\"'"):
            raw = c in "rR"
            value, end = _string(text, i + 1 if raw else i, raw)
            out.append(Token(REGEX if raw else STRING, value, i, text[i:end]))
            i = end
            continue
        if c == "/" and out and out[-1].kind == OP and out[-1].text == "~":
            value, end = _regex_literal(text, i)
            out.append(Token(REGEX, value, i, text[i:end]))
            i = end
            continue
        for kind, rx in ((TIMESTAMP, _TIMESTAMP), (DURATION, _DURATION), (NUMBER, _NUMBER)):
            m = rx.match(text, i)
            if m:
                out.append(Token(kind, m.group(0), i, m.group(0)))
                i = m.end()
                break
        else:
            m = _IDENT.match(text, i)
            if m:
                out.append(Token(IDENT, m.group(0), i, m.group(0)))
                i = m.end()
                continue
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is not None:
                out.append(Token(OP, "=" if op == "==" else op, i, op))
                i += len(op)
                continue
            if c in "(),|":
                out.append(Token(PUNCT, c, i, c))
                i += 1
                continue
            m = _WORD.match(text, i)
            if m:  # e.g. an unquoted address or path: the parser says to quote it
                out.append(Token(WORD, m.group(0), i, m.group(0)))
                i = m.end()
                continue
            raise QueryError(i, "unexpected character",
                             "a field, a value, an operator, '(', ')', ',' or '|'", repr(c))
    out.append(Token(EOF, "", n, ""))
    return out


def _string(text: str, start: int, raw: bool) -> tuple[str, int]:
    quote = text[start]
    buf: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(buf), i + 1
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if raw:
                buf.append(nxt if nxt == quote else c + nxt)
            else:
                buf.append(_ESCAPES.get(nxt, c + nxt))
            i += 2
            continue
        buf.append(c)
        i += 1
    raise QueryError(start, "unterminated string", f"a closing {quote}", "end of query")


def _regex_literal(text: str, start: int) -> tuple[str, int]:
    buf: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "/":
            return "".join(buf), i + 1
        if c == "\\" and i + 1 < len(text):
            buf.append("/" if text[i + 1] == "/" else c + text[i + 1])
            i += 2
            continue
        buf.append(c)
        i += 1
    raise QueryError(start, "unterminated regular expression", "a closing /", "end of query")
