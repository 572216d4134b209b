"""GeoIP enrichment from MaxMind-format (.mmdb) databases, hot-reloadable.

Every open database belongs to one immutable :class:`_Generation` together with the LRU cache
of lookups made against it. :meth:`GeoEnricher.lookup` reads ``self._gen`` once, so a record is
enriched by exactly one generation even while :meth:`GeoEnricher.reload` swaps in a new one;
the swap is a single reference assignment. Old readers are not closed explicitly (a lookup in
another thread may still hold them): they are released when the last reference goes.

With no City/Country database configured and ``default_db`` on, a database installed from PyPI
serves country/region/city (see :mod:`.defaults`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import importlib.metadata
import os
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import maxminddb
import structlog

from collector.settings import EnrichSettings

from . import fastdata
from .defaults import DefaultDatabase, find_default_database

__all__ = ["GEO_FIELDS", "ROLES", "GeoEnricher"]

log = structlog.get_logger("lethelog.enrich.geo")

GEO_FIELDS: tuple[str, ...] = (
    "country",
    "region",
    "city",
    "timezone",
    "asn",
    "isp",
    "connection_type",
    "is_anonymous_proxy",
    "is_vpn",
    "is_tor",
    "is_hosting",
)

# role -> (settings field, words one of which the database_type must contain)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "city": ("city_db", ("city", "enterprise")),
    "country": ("country_db", ("country", "city", "enterprise")),
    "asn": ("asn_db", ("asn", "isp")),
    "isp": ("isp_db", ("isp",)),
    "anonymous_ip": ("anonymous_ip_db", ("anonymous",)),
    "connection_type": ("connection_type_db", ("connection",)),
}

_EMPTY: dict[str, Any] = dict.fromkeys(GEO_FIELDS)
_PRECISION = {"country": 0, "region": 1, "city": 2}
# Addresses looked up once after opening a file, to refuse files whose data section is broken.
_PROBES = ("1.1.1.1", "8.8.8.8", "81.2.69.142", "2001:4860::1")

PLEVIN_LICENCE = {
    "place": "plevin place database (built daily from MaxMind GeoLite2-City under the GeoLite2 "
             "EULA, IP2Location LITE DB11 under CC BY-SA 4.0 — 'This site or product includes "
             "IP2Location LITE data available from https://lite.ip2location.com' — and GeoNames "
             "under CC BY 4.0); reader Apache-2.0",
    "network": "plevin network database (built daily from RIPE RIS routing data and RIR "
               "registry data under the RIRs' terms, RIPE NCC AS names, CAIDA AS Organizations "
               "under the CAIDA AUP, PeeringDB under CC BY 4.0); reader Apache-2.0",
}

StatKey = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


def _stat_key(path: Path) -> StatKey:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _source_note(database_type: str, description: str) -> str:
    t = database_type.lower()
    if t.startswith("geolite2"):
        return "MaxMind GeoLite2 (GeoLite2 EULA; attribution to MaxMind required)"
    if t.startswith("geoip2"):
        return "MaxMind GeoIP2 (commercial MaxMind licence)"
    if t.startswith("dbip"):
        return "DB-IP Lite (CC BY 4.0; attribution: IP Geolocation by DB-IP)"
    if t.startswith("plevin"):
        return PLEVIN_LICENCE["place" if "city" in t else "network"]
    return description or database_type


@dataclass(frozen=True)
class _Database:
    """One open .mmdb file in one role."""

    role: str
    path: Path
    reader: Any  # maxminddb.Reader (C extension when available)
    stat: StatKey
    database_type: str
    build_epoch: int
    source: str
    default: DefaultDatabase | None = None


def _open(role: str, path: Path, setting: str) -> _Database:
    """Open and sanity-check ``path``; ``ValueError`` naming ``setting`` if it is not usable."""
    try:
        stat = _stat_key(path)
        reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except FileNotFoundError:
        raise ValueError(f"enrich.{setting}: file {str(path)!r} does not exist") from None
    except (maxminddb.InvalidDatabaseError, ValueError, OSError, RuntimeError) as exc:
        raise ValueError(
            f"enrich.{setting}: {str(path)!r} is not a valid MaxMind DB (.mmdb) file: {exc}"
        ) from None
    try:
        meta = reader.metadata()
        dbtype = str(meta.database_type)
        words = ROLES[role][1]
        if not any(w in dbtype.lower() for w in words):
            raise ValueError(
                f"enrich.{setting}: {str(path)!r} is a {dbtype!r} database, "
                f"expected one whose type contains {' or '.join(words)}"
            )
        for probe in _PROBES:
            if ":" in probe and meta.ip_version == 4:
                continue
            reader.get(probe)
        description = str((meta.description or {}).get("en", ""))
        return _Database(
            role=role,
            path=path,
            reader=reader,
            stat=stat,
            database_type=dbtype,
            build_epoch=int(meta.build_epoch),
            source=_source_note(dbtype, description),
        )
    except ValueError as exc:
        reader.close()
        if str(exc).startswith(f"enrich.{setting}:"):
            raise
        raise ValueError(f"enrich.{setting}: {str(path)!r} has corrupt data: {exc}") from None
    except Exception as exc:  # InvalidDatabaseError and friends from a damaged search tree
        reader.close()
        raise ValueError(f"enrich.{setting}: {str(path)!r} has corrupt data: {exc}") from None


def _name(names: Any) -> str | None:
    if isinstance(names, Mapping):
        value = names.get("en")
        return str(value) if value else None
    return None


def _extract(dbs: Mapping[str, _Database], precision: int) -> Callable[[str], dict[str, Any]]:
    """The uncached lookup of one address against one generation's readers."""
    city = dbs.get("city")
    country = dbs.get("country")
    asn = dbs.get("asn")
    isp = dbs.get("isp")
    anon = dbs.get("anonymous_ip")
    conn = dbs.get("connection_type")
    location_dbs = [d.reader for d in (city, country) if d is not None]

    def look(address: str) -> dict[str, Any]:
        out = dict(_EMPTY)
        for reader in location_dbs:
            rec = reader.get(address)
            if not rec:
                continue
            if out["country"] is None:
                c = rec.get("country") or {}
                out["country"] = c.get("iso_code")
            if precision >= 1 and out["region"] is None:
                subs = rec.get("subdivisions") or []
                if subs:
                    out["region"] = _name(subs[0].get("names"))
            if precision >= 1 and out["timezone"] is None:
                out["timezone"] = (rec.get("location") or {}).get("time_zone")
            if precision >= 2 and out["city"] is None:
                out["city"] = _name((rec.get("city") or {}).get("names"))
        org: str | None = None
        if isp is not None:
            rec = isp.reader.get(address) or {}
            out["asn"] = rec.get("autonomous_system_number")
            out["isp"] = rec.get("isp")
            org = rec.get("autonomous_system_organization")
        if asn is not None and (out["asn"] is None or org is None):
            rec = asn.reader.get(address) or {}
            if out["asn"] is None:
                out["asn"] = rec.get("autonomous_system_number")
            org = org or rec.get("autonomous_system_organization")
        if out["isp"] is None:
            out["isp"] = org
        if conn is not None:
            out["connection_type"] = (conn.reader.get(address) or {}).get("connection_type")
        if anon is not None:
            rec = anon.reader.get(address) or {}
            out["is_anonymous_proxy"] = bool(
                rec.get("is_public_proxy") or rec.get("is_residential_proxy")
            )
            out["is_vpn"] = bool(rec.get("is_anonymous_vpn"))
            out["is_tor"] = bool(rec.get("is_tor_exit_node"))
            out["is_hosting"] = bool(rec.get("is_hosting_provider"))
        return out

    return look


