"""``lethelog serve`` under cProfile (event-loop thread and store writer thread), for
``bench/http_ingest.py --profile``. Writes ``PREFIX.main.prof`` and ``PREFIX.writer.prof``
when the service stops (SIGTERM / SIGINT).

Usage: ``python bench/profiled_serve.py PREFIX serve --listen ... --data-dir ...``
"""

from __future__ import annotations

import cProfile
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.cli import main
from collector.store.sqlite import SQLiteStore


def run(prefix: str, argv: list[str]) -> int:
    writer = cProfile.Profile()
    original = SQLiteStore._run

    def profiled(self: SQLiteStore) -> None:
        writer.enable()
        try:
            original(self)
        finally:
            writer.disable()
            writer.dump_stats(f"{prefix}.writer.prof")

    SQLiteStore._run = profiled  # type: ignore[method-assign]
    prof = cProfile.Profile()
    prof.enable()
    try:
        return main(argv)
    finally:
        prof.disable()
        prof.dump_stats(f"{prefix}.main.prof")


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1], sys.argv[2:]))
