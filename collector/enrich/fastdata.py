"""Zero-config country and AS organisation data from the ``geoip2fast`` package (a dependency).

geoip2fast ships GeoLite2-derived country and ASN tables (``MAXMIND:GeoLite2-CountryASN-…``, built
2024-06-18) as a pickled ``.dat.gz``. Unpickled in the service they would cost ~95 MiB of Python
lists, so they are converted once, in a child process, into a compact cache file of flat arrays
(~9 MiB, sorted range starts and ends plus name ids) that :class:`RangeReader` reads with
``bisect``. The reader answers like a ``maxminddb.Reader`` (``get``, ``metadata``, ``close``), so
the GeoIP code treats it as one more database in the role ``asn`` (organisation, shown as
``isp``; the tables carry no AS *numbers*) or ``country``.

The cache lives in ``$XDG_CACHE_HOME/lethelog`` (else ``~/.cache/lethelog``), else in the data
directory; it holds only public network data, never an address seen by lethelog. It is keyed by
the source file's size and mtime, so an upgraded package is converted again.
"""

from __future__ import annotations

import bisect
import datetime as dt
import gzip
import importlib.util
import ipaddress
import os
import pickle
import subprocess
import sys
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["DATA_FILE", "RangeReader", "convert", "find_source", "open_cached"]

DATA_FILE = "geoip2fast-asn-ipv6.dat.gz"
MAGIC = b"LLG2F1\n"
_V6_SHIFT = 64  # v6 ranges are kept by their upper 64 bits (lookups are of /48 or coarser)


def find_source() -> Path | None:
    """The installed geoip2fast country+ASN data file, located without importing the package."""
    try:
        spec = importlib.util.find_spec("geoip2fast")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / DATA_FILE
    return path if path.is_file() else None


@dataclass(frozen=True)
class _Meta:
    database_type: str
    build_epoch: int
    ip_version: int = 6
    description: dict[str, str] | None = None


class _Table:
    """Sorted, non-overlapping ranges of one address family: start, end, name id."""

    def __init__(self, code: str) -> None:
        self.starts = array(code)
        self.ends = array(code)
        self.ids = array("I")

    def find(self, key: int) -> int | None:
        i = bisect.bisect_right(self.starts, key) - 1
        if i < 0 or key > self.ends[i]:
            return None
        return int(self.ids[i])

    def dump(self) -> list[bytes]:
        return [self.starts.tobytes(), self.ends.tobytes(), self.ids.tobytes()]

    def load(self, blobs: list[bytes]) -> None:
        self.starts.frombytes(blobs[0])
        self.ends.frombytes(blobs[1])
        self.ids.frombytes(blobs[2])


class RangeReader:
    """One kind (``country`` or ``asn``) of the converted tables, read like a maxminddb Reader."""

    def __init__(self, kind: str, names: list[str], v4: _Table, v6: _Table, build_epoch: int,
                 source: str) -> None:
        self.kind = kind
        self.names = names
        self.v4 = v4
        self.v6 = v6
        self._meta = _Meta(
            database_type=f"GeoIP2Fast-{'ASN' if kind == 'asn' else 'Country'}",
            build_epoch=build_epoch,
            description={"en": source},
        )

    def metadata(self) -> _Meta:
        return self._meta

    def close(self) -> None:
        """Nothing to release: the tables are plain arrays."""

    def get(self, address: str) -> dict[str, Any] | None:
        ip = ipaddress.ip_address(address)  # ValueError for garbage, as maxminddb
        if ip.version == 4:
            found = self.v4.find(int(ip))
        else:
            found = self.v6.find(int(ip) >> _V6_SHIFT)
        if found is None or found >= len(self.names):
            return None
        name = self.names[found]
        if not name:
            return None
        if self.kind == "asn":
            return {"autonomous_system_organization": name}
        return {"country": {"iso_code": name}}


# ---------------------------------------------------------------------------- conversion


def _ranges(index: list[list[int]], first: list[list[int]], ids: list[list[int]],
            netlen: list[list[int]], keep: list[int]) -> tuple[_Table, _Table]:
    """geoip2fast's chunked lists (v4 and v6 in one sorted key space) as two flat tables."""
    del index  # the chunk index only speeds up geoip2fast's own search
    v4, v6 = _Table("I"), _Table("Q")
    for chunk_first, chunk_ids, chunk_len in zip(first, ids, netlen, strict=True):
        for start, ident, length in zip(chunk_first, chunk_ids, chunk_len, strict=True):
            new_id = keep[ident] if ident < len(keep) else 0
            if start < 2**32 and length <= 32:
                table, key, end = v4, start, start + 2 ** (32 - length) - 1
                if end >= 2**32:
                    continue
            else:
                if length > 128:
                    continue
                table = v6
                key = start >> _V6_SHIFT
                end = (start + 2 ** (128 - length) - 1) >> _V6_SHIFT
            if table.starts and key <= table.ends[-1]:  # overlap after v6 coarsening: keep first
                if end <= table.ends[-1]:
                    continue
                key = table.ends[-1] + 1
            table.starts.append(key)
            table.ends.append(end)
            table.ids.append(new_id)
    return v4, v6


