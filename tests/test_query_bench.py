"""The query benchmark runs end to end on a small store (the 1,000,000-record run is manual)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import log_fixture
from tests.querytools import ELASTIC
from tests.service import ROOT


def test_bench_smoke_run() -> None:
    log_fixture(ELASTIC)  # skip clearly when the log is missing
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHELOG_")}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "query_bench.py"), "--lines",
                          "5000", "--reps", "2"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "records: 5000 live" in out.stdout
    timings = re.findall(r"^(.{40}) +(\d+\.\d) +(\d+\.\d) +(\d+) +(\d+\.\d+)x$", out.stdout,
                         re.MULTILINE)
    assert len(timings) == 6, out.stdout  # the full-scan baseline and five typical queries
    for _name, p50, p95, _rows, _ratio in timings:
        assert float(p50) <= float(p95)
    assert timings[-1][3] == "100", "the newest-100 query returns 100 records"
