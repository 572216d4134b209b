"""Addresses out of query text (the audit log, error messages) by parsing, not by pattern.

The text is tokenised with the query language's own lexer (``collector.query.lexer``); every
literal (quoted string, bare word, number) that parses as an address in any spelling
(``masking.textaddr``: dotted, zero-padded, octal, hexadecimal, IPv6 in any form, bracketed,
with a port, percent-encoded, IPv6 forms that carry an IPv4 address) is truncated like a stored
record's address (IPv4 /24, IPv6 /48). A bare integer is read as an address when it is compared
with an address field (``ip``, ``host``, ``referrer``), or when it is compared with a text field
and lies in 1.0.0.0–255.255.255.255. A regular-expression literal that could match a specific
address (it spells three numeric parts of an IPv4 address, two groups of an IPv6 address, a long
digit run, or an address once its escapes are undone) is replaced by ``[regex]``.

Text the lexer cannot read (a rejected query, request parameters) is masked as free text, with
every 8–10 digit number in the IPv4 range read as an address too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from masking.ip import IPMasker
from masking.textaddr import TextMasker, find_addresses, parse_host

if TYPE_CHECKING:
    from collector.query.lexer import Token

__all__ = ["REGEX_PLACEHOLDER", "redact_addresses", "regex_could_match_address"]

REGEX_PLACEHOLDER = "[regex]"
_masker = IPMasker(24, 48)
_text = TextMasker(_masker.mask_packed)
_ADDRESS_FIELDS = frozenset({"ip", "host", "referrer", "client", "network"})
_UNESCAPE = re.compile(r"\\x2[eE]|\\x3[aA]|\\u002[eE]|\\u003[aA]|\[\.\]|\[:\]|\\[.:]|\\\\")
_NOISE = re.compile(r"\(\?[:=!P<>a-zA-Z]*|[()^$]|\\[bBAZ]")
_V4_PARTS = re.compile(r"(?<![0-9])[0-9]{1,3}[^0-9A-Za-z]{1,6}[0-9]{1,3}[^0-9A-Za-z]{1,6}"
                       r"[0-9]{1,3}(?![0-9])")
_V6_GROUPS = re.compile(r"[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{0,4}:|::[0-9A-Fa-f]{1,4}"
                        r"|[0-9A-Fa-f]{3,4}:[0-9A-Fa-f]{3,4}")
_LONG_DIGITS = re.compile(r"[0-9]{7,}")
_BARE_NUMBER = re.compile(r"(?<![\w.])[0-9]{8,10}(?![\w.])")


def regex_could_match_address(rx: str) -> bool:
    """Whether a regular expression could single out an address (errs on the side of yes)."""
    plain = _UNESCAPE.sub(lambda m: "." if "." in m.group(0) or "e" in m.group(0).lower()
                          else (":" if ":" in m.group(0) or "a" in m.group(0).lower()
                                else "\\"), rx)
    plain = _NOISE.sub("", plain)
    if find_addresses(plain) or find_addresses(plain.replace("\\", "")):
        return True
    return bool(_V4_PARTS.search(plain) or _V6_GROUPS.search(plain)
                or _LONG_DIGITS.search(plain))


def _number_is_address(value: str) -> bool:
    try:
        n = int(value)
    except ValueError:
        return False
    return 1 << 24 <= n < 1 << 32


def _literal(value: str, hostlike: bool) -> str:
    if "://" in value:
        return _text.url(value)
    if hostlike:
        return _text.host(value)
    if parse_host(value) is not None and not value.isdigit():
        return _text.host(value)  # a whole literal in an inet_aton form (203.29011, 0xcb007153)
    return _text.text(value)


def _quote(value: str, quote: str) -> str:
    return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def _field_before(tokens: list[Token], i: int) -> str | None:
    """The field a literal is compared with: the identifier before the operator (or ``in``)
    before it, skipping a list's parentheses, commas and other literals."""
    from collector.query.lexer import IDENT, NUMBER, OP, PUNCT, STRING, WORD

    j = i - 1
    while j >= 0 and ((tokens[j].kind == PUNCT and tokens[j].text in "(,")
                      or tokens[j].kind in (STRING, WORD, NUMBER)):
        j -= 1
    if j >= 1 and (tokens[j].kind == OP or tokens[j].is_word("in")) \
            and tokens[j - 1].kind == IDENT:
        return tokens[j - 1].text.lower()
    return None


def redact_addresses(text: str) -> str:
    """``'ip = "85.181.35.98"'`` → ``'ip = "85.181.35.0"'``; ``path ~ /85\\.181\\.35\\.98/`` →
    ``path ~ [regex]``."""
    if not text:
        return text
    from collector.query.errors import QueryError
    from collector.query.lexer import EOF, NUMBER, REGEX, STRING, WORD, tokenize

    try:
        tokens = tokenize(text)
    except QueryError:
        return _free_text(text)
    from collector.query.fields import FIELDS, NUMERIC

    out: list[str] = []
    last = 0
    for i, tok in enumerate(tokens):
        if tok.kind == EOF:
            break
        out.append(text[last:tok.pos])
        last = tok.pos + len(tok.source)
        source = tok.source
        if tok.kind == REGEX:
            source = REGEX_PLACEHOLDER if regex_could_match_address(tok.text) else source
        elif tok.kind in (STRING, WORD, NUMBER):
            field = _field_before(tokens, i)
            hostlike = field in _ADDRESS_FIELDS
            if tok.kind == NUMBER:
                numeric = field in FIELDS and FIELDS[field].kind in NUMERIC
                if hostlike or (not numeric and _number_is_address(tok.text)):
                    source = _text.host(tok.text)
            else:
                masked = _literal(tok.text, hostlike or _number_is_address(tok.text))
                if masked != tok.text:
                    source = _quote(masked, tok.source[0]) if tok.kind == STRING else masked
        out.append(source)
    out.append(text[last:])
    return "".join(out)


def _free_text(text: str) -> str:
    masked = _text.text(text)
    return _BARE_NUMBER.sub(
        lambda m: _text.host(m.group(0)) if _number_is_address(m.group(0)) else m.group(0), masked)
