"""Settings: one typed dataclass per TOML section, read from file, environment and flags.

Precedence (lowest to highest): built-in default < TOML file < ``LETHELOG_<SECTION>_<KEY>``
environment variable < command-line flag. Every field carries its documentation in
``metadata["doc"]``; ``tests/test_settings.py`` checks that each one appears in
``docs/configuration.md`` and in ``config/lethelog.example.toml``.

A bad value raises :class:`SettingsError` whose message is one line naming the setting and what is
wrong, e.g. ``sessions.idle_timeout: expected a duration like 45s, 30m or 2h, got 'soon'``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Secret",
    "Settings",
    "SettingsError",
    "load_settings",
    "parse_duration",
    "parse_size",
]


class SettingsError(ValueError):
    """A setting is missing or malformed. ``str(err)`` is one line meant for the operator."""


class Secret:
    """A string that never prints: ``repr`` and ``str`` show ``Secret('**********')``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3,
}


def parse_duration(text: str | int | float) -> float:
    """``'45s'`` → 45.0, ``'30m'`` → 1800.0, ``'2h'`` → 7200.0 (seconds)."""
    if isinstance(text, bool):
        raise ValueError("expected a duration like 45s, 30m or 2h, got a boolean")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"expected a non-negative duration, got {text}")
        return float(text)
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"expected a duration like 45s, 30m or 2h, got {text!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_size(text: str | int) -> int:
    """``'512KiB'`` → 524288, ``'10MiB'`` → 10485760 (bytes)."""
    if isinstance(text, bool):
        raise ValueError("expected a size like 512KiB or 10MiB, got a boolean")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"expected a non-negative size, got {text}")
        return text
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"expected a size like 512KiB or 10MiB, got {text!r}")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


def _opt(default: Any, doc: str, kind: str = "", **extra: Any) -> Any:
    """A settings field: its default, its one-line documentation and how to read it."""
    meta = {"doc": doc, "kind": kind, **extra}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ServerSettings:
    listen: str = _opt("127.0.0.1:8780", "HOST:PORT the HTTP API listens on.", "addr")
    data_dir: Path = _opt(Path("lethelog-data"), "Directory for the store, keys and logs.", "path")
    log_level: str = _opt("info", "Level of the service's own log: debug, info, warning, error.",
                          "choice", choices=("debug", "info", "warning", "error"))
    shutdown_timeout: float = _opt(10.0, "How long shutdown waits to drain and commit.", "duration")
    tls_cert: Path | None = _opt(None, "PEM certificate; with tls_key, serve HTTPS.", "path")
    tls_key: Path | None = _opt(None, "PEM private key for tls_cert.", "path")


@dataclass(frozen=True)
class StoreSettings:
    backend: str = _opt("sqlite", "Where live records live: sqlite (embedded) or redis (a Redis "
                        "Cluster shared by many collectors).", "choice",
                        choices=("sqlite", "redis"))
    readers: int = _opt(2, "Reader threads for queries against SQLite.", "int", min=1, max=64)
    fsync: bool = _opt(True, "fsync every commit (survives power loss); false: survives crashes.",
                       "bool")
    redis_nodes: list[str] = _opt(["127.0.0.1:6379"], "Redis Cluster nodes (HOST:PORT) to "
                                  "discover the cluster from (backend redis).", "list")
    redis_username: str | None = _opt(None, "Redis ACL user (unset: the default user).", "str")
    redis_password: Secret | None = _opt(None, "Redis password (AUTH); prefer the environment "
                                         "variable to the file.", "secret")
    redis_prefix: str = _opt("lethelog", "Prefix of every Redis key; deployments sharing a "
                             "cluster need different ones.", "str")
    redis_buckets: int = _opt(128, "Slots (hash tags) sessions are spread over; fixed once data "
                              "exists.", "int", min=1, max=16384)
    redis_timeout: float = _opt(5.0, "Redis connect and command timeout; a slower write is "
                                "answered 503.", "duration", min=0.01)
    redis_tls: bool = _opt(False, "Connect to the Redis nodes over TLS (their tls-port).", "bool")
    redis_tls_ca: Path | None = _opt(None, "PEM CA bundle the nodes' certificates must chain to "
                                     "(unset: the system's CAs).", "path")
    redis_tls_cert: Path | None = _opt(None, "PEM client certificate for Redis "
                                       "(tls-auth-clients); with redis_tls_key.", "path")
    redis_tls_key: Path | None = _opt(None, "PEM private key for store.redis_tls_cert.", "path")
    redis_tls_verify: str = _opt("full", "Check the nodes' certificates: full (chain and the "
                                 "node's address or name), chain (chain only, for nodes that "
                                 "announce addresses their certificates do not name), none.",
                                 "choice", choices=("full", "chain", "none"))


