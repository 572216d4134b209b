"""Zero-config GeoIP from the ``plevin`` databases on PyPI (declared dependencies).

``plevin-db-place`` (country, region, city, time zone) and ``plevin-db-network`` (AS number and
operator) are rebuilt daily from public sources and published as wheels; the one installed with
lethelog is the data's date (``built`` in its header, e.g. 2026-10-04). plevin's own reader
decodes LZMA blocks lazily and keeps them: ~3 ms per cold lookup and ~200 MiB after a few thousand
networks, too much for the service. So each file is converted once, in a child process, into a
compact cache of flat arrays — range starts (IPv4 as 32-bit, IPv6 by their top 64 bits, enough for
the /48 lethelog looks up) and a value id per range, plus the distinct values — that
:class:`RangeReader` searches with ``bisect`` (a few µs, ~20 MiB for both files).

The reader answers like a ``maxminddb.Reader`` (``get``, ``metadata``, ``close``) with
MaxMind-shaped records, so the GeoIP code treats it as one more database (role ``city`` for
place, ``asn`` for network). The cache lives in ``$XDG_CACHE_HOME/lethelog`` (else
``~/.cache/lethelog``, else the data directory): public network data only, never an address
lethelog saw; it is keyed by the source file's size and mtime, so an upgraded wheel is converted
again.
"""

from __future__ import annotations

import bisect
import datetime as dt
import importlib.util
import ipaddress
import mmap
import os
import subprocess
import sys
import tempfile
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["KINDS", "RangeReader", "cached", "convert", "find_source", "open_cached"]

MAGIC = b"LLPLV1\n"
_V6_SHIFT = 64
# kind -> (distribution, import name, role in lethelog, database_type)
KINDS: dict[str, tuple[str, str, str, str]] = {
    "place": ("plevin-db-place", "plevin_db_place", "city", "Plevin-City"),
    "network": ("plevin-db-network", "plevin_db_network", "asn", "Plevin-ASN"),
}


def find_source(kind: str) -> Path | None:
    """The installed plevin database file of ``kind``, located without importing it."""
    _dist, module, _role, _type = KINDS[kind]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted((Path(next(iter(spec.submodule_search_locations))) / "data").glob("*.plv"))
    return found[0] if found else None


@dataclass(frozen=True)
class _Meta:
    database_type: str
    build_epoch: int
    ip_version: int = 6
    description: dict[str, str] | None = None


class RangeReader:
    """One converted plevin file, read like a maxminddb Reader.

    Every table is a ``memoryview`` over the memory-mapped cache file: nothing is copied, and
    only the pages a binary search touches become resident.
    """

    def __init__(self, kind: str, tables: dict[str, memoryview], build_epoch: int,
                 built: str, keep: Any = None) -> None:
        self.kind = kind
        self.t = tables
        self._keep = keep  # the mmap behind the views
        self._meta = _Meta(database_type=KINDS[kind][3], build_epoch=build_epoch,
                           description={"en": f"plevin {kind} database built {built}"})

    def metadata(self) -> _Meta:
        return self._meta

    def close(self) -> None:
        """The views go with the last reference (a lookup may still hold them)."""

    def _text(self, ident: int) -> str | None:
        if not ident:
            return None
        offsets = self.t["offsets"]
        return bytes(self.t["strings"][offsets[ident - 1]:offsets[ident]]).decode()

    def _row(self, address: str) -> int:
        ip = ipaddress.ip_address(address)  # ValueError for garbage, as maxminddb
        if ip.version == 4:
            starts, ids, key = self.t["v4"], self.t["v4_ids"], int(ip)
        else:
            starts, ids, key = self.t["v6"], self.t["v6_ids"], int(ip) >> _V6_SHIFT
        i = bisect.bisect_right(starts, key) - 1
        return 0 if i < 0 else int(ids[i])

    def get(self, address: str) -> dict[str, Any] | None:
        row = self._row(address)
        if not row:
            return None
        if self.kind == "network":
            return {"autonomous_system_number": int(self.t["asn"][row]) or None,
                    "autonomous_system_organization": self._text(self.t["org"][row])}
        country = self._text(self.t["country"][row])
        if not country:
            return None
        rec: dict[str, Any] = {"country": {"iso_code": country}}
        region, city = self._text(self.t["region"][row]), self._text(self.t["city"][row])
        zone = self._text(self.t["zone"][row])
        if region:
            rec["subdivisions"] = [{"names": {"en": region}}]
        if city:
            rec["city"] = {"names": {"en": city}}
        if zone:
            rec["location"] = {"time_zone": zone}
        return rec


