"""Line parsers: one per access-log dialect, W3C ``#Fields:`` logs, and user-supplied formats."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from collector.parse.errors import ParseError
from collector.parse.fields import build_record, check_client, none_if_dash

__all__ = ["JsonLineParser", "LineParser", "RegexParser", "W3CParser", "diagnose"]

Record = dict[str, Any]
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # a quoted field with backslash escapes
# Lines longer than this are matched only by a parser's linear-time pattern: a pattern that can
# backtrack (the lazy CLF prefix) is tried on short lines only, so no line costs more than
# linear time (a 64 KiB line of "- - [" would otherwise take minutes).
BACKTRACK_MAX = 512


class LineParser:
    """Parses one line of one dialect into a raw record. ``parse`` raises ParseError."""

    name: str = "?"
    stateful: bool = False

    def parse(self, line: str) -> Record:
        raise NotImplementedError

    def matches(self, line: str) -> bool:
        try:
            self.parse(line)
        except ParseError:
            return False
        return True

    def fresh(self) -> LineParser:
        """A parser for one batch (stateful parsers such as W3C return a copy)."""
        return self

    def header(self, line: str) -> None:
        """A ``#`` comment line of the batch (W3C ``#Fields:`` sets the field list)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def diagnose(line: str) -> str:
    """A short reason why a CLF-like line does not match (never quotes the line)."""
    if line.count('"') % 2 and not re.search(r'\\"', line):
        return "unterminated quoted field (truncated line?)"
    bracket = line.find(" [")
    if bracket < 0 or "]" not in line[bracket:]:
        return "no [time] field"
    before = line[:bracket].split()
    if len(before) < 3:
        return "missing ident and user fields before the time"
    after = line[line.find("]", bracket) + 1 :].lstrip()
    if not after.startswith('"') and not re.match(r"^\S+ \"|^\(\d+ s\) \"", after):
        return "request is not quoted"
    if not re.search(r'" (\d{3}|-) (\d+|-)', after):
        return "status or size is not a number"
    return "unexpected fields"


class RegexParser(LineParser):
    """A precompiled regex with canonical group names, plus an optional post-processing hook."""

    def __init__(
        self,
        name: str,
        pattern: str,
        post: Callable[[dict[str, Any]], None] | None = None,
        validate_client: bool = True,
        fallback: str | None = None,
    ) -> None:
        self.name = name
        self.regex = re.compile(pattern)
        self.post = post
        self.validate_client = validate_client
        # a pattern that may backtrack, tried only on lines of at most BACKTRACK_MAX characters
        # that the linear pattern refused (same fields, rarer layouts)
        self.fallback = re.compile(fallback) if fallback is not None else None

    def parse(self, line: str) -> Record:
        m = self.regex.match(line)
        if m is None and self.fallback is not None and len(line) <= BACKTRACK_MAX:
            m = self.fallback.match(line)
        if m is None:
            raise ParseError(f"line does not match the {self.name} format: {diagnose(line)}")
        g = m.groupdict()
        if self.post is not None:
            self.post(g)
        rec = build_record(g)
        if self.validate_client:
            check_client(rec["client"], rec["forwarded_for"])
        return rec


# --------------------------------------------------------------------------- CLF family

_CHAIN_TOKEN = re.compile(r'"[^"]*"|[^\s,]+(?:,\s*[^\s,]+)*')


def _clf_prefix(g: dict[str, Any]) -> None:
    """Split what precedes ``ident user [time]``: [vhost] [forwarded-for chain] client."""
    prefix = g.pop("prefix")
    tokens = _CHAIN_TOKEN.findall(prefix)
    while len(tokens) > 1 and tokens[-1] == "-":
        tokens.pop()  # an extra ident-like column ("66.249.66.1 - - - [")
    if not tokens:
        raise ParseError("line does not match the combined format: no client field")
    if len(tokens) == 1:
        g["client"] = tokens[0].strip('"')
    elif len(tokens) == 2:
        first, second = tokens
        if first.startswith('"') or "," in first:
            g["forwarded_for"] = first.strip('"')
        else:
            g["host"] = first
        g["client"] = second.strip('"')
    else:
        g["host"] = tokens[0]
        g["forwarded_for"] = ", ".join(t.strip('"') for t in tokens[1:-1])
        g["client"] = tokens[-1].strip('"')
    vhost_after = g.pop("vhost_after", None)
    if vhost_after and not g.get("host"):
        g["host"] = vhost_after
    host = g.get("host")
    if host and host.startswith('"'):
        g["host"] = host.strip('"')


