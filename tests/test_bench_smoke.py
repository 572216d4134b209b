"""Small runs of every benchmark script so they cannot rot (the full runs are not in CI)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import write_section
from tests.conftest import ROOT

BENCH = ROOT / "bench"


def run(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "access.log"
    proc = run("gen_log.py", "-n", "3000", "-o", str(path), "--clients", "2000",
               "--ua-pool", "1500")
    assert "lines=3000" in proc.stderr
    return path


def test_gen_log_is_realistic_and_deterministic(small_log: Path, tmp_path: Path) -> None:
    lines = small_log.read_text().splitlines()
    assert len(lines) == 3000
    combined = re.compile(r'^(\S+) - - \[([^\]]+)\] "(\S+) (\S+) HTTP/1\.1" (\d{3}) (\d+|-) '
                          r'"([^"]*)" "([^"]+)"$')
    parsed = [combined.match(line) for line in lines]
    assert all(parsed), next(line for line, m in zip(lines, parsed, strict=True) if not m)
    ips = {m.group(1) for m in parsed if m}
    uas = {m.group(8) for m in parsed if m}
    assert any(":" in ip for ip in ips) and len(ips) > 200
    assert len(uas) > 150
    assert any("?" in m.group(4) for m in parsed if m)
    assert len({m.group(5) for m in parsed if m}) >= 4  # a status mix
    again = tmp_path / "again.log"
    run("gen_log.py", "-n", "3000", "-o", str(again), "--clients", "2000", "--ua-pool", "1500")
    assert again.read_bytes() == small_log.read_bytes()


@pytest.mark.skipif(shutil.which("goaccess") is None, reason="goaccess is not installed")
def test_vs_goaccess_smoke(small_log: Path) -> None:
    city = ROOT / "tests" / "data" / "mmdb" / "GeoIP2-City-Test.mmdb"
    proc = run("vs_goaccess.py", "--log", str(small_log), "--runs", "1", "--city-db", str(city),
               "--profile")
    out = proc.stdout
    assert re.search(r"goaccess lines/s\s+[\d,]+ \(min", out)
    assert re.search(r"ratio lethelog/goaccess \(medians\): \d+\.\d\dx", out)
    assert re.search(r"^accepted\s+3,000$", out, re.M)
    # both threads profiled; the main thread runs the columnar engine (polars plans collected)
    assert "store writer thread" in out and "main thread: read, parse, pipeline" in out
    main = out.split("main thread: read, parse, pipeline")[1].split("store writer thread")[0]
    assert "PyLazyFrame" in main


def test_http_ingest_smoke(small_log: Path) -> None:
    proc = run("http_ingest.py", "--log", str(small_log), "--seconds", "1", "--runs", "1",
               "--shippers", "2", "--batch", "500", "--bodies", "4", "--live", "2000",
               "--forget-timeout", "1", timeout=90)
    out = proc.stdout
    for title in ("plain NDJSON", "gzip NDJSON"):
        m = re.search(rf"{title}\s+acknowledged records/s ([\d,]+)", out)
        assert m and int(m.group(1).replace(",", "")) > 0, out
    assert re.search(r"batch latency p99 ms\s+\d", out)
    m = re.search(r"forgetting .*?live at end [\d,]+, [\d.]+ s later ([\d,]+)", out)
    assert m and m.group(1) == "0", out  # every ended session was deleted
    m = re.search(r"holding: ([\d,]+) live records .* serve peak RSS (\d+) MiB", out)
    assert m and m.group(1) == "2,000" and int(m.group(2)) > 0, out


def test_write_section_keeps_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## Enrichment\n\nkeep me\n\n## HTTP ingest\n\nold\n")
    write_section("HTTP ingest", "new figures", path)
    write_section("Import vs GoAccess", "ratio", path)
    text = path.read_text()
    assert "keep me" in text and "new figures" in text and "old" not in text
    assert text.index("## Enrichment") < text.index("## HTTP ingest") < text.index(
        "## Import vs GoAccess")


def test_store_write_smoke() -> None:
    proc = run("store_write.py", "--records", "3000", "--rounds", "1", "--profile", timeout=120)
    out = proc.stdout
    for kind in ("record-at-a-time", "columnar"):
        m = re.search(rf"^{kind}\s+3,000 records, batches of 1000, 1 writer\(s\): "
                      r"wall ([\d.]+) µs/record, CPU ([\d.]+) µs/record", out, re.M)
        assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0, out
    assert "frame_counter.py" in out and "sessionize.py" in out  # the profile names them
