"""Signed anomaly webhooks (detect.webhook_secret): a real local receiver verifies each POST with
the snippet printed in docs/detection.md, and refuses tampered, replayed and foreign requests."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from collector.detect.webhook import Webhook, sign, verify
from collector.log import configure_logging
from collector.settings import SettingsError, load_settings
from tests.aggtools import ship, start, wait_for
from tests.service import ROOT
from tests.test_detect_service import replay

SECRET = "whsec-0123456789abcdef-test"


def documented_verifier() -> Callable[..., bool]:
    """The verification snippet of docs/detection.md, executed as printed."""
    text = (ROOT / "docs" / "detection.md").read_text(encoding="utf-8")
    m = re.search(r"```python\n((?:(?!```).)*?def verify_lethelog.*?)```", text, re.S)
    assert m, "docs/detection.md has no python snippet defining verify_lethelog"
    ns: dict[str, Any] = {}
    exec(compile(m.group(1), "docs/detection.md", "exec"), ns)
    fn: Callable[..., bool] = ns["verify_lethelog"]
    return fn


@dataclass
class Receiver:
    url: str = ""
    offset: float = 0.0  # the receiver's clock, relative to the real one
    accepted: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    refused: int = 0
    fail_first: bool = False
    calls: int = 0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    check = documented_verifier()

    async def receive(request: web.Request) -> web.Response:
        state.calls += 1
        raw = await request.read()
        header = request.headers.get("X-Lethelog-Signature", "")
        if not check(SECRET, header, raw, now=time.time() + state.offset):
            state.refused += 1
            return web.Response(status=401, text="bad signature")
        if state.fail_first and state.calls == 1:
            return web.Response(status=500)
        state.accepted.append((dict(request.headers), raw))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = TestServer(app)
    await server.start_server()
    state.url = str(server.make_url("/hook"))
    yield state
    await server.close()


def test_library_verify_is_the_documented_one() -> None:
    body = b'{"event":"anomaly_opened"}'
    now = 1_800_000_000
    header = sign(SECRET, body, now)["X-Lethelog-Signature"]
    doc = documented_verifier()
    for fn in (verify, doc):
        assert fn(SECRET, header, body, now=now + 10)
        assert not fn(SECRET, header, body + b" ", now=now + 10)
        assert not fn(SECRET, header, body, now=now + 301)
        assert not fn("another-secret-0000", header, body, now=now)
        assert not fn(SECRET, "t=abc,v1=00", body, now=now)
        assert not fn(SECRET, "", body, now=now)


async def test_signed_delivery_tamper_replay_and_retry(receiver: Receiver,
                                                       tmp_path: Path) -> None:
    logfile = tmp_path / "hook.log"
    with open(logfile, "w") as fh:
        configure_logging("info", fh)
        hook = Webhook(receiver.url, retries=3, timeout=5, backoff=1.1, secret=SECRET)
        receiver.fail_first = True
        hook.start()
        try:
            hook.send({"event": "anomaly_opened", "anomaly": {"id": "a1", "kind": "scan"}})
            await wait_for(lambda: _ready(len(receiver.accepted) == 1), timeout=15)
        finally:
            await hook.close()
            configure_logging("info")
    assert hook.delivered == 1 and receiver.calls == 2 and receiver.refused == 0
    headers, raw = receiver.accepted[0]
    assert orjson.loads(raw)["anomaly"]["id"] == "a1"
    t = int(headers["X-Lethelog-Timestamp"])
    assert abs(time.time() - t) < 60
    assert headers["X-Lethelog-Signature"].startswith(f"t={t},v1=")
    github = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == github
    assert SECRET not in logfile.read_text()

    sig = {k: headers[k] for k in ("X-Lethelog-Signature", "Content-Type")}
    async with aiohttp.ClientSession() as http:
        async def post(body: bytes, hdrs: dict[str, str]) -> int:
            async with http.post(receiver.url, data=body, headers=hdrs) as resp:
                return resp.status
        tampered = raw.replace(b'"scan"', b'"scam"')
        assert tampered != raw
        assert await post(tampered, sig) == 401, "a body changed by one byte is refused"
        assert await post(raw, {"Content-Type": "application/json"}) == 401, "unsigned"
        other = sign("another-secret-0000", raw, int(time.time()))
        assert await post(raw, {**other, "Content-Type": "application/json"}) == 401
        assert await post(raw, sig) == 204, "the same request, at once, still verifies"
        receiver.offset = 301.0  # the captured request, sent again five minutes later
        assert await post(raw, sig) == 401, "a replayed old timestamp is refused"
    assert receiver.refused == 4


async def test_retry_is_signed_with_a_fresh_timestamp(receiver: Receiver) -> None:
    clock = iter([1000.0, 1000.0 + 30])
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers["X-Lethelog-Signature"])
        return web.Response(status=500 if len(seen) == 1 else 204)

    app = web.Application()
    app.router.add_post("/r", record)
    server = TestServer(app)
    await server.start_server()
    hook = Webhook(str(server.make_url("/r")), retries=2, timeout=5, backoff=0.01,
                   secret=SECRET, clock=lambda: next(clock))
    hook.start()
    try:
        hook.send({"event": "anomaly_closed", "anomaly": {"id": "a2"}})
        await wait_for(lambda: _ready(hook.delivered == 1), timeout=10)
    finally:
        await hook.close()
        await server.close()
    assert [s.split(",")[0] for s in seen] == ["t=1000", "t=1030"]


async def test_runner_signs_with_the_configured_secret(receiver: Receiver,
                                                       tmp_path: Path) -> None:
    logfile = tmp_path / "service.log"
    with open(logfile, "w") as fh:
        configure_logging("info", fh)
        client = await start(tmp_path / "data", **{
            "detect.interval": "100ms", "detect.webhook_url": receiver.url,
            "detect.webhook_secret": SECRET, "sessions.idle_timeout": "10m"})
        try:
            await ship(client, replay())

            async def hooked() -> bool:
                events = {orjson.loads(raw)["event"] for _, raw in receiver.accepted}
                return events >= {"anomaly_opened", "anomaly_closed"}
            await wait_for(hooked, timeout=20)
        finally:
            await client.close()
            configure_logging("info")
    assert receiver.refused == 0
    assert SECRET not in logfile.read_text()


def test_secret_setting_never_prints_and_must_be_long(tmp_path: Path) -> None:
    cfg = tmp_path / "l.toml"
    cfg.write_text('[detect]\nwebhook_url = "http://127.0.0.1:9/h"\n')
    s = load_settings(cfg, env={"LETHELOG_DETECT_WEBHOOK_SECRET": SECRET})
    assert s.detect.webhook_secret is not None
    assert s.detect.webhook_secret.reveal() == SECRET
    assert SECRET not in repr(s) and SECRET not in str(s.detect)
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, env={"LETHELOG_DETECT_WEBHOOK_SECRET": "xyzzy42"})
    assert str(err.value).startswith("detect.webhook_secret: expected at least 16 characters")
    assert "xyzzy42" not in str(err.value)


async def _ready(value: bool) -> bool:
    return value