def _clf_post(g: dict[str, Any]) -> None:
    _clf_prefix(g)
    tail = g.pop("tail", None)
    if tail and (tail.count('"') - tail.count('\\"')) % 2:
        raise ParseError(
            "line does not match the combined format: unterminated quoted field (truncated line?)"
        )
    if tail and not g.get("forwarded_for"):
        m = re.match(r'^\s+"([^"]*)"', tail)
        if m and re.match(r"^[0-9a-fA-F.:, \[\]-]+$", m.group(1)):
            g["forwarded_for"] = m.group(1)  # nginx "main": "$http_x_forwarded_for"


_CLF_HEAD = (
    r"^(?P<prefix>.*?) (?P<ident>\S+) (?P<user>\S+) \[(?P<time_clf>[^\]]+)\]"
    r'(?: \((?P<duration_s>\d+) s\))?(?: (?P<vhost_after>[^\s"(]+))? '
    rf"{_Q.replace('(', '(?P<request>', 1)} (?P<status>\d{{3}}|-) (?P<bytes>\d+|-)"
)
_REF_UA = rf" {_Q.replace('(', '(?P<referrer>', 1)} {_Q.replace('(', '(?P<user_agent>', 1)}"



def _linear(pattern: str) -> str:
    """The CLF-family pattern in a form that cannot backtrack beyond linear time: the prefix
    before ``ident user [time]`` holds no ``[`` (so the time field is the first ``[``), and the
    fields before and inside the quotes are possessive. Lines it refuses are tried with the
    original pattern when short (``BACKTRACK_MAX``)."""
    out = pattern.replace("(?P<prefix>.*?)", r"(?P<prefix>[^\[]*?)", 1)
    out = out.replace(r"(?P<ident>\S+) (?P<user>\S+) \[(?P<time_clf>[^\]]+)\]",
                      r"(?P<ident>\S++) (?P<user>\S++) \[(?P<time_clf>[^\]]++)\]", 1)
    out = out.replace(r'[^"\\]*(?:\\.[^"\\]*)*', r'[^"\\]*+(?:\\.[^"\\]*+)*+')
    assert out != pattern
    return out


def _clf(name: str, pattern: str, post: Callable[[dict[str, Any]], None]) -> RegexParser:
    return RegexParser(name, _linear(pattern), post, fallback=pattern)


COMMON = _clf("common", _CLF_HEAD + r"\s*$", _clf_post)
COMBINED = _clf("combined", _CLF_HEAD + rf"(?:{_REF_UA})?(?P<tail>.*)$", _clf_post)
VHOST_COMBINED = _clf(
    "vhost_combined",
    r"^(?P<host>[^\s\"]+) " + _CLF_HEAD[1:] + rf"(?:{_REF_UA})?(?P<tail>.*)$",
    _clf_post,
)


def _traefik_post(g: dict[str, Any]) -> None:
    _clf_prefix(g)
    g.pop("tail", None)


TRAEFIK_CLF = _clf(
    "traefik_clf",
    _CLF_HEAD + _REF_UA + r' (?P<count>\d+) "(?P<frontend>[^"]*)" "(?P<backend>[^"]*)" '
    r"(?P<request_time_ms>\d+)ms\s*$",
    _traefik_post,
)


_ADDR_LIST = re.compile(r"\s*(?:,|:)\s*")


def _ingress_post(g: dict[str, Any]) -> None:
    _clf_prefix(g)
    upstream = g.get("upstream_addr") or "-"
    for entry in re.split(r"\s*,\s*|\s+:\s+", upstream):
        if entry in ("-", "") or entry.startswith("unix:"):
            continue
        try:
            check_client(entry)
        except ParseError:
            raise ParseError("upstream_addr holds an address that is not IP:port") from None


INGRESS_NGINX = _clf(
    "ingress_nginx",
    _CLF_HEAD + _REF_UA + r" (?P<request_length>\d+|-) (?P<request_time>[\d.]+|-) "
    r"\[(?P<upstream_name>[^\]]*)\] \[(?P<alt_upstream>[^\]]*)\] "
    r"(?P<upstream_addr>.+?) (?P<upstream_len>(?:\d+|-)(?:, (?:\d+|-))*) "
    r"(?P<upstream_time>(?:[\d.]+|-)(?:, (?:[\d.]+|-))*) "
    r"(?P<upstream_status>(?:\d+|-)(?:, (?:\d+|-))*) (?P<req_id>\S+)\s*$",
    _ingress_post,
)


def _haproxy_post(g: dict[str, Any]) -> None:
    tt = g.pop("tt", None)
    if tt is not None:
        g["request_time_ms"] = tt.lstrip("+")
    g["bytes"] = (g.get("bytes") or "").lstrip("+")


