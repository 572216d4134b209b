"""With CI=true a skipped test fails (unless marked allow_skip with a reason); locally it skips."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

pytest_plugins = ["pytester"]

CASES = '''
import pytest

def test_service_missing():
    pytest.skip("redis-server is not installed")

@pytest.mark.skipif(True, reason="goaccess is not installed")
def test_tool_missing():
    pass

@pytest.mark.allow_skip(reason="needs an optional package nobody installs")
def test_allowed():
    pytest.skip("optional package absent")

def test_corpus_absent():
    pytest.skip("corpus file logs/x.log not found: ../shared/corpus is absent on this machine")

@pytest.mark.xfail(reason="known bug", strict=True)
def test_known_bug():
    assert False

def test_passes():
    pass
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_cases=CASES)
    return pytester


def test_locally_skips_stay_skips(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
                                  ) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)
    result.stdout.fnmatch_lines(["*SKIPPED*redis-server is not installed*"])


def test_in_ci_a_skip_is_a_failure(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
                                   ) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("-rfEs", "-p", "no:cacheprovider")
    # a skip in the call fails the test; a skipif (evaluated in setup) is an error of it
    # the allowed skip and the absent read-only corpus stay skips
    result.assert_outcomes(passed=1, failed=1, errors=1, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines([
        "*FAILED*test_service_missing*",
        "*ERROR*test_tool_missing*",
    ])
    assert "skipped in CI" in result.stdout.str() and "goaccess is not installed" in \
        result.stdout.str()
    assert result.ret != 0


def test_in_ci_a_module_level_skip_is_a_failure(pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_mod='''
import pytest
pytest.skip("chromium is not installed", allow_module_level=True)

def test_x():
    pass
''')
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    assert "chromium is not installed" in result.stdout.str()
    monkeypatch.setenv("CI", "")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=1)


def test_run_sh_summarises_skips() -> None:
    run = (ROOT / "tests" / "run.sh").read_text(encoding="utf-8")
    assert "-rs" in run.split("== pytest")[1].splitlines()[0]