@dataclass(frozen=True)
class _Generation:
    """Immutable set of open databases plus the cache of lookups made against exactly them."""

    number: int
    dbs: Mapping[str, _Database]
    lookup: Callable[[str], dict[str, Any]] = field(repr=False)
    cached: Any = field(repr=False)  # functools._lru_cache_wrapper


def _generation(
    number: int, dbs: Mapping[str, _Database], precision: int, cache_size: int
) -> _Generation:
    look = _extract(dbs, precision)
    cached = functools.lru_cache(maxsize=cache_size)(look)
    return _Generation(number=number, dbs=dict(dbs), lookup=look, cached=cached)


class GeoEnricher:
    """GeoIP lookups for the masked (default) or full client address; see module docstring."""

    def __init__(self, settings: EnrichSettings, data_dir: Path | None = None,
                 background: bool = False) -> None:
        """``data_dir``: where converted default data may be cached when no user cache
        directory is writable (see :mod:`.fastdata`). ``background``: a default database not
        converted yet is converted in a thread and swapped in when ready (the service starts
        at once, on the older fallback); else the constructor waits for it."""
        self.settings = settings
        self._use_full = settings.geo_from == "full"
        self._precision = _PRECISION.get(settings.geo_precision, 2)
        self._lock = threading.Lock()
        self._closed = False
        self.last_errors: dict[str, str] = {}
        self._refused: dict[str, StatKey] = {}
        paths: dict[str, tuple[Path, str]] = {}
        for role, (setting, _words) in ROLES.items():
            value = getattr(settings, setting, None)
            if value is not None:
                paths[role] = (Path(value), setting)
        dbs: dict[str, _Database] = {}
        try:
            for role, (path, setting) in paths.items():
                dbs[role] = _open(role, path, setting)
            if settings.default_db:
                self._add_defaults(dbs, data_dir, wait=not background)
        except Exception:  # close what was opened, then report
            for db in dbs.values():
                db.reader.close()
            raise
        self._paths = paths
        self._gen = _generation(1, dbs, self._precision, settings.geo_cache_size)
        for item in self.info():
            if item.get("warning"):
                log.warning("enrich.geo.stale_database", role=item["role"], path=item["path"],
                            warning=item["warning"])

    def _add_defaults(self, dbs: dict[str, _Database], data_dir: Path | None,
                      wait: bool) -> None:
        """Fill every role no file is configured for: plevin's place and network databases
        (fresh, from PyPI), else the older packaged City databases (:mod:`.defaults`)."""
        wanted = {}
        if "city" not in dbs and "country" not in dbs:
            wanted["place"] = "city"
        if "asn" not in dbs and "isp" not in dbs:
            wanted["network"] = "asn"
        pending = []
        for kind in wanted:
            source = fastdata.find_source(kind)
            if source is None:
                continue
            if wait or fastdata.cached(kind, source, data_dir):
                db = self._plevin(kind, source, data_dir)
                if db is not None:
                    dbs[db.role] = db
            else:
                pending.append((kind, source))
        if "city" not in dbs and "country" not in dbs:
            default = find_default_database()
            if default is not None:
                db = _open(default.role, default.path, "default_db")
                dbs[default.role] = dataclasses.replace(
                    db, source=f"{default.package} {default.version}: {default.licence}",
                    default=default)
        if pending:
            log.info("enrich.geo.default_converting", kinds=[k for k, _ in pending],
                     note="first start: plevin data is converted once; the fallback serves "
                     "until it is ready")
            threading.Thread(target=self._convert_later, args=(pending, data_dir),
                             name="lethelog-geo-convert", daemon=True).start()

    def _plevin(self, kind: str, source: Path, data_dir: Path | None) -> _Database | None:
        try:
            reader = fastdata.open_cached(kind, source, data_dir)
        except (ValueError, OSError, subprocess.SubprocessError) as exc:
            log.warning("enrich.geo.default_unavailable", package=fastdata.KINDS[kind][0],
                        reason=str(exc))
            return None
        dist = fastdata.KINDS[kind][0]
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        meta = reader.metadata()
        role = fastdata.KINDS[kind][2]
        return _Database(
            role=role, path=source, reader=reader, stat=_stat_key(source),
            database_type=meta.database_type, build_epoch=meta.build_epoch,
            source=f"{dist} {version}: {PLEVIN_LICENCE[kind]}",
            default=DefaultDatabase(package=dist, version=version, path=source, role=role,
                                    licence=PLEVIN_LICENCE[kind]),
        )

    def _convert_later(self, pending: list[tuple[str, Path]], data_dir: Path | None) -> None:
        for kind, source in pending:
            db = self._plevin(kind, source, data_dir)
            if db is None:
                continue
            with self._lock:
                old = self._gen
                if self._closed:
                    return
                new_dbs = dict(old.dbs)
                if db.role == "city":  # replaces the older packaged location database
                    for role in ("city", "country"):
                        if role in new_dbs and new_dbs[role].default is not None:
                            del new_dbs[role]
                new_dbs[db.role] = db
                self._gen = _generation(old.number + 1, new_dbs, self._precision,
                                        self.settings.geo_cache_size)
            log.info("enrich.geo.default_ready", role=db.role, database_type=db.database_type,
                     build_date=_iso(db.build_epoch), generation=self._gen.number)

    # ------------------------------------------------------------------ lookups

    @property
    def configured(self) -> bool:
        """Is at least one database open?"""
        return bool(self._gen.dbs)

    @property
    def generation(self) -> int:
        return self._gen.number

    @property
    def from_full_address(self) -> bool:
        """Whether lookups use the full address (``geo_from = "full"``) or the masked one."""
        return self._use_full

    def lookup(self, masked_ip: str | None, full_ip: str | None) -> dict[str, Any]:
        """Every key of :data:`GEO_FIELDS`, ``None`` where unknown.

        Looks up ``masked_ip`` unless ``geo_from = "full"`` (then ``full_ip``, which is used in
        memory only and never returned). Invalid or missing addresses give all ``None``.
        """
        gen = self._gen  # exactly one generation for the whole record
        address = full_ip if self._use_full else masked_ip
        if not address or not gen.dbs:
            return dict(_EMPTY)
        try:
            return dict(gen.cached(address))
        except (ValueError, TypeError):  # not an IP address (hostname, unix:, NUL, garbage)
            return dict(_EMPTY)

    def lookup_generation(
        self, masked_ip: str | None, full_ip: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Like :meth:`lookup`, also returning the number of the generation that answered."""
        gen = self._gen
        address = full_ip if self._use_full else masked_ip
        if not address or not gen.dbs:
            return gen.number, dict(_EMPTY)
        try:
            return gen.number, dict(gen.cached(address))
        except (ValueError, TypeError):
            return gen.number, dict(_EMPTY)

    def cache_info(self) -> dict[str, int]:
        info = self._gen.cached.cache_info()
        return {"hits": info.hits, "misses": info.misses, "size": info.currsize}

    # ------------------------------------------------------------------ reload

    def reload(self) -> list[str]:
        """Re-open every configured file whose inode, size or mtime changed.

        Returns the roles reloaded. A file that cannot be opened is refused: the old reader
        stays in service, the reason is logged (``enrich.geo.reload_refused``) and kept in
        ``last_errors`` / :meth:`info`; the same broken file is not retried until it changes.
        """
        with self._lock:
            old = self._gen
            new_dbs = dict(old.dbs)
            reloaded: list[str] = []
            for role, (path, setting) in self._paths.items():
                try:
                    key = _stat_key(path)
                except OSError as exc:
                    # geoipupdate replaces by rename, so a missing file is transient: keep old.
                    self._refuse(role, path, None, f"cannot stat: {exc}")
                    continue
                current = old.dbs.get(role)
                if current is not None and current.stat == key:
                    continue
                if self._refused.get(role) == key:
                    continue
                try:
                    new_dbs[role] = _open(role, path, setting)
                except ValueError as exc:
                    self._refuse(role, path, key, str(exc))
                    continue
                self._refused.pop(role, None)
                self.last_errors.pop(role, None)
                reloaded.append(role)
            if reloaded:
                self._gen = _generation(
                    old.number + 1, new_dbs, self._precision, self.settings.geo_cache_size
                )
                for role in reloaded:
                    db = new_dbs[role]
                    log.info("enrich.geo.reloaded", role=role, path=str(db.path),
                             database_type=db.database_type, build_date=_iso(db.build_epoch),
                             generation=self._gen.number)
            return reloaded

    def _refuse(self, role: str, path: Path, key: StatKey | None, reason: str) -> None:
        if key is not None:
            self._refused[role] = key
        if self.last_errors.get(role) != reason:
            log.error("enrich.geo.reload_refused", role=role, path=str(path), reason=reason,
                      kept="previous database stays in service")
        self.last_errors[role] = reason

    async def watch(self, interval: float) -> None:
        """Every ``interval`` seconds, reload changed files; runs until cancelled."""
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.reload)
            except Exception as exc:  # never let the watcher die
                log.error("enrich.geo.watch_failed", error=str(exc))

    # ------------------------------------------------------------------ reporting

    def info(self) -> list[dict[str, Any]]:
        """One entry per open database, for ``/healthz`` and the startup log."""
        now = dt.datetime.now(dt.UTC)
        max_days = self.settings.max_db_age / 86400.0
        out: list[dict[str, Any]] = []
        for role, db in self._gen.dbs.items():
            built = dt.datetime.fromtimestamp(db.build_epoch, dt.UTC)
            age = (now - built).total_seconds() / 86400.0
            stale = age > max_days
            entry: dict[str, Any] = {
                "role": role,
                "path": str(db.path),
                "database_type": db.database_type,
                "build_date": built.date().isoformat(),
                "age_days": int(age),
                "source": db.source,
                "default": db.default is not None,
                "stale": stale,
                "warning": (
                    f"{db.database_type} built {built.date().isoformat()} is {int(age)} days old "
                    f"(enrich.max_db_age is {max_days:g} days); update it"
                    if stale else None
                ),
                "generation": self._gen.number,
            }
            if db.default is not None:
                entry["package"] = f"{db.default.package} {db.default.version}"
                entry["licence"] = db.default.licence
            if role in self.last_errors:
                entry["reload_error"] = self.last_errors[role]
            out.append(entry)
        return out

    def close(self) -> None:
        self._closed = True
        gen = self._gen
        self._gen = _generation(gen.number + 1, {}, self._precision, 0)
        for db in gen.dbs.values():
            db.reader.close()


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).date().isoformat()

