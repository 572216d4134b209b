"""Shared test helpers: where the corpus lives, and skipping clearly when it is absent."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
        pytest.skip(f"corpus file {relative} not found: ../shared/corpus is absent on this machine")
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
