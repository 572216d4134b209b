"""Tenants on the write side: site resolution, shipper scope, stricter per-site settings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.app import create_app
from collector.auth import new_token
from collector.settings import SettingsError, load_settings
from tests.service import all_files, files_containing


def site_config(tmp_path: Path, extra: str = "") -> tuple[Path, dict[str, str]]:
    tokens = {name: new_token() for name in ("ship-a", "ship-b", "reader-all", "reader-a")}
    roles = {"ship-a": ('["shipper"]', '["a"]'), "ship-b": ('["shipper"]', '["b"]'),
             "reader-all": ('["sre", "shipper"]', None), "reader-a": ('["sre"]', '["a"]')}
    text = f"""
[server]
data_dir = "{tmp_path / 'data'}"
[sessions]
idle_timeout = "1h"
sweep_interval = "200ms"
[tenancy]
unknown_host = "reject"
[[sites]]
name = "a"
hosts = ["a.example", "*.a.example"]
idle_timeout = "2s"
[[sites]]
name = "b"
hosts = ["b.example"]
{extra}
"""
    for name, (_token, digest) in tokens.items():
        r, sites = roles[name]
        text += f'\n[[tokens]]\nname = "{name}"\nroles = {r}\nsha256 = "{digest}"\n'
        text += f"sites = {sites}\n" if sites else "operator = true\n"
    cfg = tmp_path / "lethelog.toml"
    cfg.write_text(text)
    return cfg, {k: v[0] for k, v in tokens.items()}


def rec(host: str | None, path: str, ip: str = "203.0.113.5") -> dict[str, Any]:
    r = {"time": datetime.now(UTC).isoformat(), "client": ip, "target": path, "status": 200,
         "user_agent": "curl/8"}
    if host:
        r["host"] = host
    return r


async def post(client: TestClient[Any, Any], token: str, records: list[dict[str, Any]]
               ) -> dict[str, Any]:
    resp = await client.post("/v1/logs", data=b"\n".join(orjson.dumps(r) for r in records),
                             headers={"Content-Type": "application/x-ndjson",
                                      "Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def live(client: TestClient[Any, Any], token: str) -> list[dict[str, Any]]:
    resp = await client.get("/v1/records?limit=1000",
                            headers={"Authorization": f"Bearer {token}"})
    return [orjson.loads(x) for x in (await resp.read()).splitlines() if x]


async def test_shipper_cannot_write_to_another_site(tmp_path: Path) -> None:
    cfg, tok = site_config(tmp_path)
    client = TestClient(TestServer(create_app(load_settings(cfg, env={}))))
    await client.start_server()
    try:
        body = await post(client, tok["ship-a"], [
            rec("b.example", "/from-a-to-b"),
            rec("www.a.example", "/a-ok"),
            rec(None, "/a-no-host"),
            rec("unknown.example", "/nobody"),
        ])
        assert body["accepted"] == 2
        errors = {e["line"]: e["error"] for e in body["errors"]}
        assert "site 'b'" in errors[1] and "only to a" in errors[1]
        assert "no configured site" in errors[4]
        got = await live(client, tok["reader-all"])
        assert sorted((r["site"], r["path"]) for r in got) == [("a", "/a-no-host"),
                                                               ("a", "/a-ok")]
        assert files_containing(all_files(tmp_path / "data"), ["from-a-to-b"]) == {}
    finally:
        await client.close()


async def test_site_idle_timeouts_are_per_site(tmp_path: Path) -> None:
    cfg, tok = site_config(tmp_path)
    client = TestClient(TestServer(create_app(load_settings(cfg, env={}))))
    await client.start_server()
    try:
        await post(client, tok["ship-a"], [rec("a.example", "/short-lived")])
        await post(client, tok["ship-b"], [rec("b.example", "/long-lived")])
        assert len(await live(client, tok["reader-all"])) == 2
        assert [r["site"] for r in await live(client, tok["reader-a"])] == ["a"]
        await asyncio.sleep(3.0)  # a's 2 s timeout + sweeps; b's hour is far away
        got = await live(client, tok["reader-all"])
        assert [(r["site"], r["path"]) for r in got] == [("b", "/long-lived")]
        assert files_containing(all_files(tmp_path / "data"), ["short-lived"]) == {}
    finally:
        await client.close()


def test_per_site_settings_may_only_be_stricter(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[sites]]\nname = "x"\nhosts = ["x.example"]\nidle_timeout = "2h"\n')
    with pytest.raises(SettingsError, match=r"sites\[x\]\.idle_timeout: may only be stricter"):
        load_settings(cfg, env={})
    cfg.write_text('[[sites]]\nname = "x"\nhosts = ["x.example"]\nipv4_keep_bits = 28\n')
    with pytest.raises(SettingsError, match=r"sites\[x\]\.ipv4_keep_bits: may only be stricter"):
        load_settings(cfg, env={})
    cfg.write_text('[[sites]]\nname = "x"\nhosts = ["x.example"]\nipv4_keep_bits = 16\n'
                   'consent = "drop"\n')
    s = load_settings(cfg, env={})
    assert s.for_site("x", "ipv4_keep_bits") == 16
    assert s.for_site("other", "ipv4_keep_bits") == 24


async def test_per_site_masking_and_consent(tmp_path: Path) -> None:
    cfg, tok = site_config(tmp_path)
    text = cfg.read_text().replace('hosts = ["b.example"]',
                                   'hosts = ["b.example"]\nipv4_keep_bits = 16\nconsent = "drop"')
    cfg.write_text(text)
    client = TestClient(TestServer(create_app(load_settings(cfg, env={}))))
    await client.start_server()
    try:
        dnt = {**rec("b.example", "/dnt"), "dnt": "1"}
        body = await post(client, tok["ship-b"], [rec("b.example", "/b", "198.51.77.9"), dnt])
        assert body["accepted"] == 1 and body["dropped"] == 1
        a_dnt = {**rec("a.example", "/a-dnt"), "dnt": "1"}
        body = await post(client, tok["ship-a"], [a_dnt])
        assert body["accepted"] == 1  # counted in aggregates only: not a live record
        got = await live(client, tok["reader-all"])
        assert [(r["path"], r["ip"]) for r in got] == [("/b", "198.51.0.0")]
    finally:
        await client.close()


async def test_syslog_listener_writes_only_to_its_sites(tmp_path: Path) -> None:
    """Syslog has no token: ``syslog.sites`` scopes the listener like a shipper token."""
    import socket

    from tests.service import free_port

    cfg, tok = site_config(tmp_path)
    port = free_port()
    cfg.write_text(cfg.read_text() + f'\n[syslog]\nudp = "127.0.0.1:{port}"\nsites = ["a"]\n'
                   'format = "vhost_combined"\n')
    client = TestClient(TestServer(create_app(load_settings(cfg, env={}))))
    await client.start_server()
    try:
        stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for host, path in (("a.example", "/via-syslog-a"), ("b.example", "/via-syslog-b")):
                line = (f'{host}:443 198.51.100.3 - - [{stamp}] "GET {path} HTTP/1.1" 200 5 '
                        '"-" "curl/8"')
                sock.sendto(f"<190>Nov 27 09:00:00 web nginx: {line}".encode(),
                            ("127.0.0.1", port))
        for _ in range(50):
            got = await live(client, tok["reader-all"])
            if got:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        got = await live(client, tok["reader-all"])
        assert [(r["site"], r["path"]) for r in got] == [("a", "/via-syslog-a")]
    finally:
        await client.close()
