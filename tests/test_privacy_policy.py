"""docs/privacy-policy.md holds together: every promise has tests, every test it names exists,
every setting it names is a real setting."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from collector.settings import all_settings
from tests.conftest import ROOT

PAGE = ROOT / "docs" / "privacy-policy.md"
PROMISES = ("IP truncation", "Deletion at session end", "No profiling", "Tiered access",
            "Every access logged", "Network restrictions", "Encrypted transport",
            "Do Not Track", "Data-subject rights")
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _sections() -> dict[str, str]:
    parts = re.split(r"^## (.+)$", PAGE.read_text(encoding="utf-8"), flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


@cache
def _test_names(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                     and node.name.startswith("test_"))


def missing_tests(text: str) -> list[str]:
    out = []
    for file, name in TEST_REF.findall(text):
        path = ROOT / file
        if not path.is_file():
            out.append(f"{file} does not exist")
        elif name not in _test_names(path):
            out.append(f"{file}::{name} does not exist")
    return out


def test_every_promise_has_its_section_with_tests() -> None:
    sections = _sections()
    assert [p for p in PROMISES if p not in sections] == []
    for promise in PROMISES:
        assert TEST_REF.findall(sections[promise]), f"{promise}: no test"
        assert "Settings:" in sections[promise], f"{promise}: no setting"


def test_every_listed_test_exists() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert len(TEST_REF.findall(text)) >= 30
    assert missing_tests(text) == []


def test_the_check_finds_a_missing_test() -> None:
    assert missing_tests("`tests/test_roles.py::test_every_route_declares_a_role`") == []
    assert missing_tests("`tests/test_roles.py::test_that_was_renamed`") == [
        "tests/test_roles.py::test_that_was_renamed does not exist"]
    assert missing_tests("`tests/test_gone.py::test_x`") == ["tests/test_gone.py does not exist"]


def test_every_listed_setting_exists() -> None:
    known = {f"{section}.{f.name}" for section, f in all_settings()}
    sections = {name.split(".")[0] for name in known}
    named = set(re.findall(r"`([a-z_]+\.[a-z0-9_]+)`", PAGE.read_text(encoding="utf-8")))
    named = {n for n in named if n.split(".")[0] in sections}
    assert len(named) >= 20
    assert sorted(named - known) == []
