"""Vector and Fluent Bit are not packaged for Debian here, so their recipes are proven with the
requests they send: tests/data/shippers/*.request hold, for each recipe, one request as the
program sends it per its documentation and source (reconstructed, not captured: see the notes
below and docs/deploy.md) — request line, headers, body framing — replayed byte for byte over a
socket against a real `lethelog serve` with bearer tokens.

* Vector ``http`` sink, ``encoding.codec = json`` + ``framing.method = newline_delimited``: one
  JSON object per event (keys sorted: Vector's log events are ordered maps), joined by ``\\n``,
  **no trailing newline** (src/sinks/http/encoder.rs drops it "for backwards-compatibility with
  Vector 0.20"); ``Content-Type: application/x-ndjson`` (set by the sink for json +
  newline_delimited; the recipe's static header says the same and replaces it);
  ``Content-Encoding: gzip`` (``compression: gzip``); ``Authorization: Bearer`` (``auth.strategy:
  bearer``).
* Fluent Bit ``http`` output, ``Format json_lines``: every record followed by ``\\n`` (flb_pack.c,
  trailing newline included), keys in the order the ``json`` parser read them, no date key
  (``json_date_key false``); ``Content-Type: application/x-ndjson``, ``User-Agent: Fluent-Bit``,
  ``Content-Encoding: gzip`` (``compress gzip``), the recipe's ``Header Authorization Bearer …``.

The records are what deploy/nginx/lethelog-json.conf writes (nginx variable names; "" for an
absent cookie, referer or language), with an IPv6 client, an escaped quote and backslash in the
agent, secrets in the query.
"""

from __future__ import annotations

import gzip
import re
import socket
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from collector.auth import new_token
from masking.ip import IPMasker
from tests.service import ROOT, ServiceProcess, all_files, files_containing

DEPLOY = ROOT / "deploy"
RECORDED = ROOT / "tests" / "data" / "shippers"


def fluent_bit_output() -> dict[str, str]:
    """The [OUTPUT] section of the Fluent Bit recipe (classic format: KEY VALUE lines)."""
    out: dict[str, str] = {}
    section = ""
    for line in (DEPLOY / "fluent-bit" / "fluent-bit.conf").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[OUTPUT]":
            key, _, value = line.partition(" ")
            if key == "Header":
                out[f"Header {value.strip().split()[0]}"] = value.strip().split(None, 1)[1]
            else:
                out[key.lower()] = value.strip()
    return out


# The records' day is a placeholder, replaced by yesterday (UTC): within sessions.max_age, never
# in the future, so the recording does not age out of what `serve` accepts.
DAY = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")


