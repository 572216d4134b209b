"""One shipped JSON object → raw record: canonical names and common shippers' field names."""

from __future__ import annotations

from typing import Any

import orjson

from collector.parse.errors import ParseError
from collector.parse.fields import build_record, check_client, cookie_session

__all__ = ["loads", "normalize_json"]


def loads(text: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ParseError("not valid JSON") from None
    if not isinstance(obj, dict):
        raise ParseError("JSON value is not an object")
    return obj


def _flatten(obj: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}".lower()
        if isinstance(value, dict):
            _flatten(value, name + ".", out)
        else:
            if isinstance(value, list):
                value = value[0] if len(value) == 1 else ", ".join(str(v) for v in value) or None
            out.setdefault(name, value)


# Candidate keys (lower case, dotted) per raw-record field, most specific first.
_CLIENT = ("client", "remote_addr", "source.ip", "client.ip", "request.client_ip",
           "request.remote_ip", "clienthost", "clientaddr", "ip", "remote", "remote_ip",
           "source.address", "client.address", "c-ip", "client_ip", "realip_remote_addr")
_FORWARDED = ("forwarded_for", "http_x_forwarded_for", "x_forwarded_for",
              "request.headers.x-forwarded-for", "request_x-forwarded-for",
              "http.request.headers.x-forwarded-for", "x-forwarded-for")
_TIME = ("time", "@timestamp", "timestamp", "time_iso8601", "time_local", "ts", "startutc",
         "date", "msec", "datetime", "start_time", "event.created", "startlocal")
_METHOD = ("method", "request_method", "http.request.method", "request.method", "requestmethod",
           "verb")
_TARGET = ("target", "request_uri", "url.original", "request.uri", "requestpath", "path", "uri",
           "request_path", "url")
_PROTOCOL = ("protocol", "server_protocol", "request.proto", "requestprotocol", "http_version")
_HOST = ("host", "http_host", "request.host", "requesthost", "url.domain", "vhost",
         "server_name")
_STATUS = ("status", "code", "http.response.status_code", "downstreamstatus", "status_code",
           "response", "response_code")
_BYTES = ("bytes", "body_bytes_sent", "size", "http.response.body.bytes", "length",
          "downstreamcontentsize", "bytes_sent", "response_size")
_REFERRER = ("referrer", "referer", "http_referer", "http_referrer", "http.request.referrer",
             "request_referer", "request.headers.referer")
_AGENT = ("user_agent", "http_user_agent", "user_agent.original", "agent", "useragent",
          "request_user-agent", "request.headers.user-agent", "ua")
_LANG = ("accept_language", "http_accept_language", "request.headers.accept-language",
         "request_accept-language", "http.request.headers.accept-language")
_HINT = ("session_hint", "cookie_session", "http_cookie_session")
_COOKIE = ("http_cookie", "cookie", "request.headers.cookie", "request_cookie")
_DNT = ("dnt", "http_dnt", "request.headers.dnt", "request_dnt")
_GPC = ("gpc", "sec_gpc", "http_sec_gpc", "request.headers.sec-gpc", "request_sec-gpc")


def _first(flat: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = flat.get(key)
        if value is not None and value != "" and value != "-" and not isinstance(value, dict):
            return value
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def normalize_json(obj: dict[str, Any]) -> dict[str, Any]:
    """One shipped JSON object → raw record (``RAW_FIELDS`` keys). Raises ParseError."""
    if not isinstance(obj, dict):
        raise ParseError("record is not a JSON object")
    flat: dict[str, Any] = {}
    _flatten(obj, "", flat)
    client = _first(flat, _CLIENT)
    time_value = _first(flat, _TIME)
    line = _first(flat, ("message", "log", "event.original"))
    if isinstance(line, str) and (client is None or time_value is None):
        from collector.parse import parse_one_line

        return parse_one_line(line)
    traefik = "downstreamstatus" in flat or "clienthost" in flat or "routername" in flat
    g: dict[str, Any] = {}
    if time_value is None:
        raise ParseError("missing timestamp")
    if "startutc" in flat and traefik:
        time_value = flat["startutc"]
    g["time_any"] = time_value
    g["client"] = _text(client) or "-"
    g["forwarded_for"] = _text(_first(flat, _FORWARDED))
    g["method"] = _text(_first(flat, _METHOD))
    target = _text(_first(flat, _TARGET))
    if target is None and flat.get("url.path"):
        target = str(flat["url.path"])
        if flat.get("url.query"):
            target += "?" + str(flat["url.query"])
    request = flat.get("request")
    if isinstance(request, str):
        g["request"] = request
        if target and " " in target:
            target = None
    g["target"] = target
    protocol = _text(_first(flat, _PROTOCOL))
    if protocol is None and flat.get("http.version"):
        protocol = f"HTTP/{flat['http.version']}"
    g["protocol"] = protocol
    g["host"] = _text(_first(flat, _HOST))
    g["status"] = _first(flat, _STATUS)
    g["bytes"] = _first(flat, _BYTES)
    g["referrer"] = _text(_first(flat, _REFERRER))
    g["user_agent"] = _text(_first(flat, _AGENT))
    g["accept_language"] = _text(_first(flat, _LANG))
    if traefik and flat.get("duration") is not None:
        g["request_time_us"] = float(flat["duration"]) / 1000.0
    elif flat.get("request_time") is not None:
        g["request_time"] = flat["request_time"]
    elif flat.get("duration") is not None:
        g["request_time"] = flat["duration"]
    elif flat.get("generation_time_milli") is not None:
        g["request_time_ms"] = flat["generation_time_milli"]
    elif flat.get("request_time_ms") is not None:
        g["request_time_ms"] = flat["request_time_ms"]
    elif flat.get("event.duration") is not None:
        g["request_time_us"] = float(flat["event.duration"]) / 1000.0
    hint = _text(_first(flat, _HINT))
    if hint is None:
        cookie = _first(flat, _COOKIE)
        hint = cookie_session(_text(cookie))
    g["session_hint"] = hint
    g["dnt"] = _text(_first(flat, _DNT))
    g["gpc"] = _text(_first(flat, _GPC))
    if isinstance(g["status"], str) and not g["status"].strip().isdigit():
        raise ParseError("status is not a number")
    rec = build_record(g)
    check_client(rec["client"], rec["forwarded_for"])
    return rec