@dataclass(frozen=True)
class SessionsSettings:
    idle_timeout: float = _opt(1800.0, "A session ends after this long without a record.",
                               "duration",
                               min=0.001)
    sweep_interval: float = _opt(1.0, "How often ended sessions are looked for and deleted.",
                                 "duration", min=0.01)
    max_clock_skew: float = _opt(300.0, "How far past the wall clock a record's time may be.",
                                 "duration")
    max_age: float = _opt(3 * 86400.0, "serve refuses records older than this (import takes "
                          "any age; 0: no bound).", "duration")
    key_rotation: float = _opt(86400.0, "How often the pseudonymisation key changes.", "duration",
                               min=1.0)
    key_retention: float = _opt(172800.0, "How long an old key is kept before it is deleted.",
                                "duration", min=1.0)
    hint_fields: list[str] = _opt(["session_hint", "cookie_session", "http_cookie_session"],
                                  "Record fields whose value identifies a session (never stored).",
                                  "list")


@dataclass(frozen=True)
class MaskingSettings:
    ipv4_keep_bits: int = _opt(24, "Leading IPv4 bits kept (24 zeroes the last octet).", "int",
                               min=0, max=32)
    ipv6_keep_bits: int = _opt(48, "Leading IPv6 bits kept (48 keeps the site prefix).", "int",
                               min=0, max=128)
    trusted_proxies: list[str] = _opt([], "CIDRs of proxies whose X-Forwarded-For is believed.",
                                      "cidrs")
    secret_params: list[str] = _opt([], "Extra query-parameter names whose values are scrubbed.",
                                    "list")
    consent: str = _opt("aggregate", "DNT / Sec-GPC requests: aggregate (count only) or drop.",
                        "choice", choices=("aggregate", "drop"))


@dataclass(frozen=True)
class EnrichSettings:
    city_db: Path | None = _opt(None, "GeoIP2/GeoLite2 City .mmdb (country, region, city, tz).",
                                "path")
    country_db: Path | None = _opt(None, "GeoIP2/GeoLite2 Country .mmdb (used without city_db).",
                                   "path")
    asn_db: Path | None = _opt(None, "GeoLite2 ASN .mmdb (asn, AS organisation).", "path")
    isp_db: Path | None = _opt(None, "GeoIP2 ISP .mmdb (asn, isp).", "path")
    anonymous_ip_db: Path | None = _opt(None, "GeoIP2 Anonymous-IP .mmdb (VPN/Tor/hosting flags).",
                                        "path")
    connection_type_db: Path | None = _opt(None, "GeoIP2 Connection-Type .mmdb.", "path")
    ua_cache_size: int = _opt(65536, "User-Agent strings remembered by the parse cache.", "int",
                              min=0)
    geo_cache_size: int = _opt(65536, "Masked networks remembered by the GeoIP cache.", "int",
                               min=0)
    geo_from: str = _opt("masked", "Address geolocated: masked or full (in memory only).",
                         "choice", choices=("masked", "full"))
    geo_precision: str = _opt("city", "Finest location kept: country, region or city.", "choice",
                              choices=("country", "region", "city"))
    default_db: bool = _opt(True, "Fill every GeoIP role no file is configured for from data "
                            "installed from PyPI (country, city, AS organisation).", "bool")
    max_db_age: float = _opt(400 * 86400.0, "A GeoIP database older than this is reported stale.",
                             "duration")
    reload_interval: float = _opt(60.0, "How often GeoIP files are checked for change (0: off).",
                                  "duration")


