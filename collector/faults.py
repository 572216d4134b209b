"""Disk faults (full, read-only, directory gone) and what the service reports about them.

* :func:`disk_fault` says whether an exception is a fault of the disk under the data directory
  (``ENOSPC``, ``EDQUOT``, ``EROFS``, ``ENOENT``/``ESTALE`` of a lost directory, ``EIO``, and
  SQLite's "database or disk is full", "attempt to write a readonly database", "unable to open
  database file", "disk I/O error"): such a write is answered ``507`` with ``Retry-After`` and
  nothing of it is kept; when space returns the next write succeeds (no restart).
* :func:`append_all_or_nothing` appends bytes to a file entirely or not at all (a short or failed
  write is cut back to the previous end), so a full disk never leaves half a line.
* :class:`Faults` holds what ``/healthz`` reports (``faults``): a torn tail found at start-up
  (kept as evidence), the current disk fault of writes (cleared by the next good write).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from aiohttp import web

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOENT, errno.ESTALE,
                         errno.EIO, errno.EACCES, errno.EPERM})
_SQLITE_DISK = ("disk is full", "readonly database", "unable to open database",
                "disk i/o error", "no such file", "read-only file system")
RETRY_AFTER = 30  # seconds a shipper waits after a 507


def disk_fault(exc: BaseException) -> str | None:
    """A short reason when ``exc`` is a fault of the disk (never a path), else None."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        return errno.errorcode.get(exc.errno or 0, "OSError")
    if isinstance(exc, sqlite3.Error):
        text = str(exc).lower()
        for needle in _SQLITE_DISK:
            if needle in text:
                return f"sqlite: {needle}"
    cause = exc.__cause__ or exc.__context__
    return disk_fault(cause) if cause is not None and cause is not exc else None


def append_all_or_nothing(path: Path, data: bytes, fsync: bool = True) -> None:
    """Append ``data`` to ``path`` whole, or leave the file as it was and raise OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        start = os.fstat(fd).st_size
        try:
            done = 0
            while done < len(data):
                n = os.write(fd, data[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, "short write")
                done += n
            if fsync:
                os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)  # never leave half a line behind
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


class Faults:
    """What has gone wrong with the disk, for ``/healthz`` (name → details)."""

    def __init__(self) -> None:
        self.current: dict[str, dict[str, Any]] = {}

    def report(self, name: str, **detail: Any) -> None:
        self.current[name] = {"since": round(time.time(), 3), **detail}

    def clear(self, name: str) -> None:
        self.current.pop(name, None)

    def public(self) -> dict[str, dict[str, Any]]:
        return dict(self.current)


FAULTS: web.AppKey[Faults] = web.AppKey("faults", Faults)