def recorded(name: str) -> tuple[str, dict[str, str], bytes]:
    raw = (RECORDED / f"{name}.request").read_bytes().replace(b"${DAY}", DAY.encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    return lines[0], headers, body


def test_recordings_follow_the_recipes() -> None:
    vector = yaml.safe_load((DEPLOY / "vector" / "vector.yaml").read_text())["sinks"]["lethelog"]
    line, headers, body = recorded("vector")
    assert line == "POST " + re.sub(r"^https?://[^/]+", "", vector["uri"]) + " HTTP/1.1"
    assert vector["encoding"]["codec"] == "json"
    assert vector["framing"]["method"] == "newline_delimited"
    assert headers["content-type"] == "application/x-ndjson"
    assert headers["content-type"] == vector["request"]["headers"]["Content-Type"]
    assert vector["compression"] == "gzip" and headers["content-encoding"] == "gzip"
    assert vector["auth"]["strategy"] == "bearer"
    assert headers["authorization"] == "Bearer ${LETHELOG_TOKEN}"
    assert not body.endswith(b"\n"), "Vector drops the last newline of an NDJSON batch"
    for obj in body.split(b"\n"):
        keys = list(orjson.loads(obj))
        assert keys == sorted(keys) and obj == orjson.dumps(orjson.loads(obj))

    out = fluent_bit_output()
    line, headers, body = recorded("fluent-bit")
    assert line == f"POST {out['uri']} HTTP/1.1"
    assert out["format"] == "json_lines" and headers["content-type"] == "application/x-ndjson"
    assert out["compress"] == "gzip" and headers["content-encoding"] == "gzip"
    assert out["json_date_key"] == "false"
    assert headers["authorization"] == out["Header Authorization"] == "Bearer ${LETHELOG_TOKEN}"
    assert headers["user-agent"] == "Fluent-Bit"
    assert body.endswith(b"}\n") and b"\n\n" not in body, "json_lines: every record ends in \\n"
    assert all("date" not in orjson.loads(x) for x in body.splitlines())
    # both carry the records nginx's JSON recipe writes: its variable names, nothing else
    nginx = (DEPLOY / "nginx" / "lethelog-json.conf").read_text()
    names = set(re.findall(r'\\?"([a-z_0-9]+)\\?":', nginx))
    for name in ("vector", "fluent-bit"):
        for x in recorded(name)[2].splitlines():
            assert set(orjson.loads(x)) == names


@pytest.fixture
def service(tmp_path: Path) -> Any:
    tokens = {n: new_token() for n in ("vector", "fluent-bit", "reader")}
    roles = {"vector": "shipper", "fluent-bit": "shipper", "reader": "sre"}
    cfg = tmp_path / "lethelog.toml"
    cfg.write_text("[sessions]\nidle_timeout = \"1d\"\n" + "".join(
        f'[[tokens]]\nname = "{n}"\nroles = ["{roles[n]}"]\nsha256 = "{h}"\noperator = true\n'
        for n, (_, h) in tokens.items()))
    svc = ServiceProcess(tmp_path / "data", tmp_path / "svc.log", args=["--config", str(cfg)])
    try:
        yield svc, {n: t for n, (t, _) in tokens.items()}
    finally:
        svc.stop()


def replay(port: int, name: str, token: str) -> tuple[int, dict[str, Any]]:
    """Send the recorded request byte for byte (body gzipped, as the recipe compresses)."""
    body = recorded(name)[2]
    raw = (RECORDED / f"{name}.request").read_bytes()
    head = raw.partition(b"\r\n\r\n")[0].decode()
    payload = gzip.compress(body, mtime=0)
    head = (head.replace("${LETHELOG_TOKEN}", token)
            .replace("${CONTENT_LENGTH}", str(len(payload)))
            .replace("lethelog.example:8780", f"127.0.0.1:{port}"))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head.encode() + b"\r\n\r\n" + payload)
        resp = b""
        while b"\r\n\r\n" not in resp and (chunk := s.recv(65536)):
            resp += chunk
        top, _, rest = resp.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", top)
        assert m, top  # the connection stays open (keep-alive), as for the real shippers
        while len(rest) < int(m.group(1)) and (chunk := s.recv(65536)):
            rest += chunk
    return int(top.split(b" ", 2)[1]), orjson.loads(rest or b"{}")


def records(port: int, token: str) -> list[dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/records?limit=1000",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return [orjson.loads(x) for x in resp.read().splitlines() if x]


@pytest.mark.parametrize("name", ["vector", "fluent-bit"])
def test_recorded_request_is_stored_masked(service: Any, name: str, tmp_path: Path) -> None:
    svc, tokens = service
    status, body = replay(svc.port, name, "lethelog_wrong_token")
    assert status == 401, body
    status, body = replay(svc.port, name, tokens[name])
    assert status == 200 and body["accepted"] == 4 and body["rejected"] == 0, body
    rows = {r["path"]: r for r in records(svc.port, tokens["reader"])}
    assert set(rows) == {"/shop/item/42", "/cart/add", "/missing.php", "/"}
    masker = IPMasker(24, 48)
    item, cart, missing, home = (rows[p] for p in ("/shop/item/42", "/cart/add",
                                                   "/missing.php", "/"))
    assert item["ip"] == cart["ip"] == masker.mask("81.2.69.160") == "81.2.69.0"
    assert missing["ip"] == masker.mask("2a02:1810:2d05:4700:1c2e:77ff:fe10:9a1")
    assert item["query"] == "ref=mail&token=[redacted]"
    assert missing["query"] == "email=[redacted]"
    assert (item["status"], cart["status"], missing["status"], home["status"]) == (
        200, 302, 404, 200)
    assert cart["method"] == "POST" and item["language"] == "de" and home["language"] == "fr"
    assert item["session"] == cart["session"] != home["session"], "one session per cookie"
    assert missing["referrer"] in (None, "") and home["device_type"] == "mobile"
    assert item["time"] == f"{DAY}T09:15:02Z" and item["host"] == "shop.example"
    assert svc.stop() == 0
    files = all_files(tmp_path / "data", tmp_path / "svc.log")
    assert files_containing(files, ["81.2.69.160", "89.160.20.112", "c0ffee01", "s3cr3tvalue",
                                    "2a02:1810:2d05:4700:1c2e:77ff:fe10:9a1"]) == {}