# ---------------------------------------------------------------------------- conversion


def _values(file: Any, kind: str) -> Callable[[int], Any]:
    """The value of one link id of the spine (0: nothing), read from plevin's columns."""
    s, pool = file.sections, file.sections["strings"]

    def text(column: str, row: int) -> str:
        return str(pool[s[column][row]]) if column in s else ""

    if kind == "network":
        operator = s.get("link.network.operator")

        def network(link: int) -> Any:
            row = link - 1
            asn = int(s["col.network.asn"][row])
            op = operator[row] if operator is not None else 0
            org = text("col.operator.company", op - 1) if op else ""
            return [asn, org or text("col.network.handle", row)]

        return network

    grain = file.reads["place.granularity"]
    zones = file.reads.get("city.timezone")

    def place(link: int) -> Any:
        row = link - 1
        city_row = s["link.place.city"][row] - 1
        if city_row < 0:
            return None
        granularity = grain(s["col.place.granularity"][row]) or "city"
        country = text("col.city.country", city_row)
        zone = zones(s["col.city.timezone"][city_row]) if zones else ""
        region = ""
        if granularity in ("city", "region"):
            region_row = s["link.city.region"][city_row] - 1
            region = text("col.region.name", region_row) if region_row >= 0 else ""
        city = text("col.city.name", city_row) if granularity == "city" else ""
        return [country, region, city, zone] if country else None

    return place


COLUMNS = {"network": ("asn", "org"), "place": ("country", "region", "city", "zone")}


class _Pool:
    """Distinct strings, numbered from 1 (0: none), stored as offsets plus UTF-8 bytes."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.data = bytearray()
        self.offsets = array("I", [0])

    def __call__(self, text: str | None) -> int:
        if not text:
            return 0
        ident = self.ids.get(text)
        if ident is None:
            self.data += text.encode()
            self.offsets.append(len(self.data))
            ident = self.ids[text] = len(self.offsets) - 1
        return ident


def convert(kind: str, source: Path, target: Path) -> None:
    """Convert plevin's ``source`` file into the compact cache ``target`` (atomically)."""
    from plevin.reader import File  # only in the converting child process

    file = File(source)
    link = "network" if kind == "network" else "place"
    read = _values(file, kind)
    pool = _Pool()
    columns = {name: array("I", [0]) for name in COLUMNS[kind]}  # row 0: nothing
    known: dict[int, int] = {0: 0}
    sections: dict[str, bytes] = {}
    for version, code in ((4, "I"), (6, "Q")):
        spine = file.sections.get(f"spine.v{version}")
        column = file.sections.get(f"spine.v{version}.{link}")
        starts, ids = array(code), array("I")
        if spine is not None and column is not None:
            for row in range(spine.count):
                start = int(spine[row])
                key = start if version == 4 else start >> _V6_SHIFT
                ident = int(column[row])
                if ident not in known:
                    value = read(ident) if ident else None
                    if not value:
                        known[ident] = 0
                    else:
                        known[ident] = len(columns[COLUMNS[kind][0]])
                        for name, item in zip(COLUMNS[kind], value, strict=True):
                            columns[name].append(item if name == "asn" else pool(item))
                if starts and key <= starts[-1]:  # finer than a /64: the first one stands
                    continue
                starts.append(key)
                ids.append(known[ident])
        sections[f"v{version}"] = starts.tobytes()
        sections[f"v{version}_ids"] = ids.tobytes()
    for name, values in columns.items():
        sections[name] = values.tobytes()
    sections["offsets"] = pool.offsets.tobytes()
    sections["strings"] = bytes(pool.data)
    built = str(file.built)
    day = dt.datetime.strptime(built[:10], "%Y-%m-%d").replace(tzinfo=dt.UTC)
    _write(target, {"kind": kind, "built": built, "build_epoch": int(day.timestamp())},
           sections)