@dataclass(frozen=True)
class IngestSettings:
    max_body_size: int = _opt(10 * 1024**2, "Largest accepted request body (after gzip).", "size")
    max_line_length: int = _opt(64 * 1024, "Longest accepted log line or JSON record.", "size")
    max_records_per_request: int = _opt(100_000, "Most records accepted in one request.", "int",
                                        min=1)
    queue_size: int = _opt(64, "Batches waiting for the store writer before 503.", "int", min=1)
    body_timeout: float = _opt(30.0, "Whole request body must arrive within this, else 408.",
                               "duration", min=0.01)
    keepalive_timeout: float = _opt(15.0, "Idle connection (or unfinished headers) closed after.",
                                    "duration", min=0.01)
    parse_timeout: float = _opt(60.0, "A request body must be parsed (off the event loop) "
                                "and prepared within this, else 503 and nothing stored.",
                                "duration", min=0.01)
    memory_budget: int = _opt(256 * 1024**2, "Memory for bodies in flight and their records "
                              "until committed, all requests together; over it 503.", "size",
                              min=1024**2)


@dataclass(frozen=True)
class SyslogSettings:
    udp: str | None = _opt(None, "HOST:PORT of the syslog UDP listener (off unless set).", "addr")
    tcp: str | None = _opt(None, "HOST:PORT of the syslog TCP listener (off unless set).", "addr")
    format: str = _opt("combined", "Access-log format of the message body: a name or a "
                       "log_format/LogFormat line.")
    source: str = _opt("syslog", "Shipper name recorded as the records' source.")
    sites: list[str] = _opt([], "Sites syslog senders may write to (empty: any site).", "list")
    allowed_networks: list[str] = _opt(["127.0.0.0/8", "::1/128"],
                                       "CIDRs allowed to send syslog (UDP and TCP).", "cidrs")
    tls_cert: Path | None = _opt(None, "PEM certificate; with tls_key, TCP speaks TLS.", "path")
    tls_key: Path | None = _opt(None, "PEM private key for syslog.tls_cert.", "path")
    tls_client_ca: Path | None = _opt(None, "PEM CA bundle; if set, TLS clients need a "
                                      "certificate it signed.", "path")
    max_message_size: int = _opt(64 * 1024, "Longest syslog message; longer ones are dropped.",
                                 "size", min=256)
    batch_size: int = _opt(500, "Messages committed together.", "int", min=1)
    flush_interval: float = _opt(0.2, "Longest wait before a partial batch is committed.",
                                 "duration", min=0.001)
    idle_timeout: float = _opt(300.0, "A TCP connection silent this long is closed.", "duration",
                               min=0.01)
    max_connections: int = _opt(256, "Most simultaneous TCP connections.", "int", min=1)
    udp_buffer: int = _opt(4 * 1024**2, "Receive buffer asked for the UDP socket.", "size")


@dataclass(frozen=True)
class TenancySettings:
    default_site: str = _opt("default", "Site of records whose host matches no [[sites]] entry.",
                             "str")
    unknown_host: str = _opt("default", "Records of no configured site: default (keep) or reject.",
                             "choice", choices=("default", "reject"))


@dataclass(frozen=True)
class AggregatesSettings:
    retention: float = _opt(30 * 86400.0, "Aggregates older than this (log or wall time) are "
                            "deleted.", "duration", min=3600.0)
    minute_retention: float = _opt(86400.0, "Per-minute rows older than this are rolled up to "
                                   "hours.", "duration", min=600.0)
    k_anonymity: int = _opt(5, "Groups with fewer distinct sessions are shown only as 'other'.",
                            "int", min=1)
    maintain_interval: float = _opt(60.0, "How often rollup and retention run.", "duration",
                                    min=1.0)