HAPROXY = RegexParser(
    "haproxy",
    r"^(?:\S+\s+\d+\s+\d{2}:\d{2}:\d{2}\s+\S+\s+|\S+\s+)?haproxy\[\d+\]:\s+"
    r"(?P<client>\S+):\d+ \[(?P<time_clf>[^\]]+)\] (?P<frontend>\S+) (?P<backend>\S+) "
    r"-?\d+/-?\d+/-?\d+/-?\d+/(?P<tt>\+?\d+) (?P<status>\d{3}|-1) (?P<bytes>\+?\d+) "
    r"\S+ \S+ \S+ \S+ \S+(?: \{(?P<cap_req>[^}]*)\})?(?: \{[^}]*\})? "
    r'"(?P<request>[^"]*)"?\s*$',
    _haproxy_post,
)


def _elb_post(g: dict[str, Any]) -> None:
    if g.get("status") == "-" and (g.get("request") or "").strip(" -") == "":
        raise ParseError("no HTTP request data (TCP listener entry)")
    times = [g.pop(k, "-") for k in ("t1", "t2", "t3")]
    if all(t not in ("-", "-1") for t in times):
        g["request_time"] = str(sum(float(t) for t in times))
    g["client"] = g["client"]


ELB = RegexParser(
    "elb",
    r"^(?P<time_iso>\d{4}-\d{2}-\d{2}T\S+) (?P<elb>\S+) (?P<client>\S+) (?P<backend>\S+) "
    r"(?P<t1>\S+) (?P<t2>\S+) (?P<t3>\S+) (?P<status>\d{3}|-) (?P<backend_status>\S+) "
    r'(?P<received>\d+) (?P<bytes>\d+) "(?P<request>[^"]*)" "(?P<user_agent>[^"]*)"'
    r"(?: \S+ \S+)?\s*$",
    _elb_post,
)
ALB = RegexParser(
    "alb",
    r"^(?P<type>https?|h2|grpcs|ws|wss) (?P<time_iso>\d{4}-\d{2}-\d{2}T\S+) (?P<elb>\S+) "
    r"(?P<client>\S+) (?P<backend>\S+) (?P<t1>\S+) (?P<t2>\S+) (?P<t3>\S+) "
    r"(?P<status>\d{3}|-) (?P<backend_status>\S+) (?P<received>\d+) (?P<bytes>\d+) "
    r'"(?P<request>[^"]*)" "(?P<user_agent>[^"]*)"(?P<rest>.*)$',
    _elb_post,
)


def _s3_post(g: dict[str, Any]) -> None:
    g.pop("rest", None)


S3 = RegexParser(
    "s3",
    r"^(?P<owner>[0-9a-f]{16,}|\S+) (?P<host>\S+) \[(?P<time_clf>[^\]]+)\] (?P<client>\S+) "
    r"(?P<requester>\S+) (?P<reqid>\S+) (?P<operation>[A-Z_.]+) (?P<key>\S+) "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}|-) (?P<error>\S+) (?P<bytes>\d+|-) (?P<objsize>\S+) '
    r'(?P<request_time_ms>\d+|-) (?P<turnaround>\S+) "(?P<referrer>[^"]*)" '
    r'"(?P<user_agent>[^"]*)"(?P<rest>.*)$',
    _s3_post,
)

APACHE_SSL = RegexParser(
    "apache_ssl",
    r"^\[(?P<time_clf>[^\]]+)\] (?P<client>\S+) (?P<tls>\S+) (?P<cipher>\S+) "
    rf"{_Q.replace('(', '(?P<request>', 1)} (?P<bytes>\d+|-)\s*$",
)

NGINX_ERROR = RegexParser(
    "nginx_error",
    r"^(?:\S+ \S+\[\d+\]: )?(?P<time_iso>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[\w+\] "
    r"\d+#\d+: (?:\*\d+ )?.*?, client: (?P<client>[^,]+)(?:, server: [^,]*)?"
    r'(?:, request: "(?P<request>[^"]*)")?.*?(?:, host: "(?P<host>[^"]*)")?\s*$',
    lambda g: g.update(time_iso=g["time_iso"].replace("/", "-")),
)


# --------------------------------------------------------------------------- W3C extended