def _country_names(raw: list[str]) -> tuple[list[str], list[int]]:
    """Names ``"CC:Country"``: ISO codes kept; reserved/private rows ("01:…"…"99:…") dropped."""
    names = [""]
    keep: list[int] = []
    for item in raw:
        code = item.split(":", 1)[0]
        if len(code) == 2 and code.isalpha():
            keep.append(len(names))
            names.append(code.upper())
        else:
            keep.append(0)
    return names, keep


def _asn_names(raw: list[str]) -> tuple[list[str], list[int]]:
    names = [""]
    keep: list[int] = []
    for item in raw:
        if not item or item.startswith("<"):
            keep.append(0)
        else:
            keep.append(len(names))
            names.append(item)
    return names, keep


def _build_epoch(source: str) -> int:
    stamp = source.rsplit("-", 1)[-1]
    try:
        day = dt.datetime.strptime(stamp, "%Y%m%d").replace(tzinfo=dt.UTC)
    except ValueError:
        return 0
    return int(day.timestamp())


def convert(source: Path, target: Path) -> None:
    """Convert geoip2fast's ``.dat.gz`` into the compact cache file ``target`` (atomically)."""
    with gzip.open(source, "rb") as fh:
        version, info, _total, db = pickle.load(fh)  # the installed package's own data file
    if version not in (120, 121) or not (info.get("country") and info.get("asn")):
        raise ValueError(f"{source.name}: not a geoip2fast country+ASN file (v{version})")
    (index, index_asn, country_raw, asn_raw, first, first_asn, cc_ids, asn_ids, netlen,
     netlen_asn) = db
    c_names, c_keep = _country_names(country_raw)
    a_names, a_keep = _asn_names(asn_raw)
    c4, c6 = _ranges(index, first, cc_ids, netlen, c_keep)
    a4, a6 = _ranges(index_asn, first_asn, asn_ids, netlen_asn, a_keep)
    header = {"source": str(info.get("info", "")), "build_epoch": _build_epoch(
        str(info.get("info", ""))), "country": c_names, "asn": a_names}
    blobs = [orjson.dumps(header), *c4.dump(), *c6.dump(), *a4.dump(), *a6.dump()]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fastdata-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(MAGIC)
            for blob in blobs:
                out.write(len(blob).to_bytes(8, "little"))
                out.write(blob)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> dict[str, RangeReader]:
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path}: not a lethelog geoip2fast cache file")
    pos = len(MAGIC)
    blobs: list[bytes] = []
    while pos < len(data):
        size = int.from_bytes(data[pos:pos + 8], "little")
        pos += 8
        blobs.append(data[pos:pos + size])
        pos += size
    if len(blobs) != 13:
        raise ValueError(f"{path}: truncated cache file")
    header = orjson.loads(blobs[0])
    tables = []
    for i, code in enumerate(("I", "Q", "I", "Q")):
        t = _Table(code)
        t.load(blobs[1 + 3 * i: 4 + 3 * i])
        tables.append(t)
    epoch, source = int(header["build_epoch"]), str(header["source"])
    return {
        "country": RangeReader("country", header["country"], tables[0], tables[1], epoch, source),
        "asn": RangeReader("asn", header["asn"], tables[2], tables[3], epoch, source),
    }


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


def open_cached(source: Path, data_dir: Path | None = None) -> dict[str, RangeReader]:
    """The readers for ``source``, converting it first (in a child process) if no cache exists.

    Raises ``ValueError`` when no cache directory is writable or the conversion fails.
    """
    st = source.stat()
    name = f"geoip2fast-{st.st_size}-{st.st_mtime_ns}.bin"
    errors: list[str] = []
    for directory in _cache_dirs(data_dir):
        path = directory / name
        if path.is_file():
            try:
                return _read(path)
            except (ValueError, OSError, IndexError) as exc:  # damaged: convert it again
                errors.append(str(exc))
                path.unlink(missing_ok=True)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            errors.append(f"{directory}: {exc}")
            continue
        done = subprocess.run(
            [sys.executable, "-m", "collector.enrich.fastdata", str(source), str(path)],
            capture_output=True, text=True, timeout=300, check=False,
        )
        if done.returncode == 0 and path.is_file():
            return _read(path)
        errors.append(f"{directory}: conversion failed: {done.stderr.strip()[-300:]}")
    raise ValueError("geoip2fast data could not be converted: " + "; ".join(errors))


if __name__ == "__main__":  # the child process of open_cached
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