@dataclass(frozen=True)
class DetectSettings:
    enabled: bool = _opt(True, "Run the anomaly detectors on the aggregates.", "bool")
    interval: float = _opt(5.0, "How often the detectors look for completed minutes.",
                           "duration", min=0.05)
    grace: float = _opt(10.0, "A minute is evaluated once log time is this far past its end.",
                        "duration")
    quiet: float = _opt(120.0, "A live site silent this long is judged on the wall clock.",
                        "duration", min=1.0)
    warmup: float = _opt(1800.0, "Baseline needed before spike, drop and surge detectors alert.",
                         "duration")
    close_after: int = _opt(3, "Quiet minutes after which an open anomaly is closed.", "int",
                            min=1)
    baseline_halflife: float = _opt(3600.0, "Half-life of the EWMA level of each baseline.",
                                    "duration", min=60.0)
    season_halflife: float = _opt(3 * 86400.0, "Half-life of the daily seasonal profile (15-min "
                                  "slots).", "duration", min=3600.0)
    spike_z: float = _opt(6.0, "Traffic spike: minute count above forecast by this many sigmas.",
                          "float", min=0.0)
    spike_ratio: float = _opt(2.0, "Traffic spike: and at least this many times the forecast.",
                              "float", min=1.0)
    spike_min_requests: int = _opt(60, "Traffic spike: and at least this many requests a minute.",
                                   "int", min=1)
    drop_ratio: float = _opt(0.3, "Traffic drop: minute count at most this share of the forecast.",
                             "float", min=0.0, max=1.0)
    drop_z: float = _opt(5.0, "Traffic drop: and below forecast by this many sigmas.", "float",
                         min=0.0)
    drop_min_baseline: float = _opt(30.0, "Traffic drop: only when the forecast is at least this "
                                    "many requests a minute.", "float", min=0.0)
    error_min: int = _opt(10, "5xx spike: at least this many 5xx answers in the minute.", "int",
                          min=1)
    error_rate: float = _opt(0.05, "5xx spike: and a 5xx share of at least this.", "float",
                             min=0.0, max=1.0)
    error_factor: float = _opt(3.0, "5xx spike: and at least this many times the baseline share.",
                               "float", min=1.0)
    error_window_min: int = _opt(5, "5xx spike over the last 3 minutes (a small site's burst): "
                                 "at least this many 5xx, and the same shares.", "int", min=1)
    error_path_rate: float = _opt(0.3, "5xx on one path template: at least this share of the "
                                  "path's requests over 3 minutes (and error_min 5xx, "
                                  "error_factor x its baseline).", "float", min=0.0, max=1.0)
    scan_min_paths: int = _opt(15, "Scan: distinct 4xx path templates from one network or ASN "
                               "within scan_window.", "int", min=2)
    scan_min_targets: int = _opt(30, "Scan: or distinct 4xx targets (request paths) from one "
                                 "network or ASN within scan_window.", "int", min=2)
    scan_slow_window: float = _opt(3600.0, "Slow scan: longer window over which distinct 4xx "
                                   "targets are summed.", "duration", min=60.0)
    scan_slow_min_targets: int = _opt(100, "Slow scan: distinct 4xx targets within "
                                      "scan_slow_window.", "int", min=2)
    scan_window: float = _opt(120.0, "Scan: window over which distinct 4xx paths are summed.",
                              "duration", min=60.0)
    scan_min_share: float = _opt(0.5, "Scan: share of the network's requests that got a 4xx.",
                                 "float", min=0.0, max=1.0)
    auth_paths: str = _opt(r"(?i)(log-?in|sign-?in|auth|session|token|passw|account|wp-admin|"
                           r"xmlrpc)", "Auth failures: regex for login-like path templates.",
                           "regex")
    auth_min_failures: int = _opt(20, "Auth failures: 401/403 on one login-like path per minute.",
                                  "int", min=1)
    auth_site_min_failures: int = _opt(100, "Auth failures: 401/403 on the whole site per minute.",
                                       "int", min=1)
    auth_factor: float = _opt(4.0, "Auth failures: and at least this many times the baseline.",
                              "float", min=1.0)
    bot_min: int = _opt(30, "Bot surge: at least this many bot requests in the minute.", "int",
                        min=1)
    bot_ratio: float = _opt(3.0, "Bot surge: and at least this many times the forecast.", "float",
                            min=1.0)
    bot_z: float = _opt(6.0, "Bot surge: and above forecast by this many sigmas.", "float",
                        min=0.0)
    anon_min: int = _opt(20, "Anonymizers: VPN/Tor/proxy requests in the minute.", "int", min=1)
    anon_share: float = _opt(0.2, "Anonymizers: and at least this share of the minute's requests.",
                             "float", min=0.0, max=1.0)
    anon_hosting: bool = _opt(False, "Anonymizers: count hosting-provider traffic too.", "bool")
    newcomer_share: float = _opt(0.3, "Newcomer: a country/ASN with at least this share of a "
                                 "minute ...", "float", min=0.0, max=1.0)
    newcomer_min_requests: int = _opt(40, "Newcomer: ... and at least this many requests ...",
                                      "int", min=1)
    newcomer_absent_share: float = _opt(0.01, "Newcomer: ... whose baseline share was below this.",
                                        "float", min=0.0, max=1.0)
    webhook_url: str = _opt("", "POST each anomaly opened/closed as JSON here (empty: off).",
                            "str")
    webhook_retries: int = _opt(5, "Webhook attempts before giving up (exponential backoff).",
                                "int", min=1)
    webhook_timeout: float = _opt(5.0, "Webhook request timeout.", "duration", min=0.1)
    webhook_secret: Secret | None = _opt(None, "HMAC-SHA256 key signing each webhook POST "
                                         "(X-Lethelog-Signature t=,v1=; X-Hub-Signature-256); "
                                         "prefer the environment variable.", "secret")


