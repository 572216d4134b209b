"""`lethelog serve` as operators run it: a real process, a real file, its own log searched."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.conftest import log_fixture
from tests.service import ServiceProcess, all_files, files_containing
from tests.test_service_ingest import parse_elastic


def _post(url: str, data: bytes, ctype: str) -> dict[str, object]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_serve_process_ingests_forgets_and_never_logs_an_address(tmp_path: Path) -> None:
    path = log_fixture("elastic-examples_apache_logs")
    data_dir = tmp_path / "lethelog-data"
    svc = ServiceProcess(data_dir, tmp_path / "service.log",
                         env={"LETHELOG_SESSIONS_IDLE_TIMEOUT": "30m"})
    try:
        body = _post(f"{svc.url}/v1/logs?format=combined", path.read_bytes(), "text/plain")
        assert body["accepted"] == 9999 and body["rejected"] == 1
        with urllib.request.urlopen(f"{svc.url}/v1/records?limit=100000", timeout=30) as resp:
            rows = [json.loads(x) for x in resp.read().splitlines() if x]
        assert 0 < len(rows) < 9999
        with urllib.request.urlopen(f"{svc.url}/healthz", timeout=30) as resp:
            assert json.loads(resp.read())["status"] == "ok"
    finally:
        code = svc.stop()
    assert code == 0, "SIGTERM is a clean shutdown"
    log = (tmp_path / "service.log").read_text()
    events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
    assert "listening" in events and "store_closed" in events and "http_request" in events
    raw = {ip for ip, _, _ in parse_elastic(path) if not ip.endswith(".0")}
    files = all_files(data_dir, tmp_path / "service.log")
    assert len(files) >= 2
    assert files_containing(files, raw) == {}
    peers = {json.loads(line).get("peer") for line in log.splitlines()
             if '"http_request"' in line}
    assert peers == {"127.0.0.0"}, "the access log masks the caller's address"