_W3C_TOKEN = re.compile(r'"([^"]*)"|(\S+)')
_W3C_MAP: dict[str, str] = {
    "date": "date", "time": "timeofday", "date-local": "date", "time-local": "timeofday",
    "c-ip": "client", "cs-method": "method", "cs-uri-stem": "target", "cs-uri-query": "query",
    "cs-uri": "uri", "sc-status": "status", "sc-bytes": "bytes", "cs(user-agent)": "user_agent",
    "cs(referer)": "referrer", "cs(referrer)": "referrer", "cs-host": "host", "cs(host)": "host",
    "x-host-header": "host", "cs-version": "protocol", "cs-protocol-version": "protocol",
    "time-taken": "time_taken", "timetakenms": "request_time_ms",
    "x-forwarded-for": "forwarded_for",
    "s-xff": "forwarded_for", "cs(x-forwarded-for)": "forwarded_for", "cs(cookie)": "cookie",
    "cs(accept-language)": "accept_language", "x-edge-location": "edge",
}
CLOUDFRONT_FIELDS = (
    "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) "
    "cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header "
    "cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher "
    "x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields "
    "c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len "
    "sc-range-start sc-range-end"
).split()


class W3CParser(LineParser):
    """W3C extended log (IIS, CloudFront, NetScaler, Incapsula), driven by ``#Fields:``."""

    stateful = True

    def __init__(self, name: str = "w3c", fields: list[str] | None = None) -> None:
        self.name = name
        self.fields: list[str] | None = fields

    def fresh(self) -> W3CParser:
        return W3CParser(self.name, list(self.fields) if self.fields else None)

    def header(self, line: str) -> None:
        body = line.lstrip("#").strip()
        if body.lower().startswith("fields:"):
            self.fields = body[7:].split()

    def parse(self, line: str) -> Record:
        if not self.fields:
            raise ParseError(f"line does not match the {self.name} format: no #Fields: header")
        if "\t" in line:
            values = line.split("\t")
        else:
            values = [q if q is not None and b == "" else b for q, b in
                      ((m.group(1), m.group(2) or "") for m in _W3C_TOKEN.finditer(line))]
        if len(values) < len(self.fields):
            raise ParseError(
                f"line does not match the {self.name} format: {len(values)} values for "
                f"{len(self.fields)} fields"
            )
        cloudfront = "x-edge-location" in (f.lower() for f in self.fields)
        g: dict[str, Any] = {}
        for name, value in zip(self.fields, values, strict=False):
            key = _W3C_MAP.get(name.lower())
            if key is None or key in g:
                continue
            g[key] = none_if_dash(value.strip())
        date, tod = g.pop("date", None), g.pop("timeofday", None)
        if date and tod:
            g["time_iso"] = f"{date}T{tod}"
        taken = g.pop("time_taken", None)
        if taken is not None:
            if cloudfront:
                g["request_time"] = taken
            else:
                g["request_time_ms"] = taken
        ua = g.get("user_agent")
        if ua:
            if cloudfront:
                ua = unquote(unquote(ua))
            elif " " not in ua:
                ua = ua.replace("+", " ")
            g["user_agent"] = ua
        uri = g.pop("uri", None)
        if uri and not g.get("target"):
            slash = uri.find("/")
            g["target"] = uri[slash:] if slash >= 0 else "/"
            if slash > 0 and not g.get("host"):
                g["host"] = uri[:slash]
        if g.get("status") and not g["status"].isdigit():
            raise ParseError(
                f"line does not match the {self.name} format: sc-status is not a number"
            )
        elif g.get("status") is None:
            g["status"] = None
        if g.get("request_time_ms") and not re.fullmatch(r"\d+(?:\.\d+)?", g["request_time_ms"]):
            g["request_time_ms"] = None
        rec = build_record(g)
        check_client(rec["client"], rec["forwarded_for"] if not cloudfront else None)
        return rec


class CloudFrontParser(W3CParser):
    def __init__(self) -> None:
        super().__init__("cloudfront", list(CLOUDFRONT_FIELDS))

    def fresh(self) -> W3CParser:
        return W3CParser("cloudfront", list(self.fields or CLOUDFRONT_FIELDS))


class JsonLineParser(LineParser):
    """One JSON object per line (nginx JSON, Caddy, Traefik, shippers) via ``normalize_json``."""

    def __init__(self, name: str, rename: dict[str, str] | None = None) -> None:
        self.name = name
        self.rename = rename

    def parse(self, line: str) -> Record:
        from collector.parse.jsonmap import loads, normalize_json

        text = line.strip()
        if not text.startswith("{"):
            raise ParseError(f"line does not match the {self.name} format: not a JSON object")
        obj = loads(text)
        if self.rename:
            obj = {self.rename.get(k, k): v for k, v in obj.items()}
        rec = normalize_json(obj)
        check_client(rec["client"], rec.get("forwarded_for"))
        return rec