@dataclass(frozen=True)
class QuerySettings:
    timeout: float = _opt(10.0, "A query running longer than this is stopped (503).", "duration",
                          min=0.001)
    max_rows: int = _opt(100_000, "Most rows one query returns; more are cut, with a note.",
                         "int", min=1)


@dataclass(frozen=True)
class AuditSettings:
    retention: float = _opt(400 * 86400.0, "Audit log entries older than this are pruned "
                            "(an anchor keeps the chain verifiable).", "duration", min=3600.0)
    fsync: bool = _opt(True, "fsync the audit log after every entry.", "bool")
    anchor_key_file: Path | None = _opt(None, "HMAC key of the retention anchors, kept outside "
                                        "the data dir (unset: DATA_DIR.audit-key beside it).",
                                        "path")


ROLES = ("shipper", "sre", "security", "admin")

# Per-site settings: (section, key) of the global setting, and which direction is stricter.
SITE_OVERRIDES: dict[str, tuple[str, str, str]] = {
    "idle_timeout": ("sessions", "idle_timeout", "lower"),
    "ipv4_keep_bits": ("masking", "ipv4_keep_bits", "lower"),
    "ipv6_keep_bits": ("masking", "ipv6_keep_bits", "lower"),
    "consent": ("masking", "consent", "drop"),
    "retention": ("aggregates", "retention", "lower"),
    "k_anonymity": ("aggregates", "k_anonymity", "higher"),
}


