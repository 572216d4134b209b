"""Shared test helpers: where the corpus lives, and skipping clearly when it is absent."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
# ../shared/corpus from the project root; LETHELOG_CORPUS overrides.
CORPUS = Path(os.environ.get("LETHELOG_CORPUS", ROOT.parent / "shared" / "corpus"))


def corpus_file(relative: str) -> Path:
    """Path of a file in ../shared/corpus, or skip the test with the reason it is missing."""
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"corpus file {relative} not found: {CORPUS_ABSENT} on this machine")
    return path


def data_file(relative: str) -> Path:
    """A fixture copied into tests/data (permissive licence, notice in tests/data/NOTICE.md)."""
    path = DATA / relative
    assert path.exists(), f"missing test fixture {path}"
    return path


def log_fixture(name: str) -> Path:
    """A log fixture: the copy in tests/data/logs if there is one, else the corpus (or skip)."""
    local = DATA / "logs" / name
    if local.exists():
        return local
    return corpus_file(f"logs/{name}")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Redis Cluster (three primaries, three replicas) for the whole test session."""
    from tests.redis_cluster import RedisClusterProcs

    cluster = RedisClusterProcs.start(tmp_path_factory.mktemp("redis-cluster"), 3, replicas=1)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The store backend of a module's API-level tests (``tests/backends.py``)."""
    from tests import backends

    chosen = backends.Backend(request.param)
    if request.param == "redis":
        chosen.cluster = request.getfixturevalue("redis_cluster")
    backends.CURRENT = chosen
    try:
        yield chosen
    finally:
        backends.CURRENT = None


# --------------------------------------------------------------------------- skips in CI
# In CI (CI=true) tests/run.sh installs every service and tool the tests need: a test that skips
# there for a missing service or tool skipped for something that should have been there, so the
# skip is reported as a failure. Locally skips stay skips. Two skips stay skips in CI too: a test
# that says so (@pytest.mark.allow_skip(reason="...")), and one whose data file lives only in
# ../shared/corpus (read-only material beside the checkout, not something tests/run.sh can
# install; what the suite must always have is copied into tests/data).
CORPUS_ABSENT = "../shared/corpus is absent"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_skip(reason): this test may skip even in CI (say why)")


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = _skip_reason(report.longrepr).removeprefix("Skipped: ")
    if "../shared/corpus" in reason and "absent" in reason:
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped in CI (CI={os.environ.get('CI')}), where every service, tool "
                       f"and corpus file the tests need is installed: {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    allowed = item.get_closest_marker("allow_skip")
    if allowed is not None:
        assert allowed.kwargs.get("reason") or allowed.args, (
            f"{item.nodeid}: allow_skip needs a reason")
        return
    _fail_skip_in_ci(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector
                               ) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and in_ci():  # a module-level skip (pytest.skip(allow_module_level=True))
        _fail_skip_in_ci(report)


@pytest.fixture(scope="session", autouse=True)
def _geo_defaults_converted() -> None:
    """The zero-config GeoIP data converted once before any service starts, so every test sees
    the same databases (`serve` would otherwise swap them in when its background conversion
    ends; `lethelog geoip prepare` in tests/run.sh does the same ahead of time)."""
    from collector.enrich import fastdata

    for kind in fastdata.KINDS:
        source = fastdata.find_source(kind)
        if source is not None:
            fastdata.open_cached(kind, source)


@pytest.fixture(autouse=True)
def _backend_scope(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that does not ask for ``backend`` runs on the default store, even when a
    module-scoped ``backend`` of another test in its module is still set up."""
    from tests import backends

    saved = backends.CURRENT
    if "backend" not in request.fixturenames:
        backends.CURRENT = None
    yield
    backends.CURRENT = saved
