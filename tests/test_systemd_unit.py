"""deploy/systemd/*.service (the service and the weekly GeoIP updater): their sandboxing, rated
by systemd itself.

``systemd-analyze security --offline=yes`` scores a unit file's exposure (0 = fully locked
down, 10 = none); docs/deploy.md promises ≤ 1.5 for the shipped unit. ``systemd-analyze
verify`` checks that every directive is known and the ExecStart binary exists (the test points
ExecStart at this checkout's ``lethelog``; nothing else in the unit is changed).

Running ``lethelog serve`` under the unit's sandbox (``systemd-run -p ...``) needs a booted
systemd (PID 1); test containers usually have none, and then only the offline analysis runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service import ROOT

UNIT = ROOT / "deploy" / "systemd" / "lethelog.service"
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 1.5  # docs/deploy.md


def _analyze() -> str:
    if ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; tests/run.sh "
                    "installs it)")
    return ANALYZE


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_unit_exposure_is_at_most_1_5(unit: Path) -> None:
    out = subprocess.run([_analyze(), "security", "--offline=yes", str(unit)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(rf"Overall exposure level for {re.escape(unit.name)}: (\d+\.\d)", out.stdout)
    assert m, out.stdout[-2000:] + out.stderr[-2000:]
    assert float(m.group(1)) <= MAX_EXPOSURE, out.stdout
    # what stays open is the network (a collector must listen) and the root directory
    # (and the GeoIP updater's world-readable files, which the service reads)
    failed = {line.split()[1].split("=")[0] for line in out.stdout.splitlines()
              if line.startswith("✗")}
    assert failed <= {"RootDirectory", "RestrictAddressFamilies", "PrivateNetwork",
                      "DeviceAllow", "IPAddressDeny", "UMask"}, failed


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_unit_verifies_with_a_real_lethelog_binary(unit: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("lethelog")
    if not exe.exists():
        pytest.skip("the lethelog console script is not installed next to this python")
    text = unit.read_text()
    assert "/opt/lethelog/.venv/bin/lethelog" in text
    copy = tmp_path / unit.name
    copy.write_text(text.replace("/opt/lethelog/.venv/bin/lethelog", str(exe)))
    out = subprocess.run([_analyze(), "verify", str(copy)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr
