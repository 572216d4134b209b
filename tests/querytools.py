"""Helpers for the query, roles, audit and erasure tests: tokens, a filled store, a client."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.auth import new_token
from collector.settings import Settings, load_settings
from tests import backends
from tests.backends import values_for
from tests.conftest import log_fixture
from tests.service import REPLAY

ELASTIC = "elastic-examples_apache_logs"
LONG_IDLE = {"sessions.idle_timeout": "3650d"}
COMBINED = re.compile(
    r'^(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+) ([^"]*)" (\d{3}) (\S+) "([^"]*)" "([^"]*)"$'
)


def settings_with_tokens(data_dir: Path, tokens: dict[str, tuple[list[str], list[str] | None]],
                         **values: Any) -> tuple[Settings, dict[str, str]]:
    """Settings with one ``[[tokens]]`` entry per name (roles, sites); returns the tokens."""
    data_dir.mkdir(parents=True, exist_ok=True)
    secrets: dict[str, str] = {}
    lines: list[str] = []
    for name, (roles, sites) in tokens.items():
        token, digest = new_token()
        secrets[name] = token
        lines += ["[[tokens]]", f'name = "{name}"',
                  "roles = [" + ", ".join(f'"{r}"' for r in roles) + "]", f'sha256 = "{digest}"']
        if sites is not None:
            lines.append("sites = [" + ", ".join(f'"{s}"' for s in sites) + "]")
        else:
            lines.append("operator = true")
    config = data_dir.parent / f"{data_dir.name}-tokens.toml"
    config.write_text("\n".join(lines) + "\n")
    overrides = {"server.data_dir": str(data_dir), **REPLAY, **values_for(data_dir), **values}
    return load_settings(config, env={}, overrides=overrides), secrets


async def client_for(settings: Settings) -> TestClient[Any, Any]:
    app: web.Application = create_app(settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ingest(client: TestClient[Any, Any], body: bytes, token: str | None = None
                 ) -> dict[str, Any]:
    headers = {"Content-Type": "text/plain", **(auth(token) if token else {})}
    resp = await client.post("/v1/logs", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


def build_elastic_store(data_dir: Path, **values: Any) -> dict[str, Any]:
    """Ingest the real log into ``data_dir`` once (long idle timeout); returns the answer."""
    from tests.service import make_settings

    async def run() -> dict[str, Any]:
        client = await client_for(make_settings(data_dir, **{**LONG_IDLE, **values}))
        try:
            return await ingest(client, log_fixture(ELASTIC).read_bytes())
        finally:
            await client.close()

    return asyncio.run(run())


def copy_store(src: Path, dst: Path) -> Path:
    backends.copy_store(src, dst)  # on redis, the store's keys too
    audit = dst / "audit.log"
    audit.unlink(missing_ok=True)  # each test starts its own audit chain
    return dst


ASKED: dict[int, list[str]] = {}  # id(client) -> every query text sent through ``query``


def assert_all_audited(client: TestClient[Any, Any], data_dir: Path) -> int:
    """Every query this client sent is in the audit log, in order, and the chain verifies."""
    from collector.audit import query_text, verify

    asked = [query_text(q) for q in ASKED.pop(id(client), [])]
    path = data_dir / "audit.log"
    entries = [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []
    assert [e["query"] for e in entries if e["endpoint"] == "/v1/query"] == asked
    assert verify(path).ok
    return len(asked)


async def query(client: TestClient[Any, Any], q: str, token: str | None = None,
                fmt: str = "json", **params: str) -> tuple[int, Any, dict[str, str]]:
    ASKED.setdefault(id(client), []).append(q)
    resp = await client.get("/v1/query", params={"q": q, "format": fmt, **params},
                            headers=auth(token) if token else {})
    raw = await resp.read()
    if fmt == "json" or resp.status != 200:
        body: Any = orjson.loads(raw) if raw.startswith(b"{") else raw.decode()
    else:
        body = raw.decode()
    return resp.status, body, dict(resp.headers)


class Line:
    """One line of the combined log, read independently of lethelog's parsers."""

    def __init__(self, number: int, m: re.Match[str]) -> None:
        self.number = number
        self.ip = m.group(1)
        self.time = datetime.strptime(m.group(2), "%d/%b/%Y:%H:%M:%S %z").timestamp()
        self.method = m.group(3)
        self.target = m.group(4)
        self.status = int(m.group(6))
        self.bytes = None if m.group(7) == "-" else int(m.group(7))
        self.agent = m.group(9)


def read_combined(path: Path, skip: Iterable[int] = ()) -> list[Line]:
    skipped = set(skip)
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        m = COMBINED.match(line)
        if m and n not in skipped:
            out.append(Line(n, m))
    return out


def nearest_rank(values: list[float], p: int) -> float:
    """The p-th percentile by nearest rank: the value at rank ⌈p/100 · n⌉ (1-based)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]
