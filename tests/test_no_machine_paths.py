"""No committed file names an absolute path of the machine it was written on.

Benchmarks, docs and tests write ``.venv/bin/python``, ``../shared/corpus/...`` and
``<site-packages>`` instead (``bench.common.portable`` does it for the RESULTS.md writers).
Third-party data copied unchanged (tests/data/, collector/data/) is not searched.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT

SKIP_DIRS = ("tests/data/", "collector/data/")
# Built from pieces so that this file does not match itself.
ROOTS = ["wo" + "rk", "ro" + "ot", "ho" + r"me/[a-z_][\w.-]*",
         "tm" + r"p/(?:pytest-of-|tmp)[\w.-]*"]
MACHINE = re.compile(r"(?<![\w.}~$-])/(?:" + "|".join(ROOTS) + r")/")


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"git ls-files failed in {ROOT.name}: {exc}")
    return [p for p in out.decode().split("\0") if p and not p.startswith(SKIP_DIRS)]


def machine_paths(text: str) -> list[str]:
    found = [m.group(0) for m in MACHINE.finditer(text)]
    for own in {str(ROOT), str(ROOT.parent)} - {"/"}:
        if own in text:
            found.append(own)
    return found


def test_the_pattern_finds_machine_paths() -> None:
    assert machine_paths("$ /" + "work/venv/bin/python bench/x.py") != []
    assert machine_paths("log: /" + "root/corpus/a.log") != []
    assert machine_paths("at /" + "home/alice/lethelog/README.md") != []
    assert machine_paths("kept in /" + "tmp/pytest-of-root/pytest-1/x") != []
    assert machine_paths(f"checkout {ROOT}/bench") != []
    for fine in (".venv/bin/python", "../shared/corpus/logs/x", "<site-packages>/m.mmdb",
                 "{tmp_path}/tmp/body", "ATTACH DATABASE '/tmp/evil.db'",
                 "https://www.virustotal.com/gui/home/url", "/var/log/nginx/access.log"):
        assert machine_paths(fine) == [], fine


def test_no_committed_file_names_a_machine_path() -> None:
    bad = []
    for rel in _tracked():
        path = ROOT / rel
        if not path.is_file():
            continue  # deleted in the work tree
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for n, line in enumerate(text.splitlines(), 1):
            if machine_paths(line):
                bad.append(f"{rel}:{n}: {line.strip()[:120]}")
    assert bad == [], "absolute machine paths (write .venv/bin/python, ../shared/corpus/..., " \
        "<site-packages>):\n" + "\n".join(bad[:40])