@dataclass(frozen=True)
class SiteSpec:
    """One ``[[sites]]`` entry: a customer site, its hosts, and settings stricter than global."""

    name: str
    hosts: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)

    def matches(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False


@dataclass(frozen=True)
class TokenSpec:
    """One ``[[tokens]]`` entry: a named credential, stored as its SHA-256 only."""

    name: str
    roles: tuple[str, ...]
    sha256: str
    networks: tuple[str, ...] = ()  # CIDR allowlist; empty = any network
    sites: tuple[str, ...] | None = None  # None = every site
    operator: bool = False  # the operator's own token: may omit sites when [[sites]] exist


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    sessions: SessionsSettings = field(default_factory=SessionsSettings)
    masking: MaskingSettings = field(default_factory=MaskingSettings)
    enrich: EnrichSettings = field(default_factory=EnrichSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    syslog: SyslogSettings = field(default_factory=SyslogSettings)
    tenancy: TenancySettings = field(default_factory=TenancySettings)
    aggregates: AggregatesSettings = field(default_factory=AggregatesSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    tokens: tuple[TokenSpec, ...] = ()
    sites: tuple[SiteSpec, ...] = ()

    def site(self, name: str) -> SiteSpec | None:
        return next((s for s in self.sites if s.name == name), None)

    def for_site(self, site: str, key: str) -> Any:
        """A per-site setting (``SITE_OVERRIDES`` key): the site's value, else the global one."""
        spec = self.site(site)
        if spec is not None and key in spec.overrides:
            return spec.overrides[key]
        section, name, _ = SITE_OVERRIDES[key]
        return getattr(getattr(self, section), name)

    @property
    def listen_host(self) -> str:
        return split_hostport(self.server.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_hostport(self.server.listen)[1]


SECTIONS: dict[str, type] = {
    f.name: f.type if isinstance(f.type, type) else globals()[str(f.type)]
    for f in dataclasses.fields(Settings)
    if f.name not in ("tokens", "sites")
}


def all_settings() -> list[tuple[str, dataclasses.Field[Any]]]:
    """Every (section, field) pair, for documentation and the documentation test."""
    out: list[tuple[str, dataclasses.Field[Any]]] = []
    for name, cls in SECTIONS.items():
        out.extend((name, f) for f in dataclasses.fields(cls))
    return out


# --------------------------------------------------------------------------- reading


def split_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be 0..65535, got {port}")
    return host.strip("[]"), int(port)


def _convert(kind: str, raw: Any, meta: Mapping[str, Any], from_env: bool) -> Any:
    if raw is None:
        return None
    if kind == "duration":
        value: Any = parse_duration(raw)
    elif kind == "size":
        value = parse_size(raw)
    elif kind == "int":
        if isinstance(raw, bool) or not (isinstance(raw, int) or (from_env and _is_int(raw))):
            raise ValueError(f"expected an integer, got {raw!r}")
        value = int(raw)
    elif kind == "float":
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"expected a number, got {raw!r}")
        try:
            value = float(raw) if (from_env or not isinstance(raw, str)) else float("nan")
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if value != value:
            raise ValueError(f"expected a number, got {raw!r}")
    elif kind == "regex":
        if not isinstance(raw, str):
            raise ValueError(f"expected a regular expression, got {raw!r}")
        try:
            re.compile(raw)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        value = raw
    elif kind == "bool":
        if isinstance(raw, bool):
            value = raw
        elif from_env and str(raw).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            value = str(raw).lower() in ("1", "true", "yes", "on")
        else:
            raise ValueError(f"expected true or false, got {raw!r}")
    elif kind == "path":
        if not isinstance(raw, str) and not isinstance(raw, Path):
            raise ValueError(f"expected a path, got {raw!r}")
        value = Path(raw) if str(raw) != "" else None
    elif kind in ("list", "cidrs"):
        if from_env and isinstance(raw, str):
            raw = [p.strip() for p in raw.split(",") if p.strip()]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise ValueError(f"expected a list of strings, got {raw!r}")
        if kind == "cidrs":
            for item in raw:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(
                        f"expected CIDR networks like 10.0.0.0/8, got {item!r}") from None
        value = list(raw)
    elif kind == "addr":
        if not isinstance(raw, str):
            raise ValueError(f"expected HOST:PORT, got {raw!r}")
        split_hostport(raw)
        value = raw
    elif kind == "secret":
        if not isinstance(raw, str):
            raise ValueError("expected a string")
        value = Secret(raw)
    else:  # str / choice
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {raw!r}")
        value = raw
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value is not None and value < lo:
        raise ValueError(f"must be at least {lo}, got {raw!r}")
    if hi is not None and value is not None and value > hi:
        raise ValueError(f"must be at most {hi}, got {raw!r}")
    return value


def _is_int(raw: Any) -> bool:
    return isinstance(raw, str) and re.fullmatch(r"-?\d+", raw.strip()) is not None


def env_name(section: str, key: str) -> str:
    return f"LETHELOG_{section.upper()}_{key.upper()}"


def load_settings(
    config_file: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build :class:`Settings` from a TOML file, ``LETHELOG_*`` variables and overrides.

    ``overrides`` maps ``"section.key"`` to a raw value (as a flag would give it).
    """
    env = os.environ if env is None else env
    doc: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"--config: file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"--config: {path} is not valid TOML: {exc}") from None
    lists = {"tokens", "sites"}
    for name in doc:
        if name not in SECTIONS and name not in lists:
            raise SettingsError(f"{name}: unknown section (known: {', '.join(SECTIONS)})")
    overrides = dict(overrides or {})
    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise SettingsError(f"{section}: expected a table [{section}]")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in table:
            if key not in known:
                raise SettingsError(f"{section}.{key}: unknown setting")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            dotted = f"{section}.{f.name}"
            raw: Any = dataclasses.MISSING
            from_env = False
            if dotted in overrides and overrides[dotted] is not None:
                raw, from_env = overrides[dotted], True
            elif env_name(section, f.name) in env:
                raw, from_env = env[env_name(section, f.name)], True
            elif f.name in table:
                raw = table[f.name]
            if raw is dataclasses.MISSING:
                continue
            try:
                kwargs[f.name] = _convert(f.metadata.get("kind", "str"), raw, f.metadata, from_env)
            except ValueError as exc:
                source = (
                    "flag" if dotted in overrides
                    else env_name(section, f.name) if env_name(section, f.name) in env
                    else "config"
                )
                where = "" if source == "config" else f" (from {source})"
                raise SettingsError(f"{dotted}{where}: {exc}") from None
        built[section] = cls(**kwargs)
    built["tokens"] = _read_tokens(doc.get("tokens", []))
    built["sites"] = _read_sites(doc.get("sites", []), built)
    settings = Settings(**built)
    _cross_checks(settings)
    return settings


def _read_sites(raw: Any, built: dict[str, Any]) -> tuple[SiteSpec, ...]:
    if not isinstance(raw, list):
        raise SettingsError("sites: expected [[sites]] entries")
    out: list[SiteSpec] = []
    for i, entry in enumerate(raw, 1):
        where = f"sites[{i}]"
        if not isinstance(entry, dict):
            raise SettingsError(f"{where}: expected a table")
        name = entry.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise SettingsError(f"{where}.name: expected a name of letters, digits, _.- (1-64), "
                                f"got {name!r}")
        if any(x.name == name for x in out):
            raise SettingsError(f"{where}.name: duplicate site name {name!r}")
        where = f"sites[{name}]"
        hosts = entry.get("hosts", [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise SettingsError(f"{where}.hosts: expected a list of host names or *.patterns")
        overrides: dict[str, Any] = {}
        for key, value in entry.items():
            if key in ("name", "hosts"):
                continue
            if key not in SITE_OVERRIDES:
                raise SettingsError(f"{where}.{key}: unknown per-site setting (known: "
                                    f"{', '.join(SITE_OVERRIDES)})")
            section, gkey, stricter = SITE_OVERRIDES[key]
            global_section = built.get(section)
            if global_section is None:
                raise SettingsError(f"{where}.{key}: not available in this build")
            gfield = next(f for f in dataclasses.fields(global_section) if f.name == gkey)
            try:
                v = _convert(gfield.metadata.get("kind", "str"), value, gfield.metadata, False)
            except ValueError as exc:
                raise SettingsError(f"{where}.{key}: {exc}") from None
            g = getattr(global_section, gkey)
            weaker = ((stricter == "lower" and v > g) or (stricter == "higher" and v < g)
                      or (stricter == "drop" and g == "drop" and v != "drop"))
            if weaker:
                raise SettingsError(f"{where}.{key}: may only be stricter than the global "
                                    f"{section}.{gkey} ({g!r}), got {v!r}")
            overrides[key] = v
        out.append(SiteSpec(name, tuple(h.lower() for h in hosts), overrides))
    return tuple(out)


def _read_tokens(raw: Any) -> tuple[TokenSpec, ...]:
    if not isinstance(raw, list):
        raise SettingsError("tokens: expected [[tokens]] entries")
    out: list[TokenSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw, 1):
        where = f"tokens[{i}]"
        if not isinstance(entry, dict):
            raise SettingsError(f"{where}: expected a table")
        unknown = set(entry) - {"name", "roles", "sha256", "networks", "sites", "operator"}
        if unknown:
            raise SettingsError(f"{where}.{sorted(unknown)[0]}: unknown setting")
        name = entry.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
            raise SettingsError(f"{where}.name: expected a name of letters, digits, _.@- "
                                f"(1-64), got {name!r}")
        if name in seen:
            raise SettingsError(f"{where}.name: duplicate token name {name!r}")
        seen.add(name)
        where = f"tokens[{name}]"
        roles = entry.get("roles")
        if (not isinstance(roles, list) or not roles
                or not all(isinstance(r, str) and r in ROLES for r in roles)):
            raise SettingsError(f"{where}.roles: expected a non-empty list of "
                                f"{', '.join(ROLES)}, got {roles!r}")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise SettingsError(f"{where}.sha256: expected 64 lowercase hex digits "
                                "(see `lethelog token new`)")
        try:
            networks = tuple(_convert("cidrs", entry.get("networks", []), {}, False))
        except ValueError as exc:
            raise SettingsError(f"{where}.networks: {exc}") from None
        sites = entry.get("sites")
        if sites is not None and (not isinstance(sites, list)
                                  or not all(isinstance(x, str) for x in sites)):
            raise SettingsError(f"{where}.sites: expected a list of site names")
        operator = entry.get("operator", False)
        if not isinstance(operator, bool):
            raise SettingsError(f"{where}.operator: expected true or false, got {operator!r}")
        out.append(TokenSpec(name, tuple(roles), digest, networks,
                             tuple(sites) if sites is not None else None, operator))
    return tuple(out)


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cross_checks(s: Settings) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", s.tenancy.default_site):
        raise SettingsError("tenancy.default_site: expected a site name of letters, digits, "
                            f"_.- (1-64; \"*\" is the all-sites view), got "
                            f"{s.tenancy.default_site!r}")
    names = {x.name for x in s.sites} | {s.tenancy.default_site}
    for t in s.tokens:
        for site in t.sites or ():
            if s.sites and site not in names:
                raise SettingsError(f"tokens[{t.name}].sites: unknown site {site!r}")
        if s.sites and t.sites is None and not t.operator:
            raise SettingsError(
                f"tokens[{t.name}].sites: a token without sites holds every site, which is for "
                "the operator's own tokens only: list its sites or set operator = true")
    for site in s.syslog.sites:
        if s.sites and site not in names:
            raise SettingsError(f"syslog.sites: unknown site {site!r}")
    if not s.tokens and not is_loopback(s.listen_host):
        raise SettingsError(
            f"server.listen: refusing to bind {s.listen_host} without [[tokens]]: without tokens "
            "every caller holds every role, so only loopback is allowed")
    if (s.server.tls_cert is None) != (s.server.tls_key is None):
        raise SettingsError("server.tls_cert: tls_cert and tls_key must be set together")
    _check_syslog(s.syslog)
    _check_store(s.store)
    secret = s.detect.webhook_secret
    if secret is not None and len(secret.reveal()) < 16:
        raise SettingsError("detect.webhook_secret: expected at least 16 characters (a random "
                            "string, e.g. `openssl rand -hex 32`), got a shorter one")
    for section, f in all_settings():
        if f.metadata.get("kind") == "path" and section == "enrich":
            value = getattr(getattr(s, section), f.name)
            if value is not None and not Path(value).is_file():
                raise SettingsError(f"enrich.{f.name}: file {str(value)!r} does not exist")


def _check_store(st: StoreSettings) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", st.redis_prefix):
        raise SettingsError(f"store.redis_prefix: expected letters, digits, _.:- (1-64), "
                            f"got {st.redis_prefix!r}")
    if (st.redis_tls_cert is None) != (st.redis_tls_key is None):
        raise SettingsError("store.redis_tls_cert: redis_tls_cert and redis_tls_key must be set "
                            "together")
    for name in ("redis_tls_ca", "redis_tls_cert", "redis_tls_key"):
        value = getattr(st, name)
        if value is None:
            continue
        if not st.redis_tls:
            raise SettingsError(f"store.{name}: set store.redis_tls = true to use it")
        if not Path(value).is_file():
            raise SettingsError(f"store.{name}: file {str(value)!r} does not exist")
    if st.backend == "redis" and not st.redis_nodes:
        raise SettingsError("store.redis_nodes: the redis backend needs at least one HOST:PORT")
    for node in st.redis_nodes:
        try:
            split_hostport(node)
        except ValueError as exc:
            raise SettingsError(f"store.redis_nodes: {exc}") from None


def _check_syslog(y: SyslogSettings) -> None:
    if (y.tls_cert is None) != (y.tls_key is None):
        raise SettingsError("syslog.tls_cert: tls_cert and tls_key must be set together")
    if y.tls_cert is not None and y.tcp is None:
        raise SettingsError("syslog.tls_cert: TLS needs the TCP listener (syslog.tcp)")
    if y.tls_client_ca is not None and y.tls_cert is None:
        raise SettingsError("syslog.tls_client_ca: client certificates need syslog.tls_cert")
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", y.source):
        raise SettingsError(f"syslog.source: expected a name of letters, digits, _.@- (1-64), "
                            f"got {y.source!r}")
    if y.udp is None and y.tcp is None:
        return
    from collector.parse import compile_format

    try:
        compile_format(y.format)
    except ValueError as exc:
        raise SettingsError(f"syslog.format: {exc}") from None