_CODES = {"v4": "I", "v6": "Q", "strings": "B"}


def _write(target: Path, header: dict[str, Any], sections: dict[str, bytes]) -> None:
    """MAGIC, header length, JSON header (with each section's offset and length), then the
    sections, each aligned to 8 bytes."""
    table: dict[str, list[int]] = {}
    at = 0
    for name, blob in sections.items():
        table[name] = [at, len(blob)]
        at += -(-len(blob) // 8) * 8
    head = orjson.dumps({**header, "sections": table})
    head += b" " * (-(len(MAGIC) + 8 + len(head)) % 8)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fastdata-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(MAGIC + len(head).to_bytes(8, "little") + head)
            for blob in sections.values():
                out.write(blob + bytes(-len(blob) % 8))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> RangeReader:
    with path.open("rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    if bytes(view[:len(MAGIC)]) != MAGIC:
        raise ValueError(f"{path}: not a lethelog plevin cache file")
    size = int.from_bytes(view[len(MAGIC):len(MAGIC) + 8], "little")
    body = len(MAGIC) + 8 + size
    try:
        header = orjson.loads(bytes(view[len(MAGIC) + 8:body]))
        kind = str(header["kind"])
        tables: dict[str, memoryview] = {}
        for name, (offset, length) in header["sections"].items():
            if body + offset + length > len(view):
                raise ValueError(f"{path}: truncated cache file")
            code: Any = _CODES.get(name, "I")
            tables[name] = view[body + offset:body + offset + length].cast(code)
        rows = len(tables[COLUMNS[kind][0]])
        for v in ("v4", "v6"):
            if len(tables[v]) != len(tables[f"{v}_ids"]) or (
                    len(tables[f"{v}_ids"]) and max(tables[f"{v}_ids"]) >= rows):
                raise ValueError(f"{path}: inconsistent cache file")
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"{path}: damaged cache file ({type(exc).__name__})") from None
    return RangeReader(kind, tables, int(header["build_epoch"]), str(header["built"]),
                       keep=mapped)


def _cache_dirs(data_dir: Path | None) -> list[Path]:
    dirs = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        dirs.append(Path(xdg) / "lethelog")
    home = os.environ.get("HOME")
    if home:
        dirs.append(Path(home) / ".cache" / "lethelog")
    if data_dir is not None:
        dirs.append(data_dir / "cache")
    return dirs


def _name(kind: str, source: Path) -> str:
    st = source.stat()
    return f"plevin-{kind}-{st.st_size}-{st.st_mtime_ns}.bin"


def cached(kind: str, source: Path, data_dir: Path | None = None) -> bool:
    """Is ``source`` converted already (so opening it is fast)?"""
    name = _name(kind, source)
    return any((d / name).is_file() for d in _cache_dirs(data_dir))


def open_cached(kind: str, source: Path, data_dir: Path | None = None) -> RangeReader:
    """The reader for ``source``, converting it first (in a child process) if not cached.

    Raises ``ValueError`` when no cache directory is writable or the conversion fails.
    """
    name = _name(kind, source)
    errors: list[str] = []
    for directory in _cache_dirs(data_dir):
        path = directory / name
        if path.is_file():
            try:
                return _read(path)
            except (ValueError, OSError) as exc:  # damaged: convert it again
                errors.append(str(exc))
                path.unlink(missing_ok=True)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            errors.append(f"{directory}: {exc}")
            continue
        done = subprocess.run(
            [sys.executable, "-m", "collector.enrich.fastdata", kind, str(source), str(path)],
            capture_output=True, text=True, timeout=600, check=False,
        )
        if done.returncode == 0 and path.is_file():
            return _read(path)
        errors.append(f"{directory}: conversion failed: {done.stderr.strip()[-300:]}")
    raise ValueError(f"plevin {kind} data could not be converted: " + "; ".join(errors))


if __name__ == "__main__":  # the child process of open_cached
    convert(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
