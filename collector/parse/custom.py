"""Compile a user's nginx ``log_format`` or Apache ``LogFormat`` line into a line parser."""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson
import re2

from collector.parse.errors import ParseError
from collector.parse.fields import build_record, check_client
from collector.parse.lines import JsonLineParser, LineParser

__all__ = ["compile_format"]

_QUOTED = r'[^"\\]*(?:\\.[^"\\]*)*'

# nginx variable → (canonical group name, regex when not inside quotes)
_NGINX_VARS: dict[str, tuple[str | None, str]] = {
    "remote_addr": ("client", r"\S+"),
    "realip_remote_addr": ("client", r"\S+"),
    "binary_remote_addr": (None, r"\S+"),
    "remote_user": (None, r"\S+"),
    "time_local": ("time_clf", r"\d{1,2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}"),
    "time_iso8601": ("time_iso", r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2}|Z)"),
    "msec": ("time_epoch", r"\d+(?:\.\d+)?"),
    "request": ("request", _QUOTED),
    "request_method": ("method", r"\S+"),
    "request_uri": ("target", r"\S+"),
    "uri": ("target", r"\S+"),
    "document_uri": ("target", r"\S+"),
    "args": ("query", r"\S*"),
    "query_string": ("query", r"\S*"),
    "server_protocol": ("protocol", r"\S+"),
    "status": ("status", r"\d{3}"),
    "body_bytes_sent": ("bytes", r"\d+|-"),
    "bytes_sent": ("bytes", r"\d+|-"),
    "http_referer": ("referrer", _QUOTED),
    "http_user_agent": ("user_agent", _QUOTED),
    "http_x_forwarded_for": ("forwarded_for", r"[^\s\"]+(?:, [^\s\"]+)*|-"),
    "host": ("host", r"\S+"),
    "http_host": ("host", r"\S+"),
    "server_name": ("host", r"\S+"),
    "request_time": ("request_time", r"\d+(?:\.\d+)?|-"),
    "http_accept_language": ("accept_language", _QUOTED),
    "http_dnt": ("dnt", r"\S+"),
    "http_sec_gpc": ("gpc", r"\S+"),
    "http_cookie": ("cookie", _QUOTED),
    "cookie_session": ("session_hint", r"[^\s\";]+"),
    "cookie_sid": ("session_hint", r"[^\s\";]+"),
    "cookie_phpsessid": ("session_hint", r"[^\s\";]+"),
}

# Apache LogFormat directive → (canonical group name, regex)
_APACHE: dict[str, tuple[str | None, str]] = {
    "h": ("client", r"\S+"), "a": ("client", r"\S+"), "{c}a": ("client", r"\S+"),
    "l": (None, r"\S+"), "u": (None, r"\S+"),
    "t": ("time_clf", r"\[(?P<{g}>[^\]]+)\]"),
    "r": ("request", _QUOTED), "m": ("method", r"\S+"), "U": ("target", r"\S+"),
    "q": ("query", r"\S*"), "H": ("protocol", r"\S+"),
    "s": ("status", r"\d{3}"), ">s": ("status", r"\d{3}"), "<s": ("status", r"\d{3}"),
    "b": ("bytes", r"\d+|-"), "B": ("bytes", r"\d+"), "O": ("bytes", r"\d+|-"),
    "v": ("host", r"\S+"), "V": ("host", r"\S+"),
    "D": ("request_time_us", r"\d+"), "T": ("request_time", r"\d+"),
    "{ms}T": ("request_time_ms", r"\d+"), "{us}T": ("request_time_us", r"\d+"),
    "{s}T": ("request_time", r"\d+"),
    "{Referer}i": ("referrer", _QUOTED), "{User-Agent}i": ("user_agent", _QUOTED),
    "{X-Forwarded-For}i": ("forwarded_for", r"[^\"]*?"),
    "{Accept-Language}i": ("accept_language", _QUOTED), "{DNT}i": ("dnt", r"\S+"),
    "{Sec-GPC}i": ("gpc", r"\S+"), "{Cookie}i": ("cookie", _QUOTED),
    "{Host}i": ("host", r"\S+"),
}
_APACHE_TOKEN = re.compile(r"%(?:[!\d,]*)?([<>]?)(\{[^}]*\})?([a-zA-Z%])")


MAX_SPEC = 4096  # characters of a log_format / LogFormat line
_RE2 = re2.Options()
_RE2.log_errors = False
_RE2.max_mem = 8 << 20


class CustomParser(LineParser):
    """A user's format, matched by RE2: linear time in the line whatever the format (a
    backtracking engine takes exponential time on ``$msec $a $b … Z`` and a line of spaces)."""

    def __init__(self, name: str, pattern: str) -> None:
        self.name = name
        self.pattern = pattern
        try:
            self.regex = re2.compile(pattern, _RE2)
        except re2.error:
            raise ValueError("the format cannot be compiled (too many fields?)") from None

    def parse(self, line: str) -> dict[str, Any]:
        m = self.regex.match(line)
        if m is None:
            raise ParseError(f"line does not match the {self.name} format: fields differ")
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        rec = build_record(g)
        check_client(rec["client"], rec["forwarded_for"])
        return rec


