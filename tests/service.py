"""Helpers to run the real service in tests: in-process (aiohttp test server) or as a process."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from collector.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


# Tests replay logs with fixed, old timestamps through ``serve``: no sessions.max_age bound
# unless a test sets one (tests/test_hostile_bounds.py checks the bound itself).
REPLAY = {"sessions.max_age": "0s"}


def make_settings(data_dir: Path, **values: Any) -> Settings:
    """Settings for a test: ``values`` maps 'section.key' to a raw value, as a flag gives it."""
    from tests.backends import values_for

    overrides = {"server.data_dir": str(data_dir), **REPLAY, **values_for(data_dir),
                 **values}
    return load_settings(None, env={}, overrides=overrides)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """``lethelog serve`` as a child process, its JSON log captured in a file."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None,
                 args: Iterable[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
        full_env["LETHELOG_SESSIONS_MAX_AGE"] = REPLAY["sessions.max_age"]
        full_env.update(env or {})
        full_env["PYTHONPATH"] = str(ROOT)
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "serve", "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", str(data_dir), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=str(data_dir.parent),
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("service did not start")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def ip_pattern(ip: str) -> re.Pattern[bytes]:
    """Match ``ip`` as a whole address, not as part of a longer number."""
    return re.compile(rb"(?<![0-9.])" + re.escape(ip.encode()) + rb"(?![0-9])")


_V4 = re.compile(rb"(?<![0-9.])\d{1,3}(?:\.\d{1,3}){3}(?![0-9])")


def files_containing(paths: Iterable[Path], needles: Iterable[str]) -> dict[str, list[str]]:
    """For each needle (an address or marker), the files whose raw bytes contain it.

    IPv4 needles match whole addresses only (``1.2.3.4`` does not match ``1.2.3.45``); every
    dotted quad of a file is collected once, so thousands of needles cost one pass a file.
    Other needles (IPv6 addresses, markers) are plain byte searches.
    """
    blobs: dict[str, bytes] = {}
    for p in paths:
        if p.is_file():
            blobs[str(p)] = p.read_bytes()
    quads = {name: {m.decode() for m in _V4.findall(blob)} for name, blob in blobs.items()}
    hits: dict[str, list[str]] = {}
    for needle in needles:
        if _V4.fullmatch(needle.encode()):
            found = [name for name in blobs if needle in quads[name]]
        else:
            raw = needle.encode()
            found = [name for name, blob in blobs.items() if raw in blob]
        if found:
            hits[needle] = found
    return hits


def all_files(*roots: Path) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        if root.is_file():
            out.append(root)
        elif root.exists():
            out.extend(p for p in root.rglob("*") if p.is_file())
    return out
