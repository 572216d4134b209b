"""Download MaxMind databases the way ``geoipupdate`` does, from the same ``GeoIP.conf``.

Protocol (geoipupdate 7): for each edition, ``GET {Host}/geoip/updates/metadata?edition_id=E``
(HTTP Basic auth: AccountID, LicenseKey) answers ``{"databases": [{"edition_id", "md5",
"date"}]}``; when the local ``E.mmdb`` already has that MD5 nothing is downloaded. Otherwise
``GET {Host}/geoip/databases/E/download?date=YYYYMMDD&suffix=tar.gz`` answers a tar.gz holding
``E_YYYYMMDD/E.mmdb``. The file is taken out of the archive (size-bounded), its MD5 must equal the
metadata's, it must open as a MaxMind DB whose type names the edition, and it is written to a
temporary file in ``DatabaseDirectory``, fsynced and renamed over the old one — so a running
``lethelog serve`` sees a whole new file (hot reload by inode) or the old one, never half of one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import maxminddb
import orjson

__all__ = ["AuthError", "GeoIPConf", "UpdateError", "parse_conf", "update"]

DEFAULT_HOST = "https://updates.maxmind.com"
MAX_ARCHIVE = 1 << 30  # 1 GiB: larger than any MaxMind edition
USER_AGENT = "lethelog-geoip-update"


class UpdateError(Exception):
    """A download or verification failed; the old database stays in place."""


class AuthError(UpdateError):
    """The server refused the AccountID/LicenseKey."""


@dataclass
class GeoIPConf:
    account_id: str
    license_key: str = field(repr=False)
    edition_ids: list[str]
    database_directory: Path
    host: str = DEFAULT_HOST


def parse_conf(text: str, source: str = "GeoIP.conf") -> GeoIPConf:
    """Read geoipupdate's configuration format (``Key value`` lines, ``#`` comments)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        if not value.strip():
            raise ValueError(f"{source}:{number}: {key} has no value")
        values[key] = value.strip()
    missing = [k for k in ("AccountID", "LicenseKey", "EditionIDs") if k not in values]
    if missing:
        raise ValueError(f"{source}: missing {', '.join(missing)}")
    if not values["AccountID"].isdigit():
        raise ValueError(f"{source}: AccountID must be a number")
    host = values.get("Host", DEFAULT_HOST)
    if "://" not in host:
        host = "https://" + host
    return GeoIPConf(
        account_id=values["AccountID"],
        license_key=values["LicenseKey"],
        edition_ids=values["EditionIDs"].split(),
        database_directory=Path(values.get("DatabaseDirectory", "/usr/share/GeoIP")),
        host=host.rstrip("/"),
    )


@dataclass
class Outcome:
    edition: str
    status: str  # "updated" | "unchanged"
    date: str
    path: Path


def _md5(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "md5").hexdigest()
    except FileNotFoundError:
        return None


class _Client:
    def __init__(self, conf: GeoIPConf, timeout: float) -> None:
        self.conf = conf
        self.timeout = timeout
        token = f"{conf.account_id}:{conf.license_key}".encode()
        self.auth = "Basic " + base64.b64encode(token).decode()

    def get(self, path: str, limit: int) -> bytes:
        req = urllib.request.Request(self.conf.host + path, headers={
            "Authorization": self.auth, "User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                expected = resp.headers.get("Content-Length")
                body = resp.read(limit + 1)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise AuthError("the server refused AccountID/LicenseKey "
                                f"(HTTP {exc.code}); check GeoIP.conf") from None
            raise UpdateError(f"HTTP {exc.code} from {self.conf.host}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UpdateError(f"cannot reach {self.conf.host}: {reason}") from None
        except (OSError, ValueError) as exc:  # IncompleteRead and friends: a cut transfer
            raise UpdateError(f"download from {self.conf.host} was interrupted: "
                              f"{type(exc).__name__}") from None
        if len(body) > limit:
            raise UpdateError(f"answer from {self.conf.host} larger than {limit} bytes")
        if expected is not None and expected.isdigit() and int(expected) != len(body):
            raise UpdateError(f"download from {self.conf.host} was interrupted "
                              f"({len(body)} of {expected} bytes)")
        return body


def _metadata(client: _Client, edition: str) -> tuple[str, str]:
    query = urllib.parse.urlencode({"edition_id": edition})
    raw = client.get(f"/geoip/updates/metadata?{query}", 1 << 20)
    try:
        rows = orjson.loads(raw)["databases"]
        row = next(r for r in rows if r["edition_id"] == edition)
        md5, date = str(row["md5"]).lower(), str(row["date"])
    except (orjson.JSONDecodeError, KeyError, TypeError, StopIteration):
        raise UpdateError(f"{edition}: the server's metadata answer is not understood") from None
    if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
        raise UpdateError(f"{edition}: the server's metadata carries no MD5")
    return md5, date


def _extract(archive: bytes, edition: str) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                if member.isfile() and Path(member.name).name == f"{edition}.mmdb":
                    fh = tar.extractfile(member)
                    if fh is None:
                        break
                    return fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UpdateError(f"{edition}: the archive is corrupt ({type(exc).__name__})") from None
    raise UpdateError(f"{edition}: the archive holds no {edition}.mmdb")


def _verify(data: bytes, md5: str, edition: str) -> None:
    got = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if got != md5:
        raise UpdateError(f"{edition}: MD5 {got} differs from the server's {md5}")
    try:
        reader = maxminddb.open_database(io.BytesIO(data), maxminddb.MODE_FD)
    except Exception as exc:
        raise UpdateError(f"{edition}: not a valid MaxMind DB ({exc})") from None
    try:
        dbtype = str(reader.metadata().database_type)
    finally:
        reader.close()
    wanted = edition.lower().replace("-test", "")
    if wanted.split("-")[-1] not in dbtype.lower():
        raise UpdateError(f"{edition}: the file is a {dbtype!r} database")


def _write_atomically(directory: Path, name: str, data: bytes) -> Path:
    target = directory / name
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def update(conf: GeoIPConf, timeout: float = 60.0) -> list[Outcome]:
    """Bring every edition of ``conf`` up to date; raise on the first failure (files already
    replaced stay replaced, the failing one keeps its old file)."""
    if not conf.database_directory.is_dir():
        raise UpdateError(f"DatabaseDirectory {str(conf.database_directory)!r} does not exist")
    client = _Client(conf, timeout)
    out: list[Outcome] = []
    for edition in conf.edition_ids:
        md5, date = _metadata(client, edition)
        path = conf.database_directory / f"{edition}.mmdb"
        if _md5(path) == md5:
            out.append(Outcome(edition, "unchanged", date, path))
            continue
        query = urllib.parse.urlencode({"date": date.replace("-", ""), "suffix": "tar.gz"})
        archive = client.get(f"/geoip/databases/{urllib.parse.quote(edition)}/download?{query}",
                             MAX_ARCHIVE)
        data = _extract(archive, edition)
        _verify(data, md5, edition)
        out.append(Outcome(edition, "updated", date,
                           _write_atomically(conf.database_directory, path.name, data)))
    return out
