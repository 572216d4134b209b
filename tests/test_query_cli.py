"""``lethelog query`` against a running collector (``--url``, token file) and its output forms."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import orjson

from tests.conftest import log_fixture
from tests.querytools import ELASTIC, LONG_IDLE, read_combined, settings_with_tokens
from tests.service import ROOT, ServiceProcess


def lethelog(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_query_a_running_collector(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, tokens = settings_with_tokens(data, {"ship": (["shipper"], None), "sre": (["sre"], None),
                                            "admin": (["admin"], None)})
    config = tmp_path / "data-tokens.toml"
    idle = LONG_IDLE["sessions.idle_timeout"]
    config.write_text(config.read_text() + f'[sessions]\nidle_timeout = "{idle}"\n')
    token_file = tmp_path / "sre.token"
    token_file.write_text(tokens["sre"] + "\n")
    admin_file = tmp_path / "admin.token"
    admin_file.write_text(tokens["admin"])
    svc = ServiceProcess(data, tmp_path / "service.log", args=["--config", str(config)])
    try:
        req = urllib.request.Request(f"{svc.url}/v1/logs?format=combined",
                                     data=log_fixture(ELASTIC).read_bytes(), method="POST",
                                     headers={"Authorization": f"Bearer {tokens['ship']}",
                                              "Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert orjson.loads(resp.read())["accepted"] == 9999
        common = ["--url", svc.url, "--token-file", str(token_file)]
        out = lethelog("query", *common, "status >= 500 | count by status")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["status  count", "------  -----", "   500      3",
                                           "1 row from records"]
        out = lethelog("query", *common, "--format", "ndjson", "| count by method")
        rows = [orjson.loads(x) for x in out.stdout.splitlines()]
        want = Counter(line.method for line in read_combined(log_fixture(ELASTIC)))
        assert {r["method"]: r["count"] for r in rows} == dict(want)
        out = lethelog("query", *common, "--format", "csv", "| p95 bytes by status")
        table = list(csv.DictReader(io.StringIO(out.stdout)))
        assert table[0].keys() == {"status", "p95_bytes", "count"} and len(table) == 7
        out = lethelog("query", *common, "status = 404 | limit 3")
        assert out.returncode == 0 and out.stdout.count("\n") == 6 and "404" in out.stdout
        bad = lethelog("query", *common, 'status >= 500 and path ^= | count')
        assert bad.returncode == 2
        assert "position 26" in bad.stderr and bad.stderr.rstrip().endswith("^")
        denied = lethelog("query", "--url", svc.url, "--token-file", str(admin_file), "| count")
        assert denied.returncode == 1 and "403" in denied.stderr and "role" in denied.stderr
        nobody = lethelog("query", "--url", svc.url, "| count")
        assert nobody.returncode == 1 and "401" in nobody.stderr
    finally:
        assert svc.stop() == 0
    verified = lethelog("audit", "verify", "--data-dir", str(data))
    # four answered, one rejected; the refused callers never reached the handler
    assert verified.returncode == 0 and "5 entries verified" in verified.stdout, verified
    assert "85.181" not in (data / "audit.log").read_text()