def _strip_nginx(spec: str) -> str:
    text = spec.strip().rstrip(";").strip()
    m = re.match(r"^log_format\s+\S+\s+(?:escape=\S+\s+)?(.*)$", text, re.S)
    if m:
        text = m.group(1).strip()
    if text[:1] in "'\"":
        parts = re.findall(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", text)
        text = "".join(a or b for a, b in parts)
    return text


def _strip_apache(spec: str) -> str:
    text = spec.strip()
    m = re.match(r'^(?:LogFormat|CustomLog\s+\S+)\s+"((?:[^"\\]|\\.)*)"', text)
    if m:
        text = m.group(1)
    elif text.startswith('"') and text.rfind('"') > 0:
        text = text[1 : text.rfind('"')]
    return text.replace('\\"', '"')


def _literal(text: str) -> str:
    return re.escape(text).replace("\\ ", " +")


def _compile_nginx(text: str) -> LineParser:
    if text.lstrip().startswith("{"):
        # JSON log_format: map each key to the variable it holds, then use normalize_json.
        rename: dict[str, str] = {}
        sample = re.sub(r"\$(\w+)", lambda m: m.group(1), text)
        try:
            obj = orjson.loads(sample.replace("\\", ""))
        except orjson.JSONDecodeError:
            obj = None
        for key, value in re.findall(r'"([^"]+)"\s*:\s*"?\$(\w+)', text):
            rename[key] = value
        del obj
        return JsonLineParser("custom_json", rename)
    pos = 0
    out = ["^"]
    used: set[str] = set()
    for m in re.finditer(r"\$(?:\{(\w+)\}|(\w+))", text):
        out.append(_literal(text[pos : m.start()]))
        var = m.group(1) or m.group(2)
        quoted = text[m.start() - 1 : m.start()] == '"' and text[m.end() : m.end() + 1] == '"'
        group, regex = _NGINX_VARS.get(var, (None, _QUOTED if quoted else r"\S*"))
        if quoted and regex != _QUOTED and group not in ("status", "bytes"):
            regex = _QUOTED
        if group and group not in used:
            used.add(group)
            out.append(f"(?P<{group}>{regex})")
        else:
            out.append(f"(?:{regex})")
        pos = m.end()
    out.append(_literal(text[pos:]) + r"\s*$")
    if not used & {"time_clf", "time_iso", "time_epoch"}:
        raise ValueError("log_format has no time variable ($time_local, $time_iso8601 or $msec)")
    return CustomParser("custom", "".join(out))


def _compile_apache(text: str) -> LineParser:
    pos = 0
    out = ["^"]
    used: set[str] = set()
    for m in _APACHE_TOKEN.finditer(text):
        out.append(_literal(text[pos : m.start()]))
        arrow, arg, letter = m.group(1), m.group(2) or "", m.group(3)
        pos = m.end()
        if letter == "%":
            out.append("%")
            continue
        key = f"{arrow}{arg}{letter}"
        spec = _APACHE.get(key) or _APACHE.get(f"{arg}{letter}")
        if spec is None and letter == "i" and arg:
            lowered = {k.lower(): v for k, v in _APACHE.items()}
            spec = lowered.get(f"{arg}{letter}".lower())
        if spec is None:
            quoted = text[m.start() - 1 : m.start()] == '"'
            spec = (None, _QUOTED if quoted else r"\S*")
        group, regex = spec
        if letter == "t":
            if group not in used:
                used.add("time_clf")
                out.append(regex.format(g="time_clf"))
            else:
                out.append(r"\[[^\]]+\]")
            continue
        if group and group not in used:
            used.add(group)
            out.append(f"(?P<{group}>{regex})")
        else:
            out.append(f"(?:{regex})")
    out.append(_literal(text[pos:]) + r"\s*$")
    if "time_clf" not in used:
        raise ValueError("LogFormat has no %t time directive")
    return CustomParser("custom", "".join(out))


def compile_format(spec: str) -> LineParser:
    """A parser for an nginx ``log_format`` or Apache ``LogFormat`` line. Raises ValueError."""
    from collector.parse import FORMATS

    name = spec.strip()
    if name in FORMATS:
        return FORMATS[name]
    if len(spec) > MAX_SPEC:
        raise ValueError(f"format longer than {MAX_SPEC} characters")
    return _compile(spec)


@functools.lru_cache(maxsize=64)
def _compile(spec: str) -> LineParser:
    if re.search(r"\$\{?\w", spec):
        return _compile_nginx(_strip_nginx(spec))
    if "%" in spec:
        return _compile_apache(_strip_apache(spec))
    raise ValueError("not an nginx log_format or Apache LogFormat string")
