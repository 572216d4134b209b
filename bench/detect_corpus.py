"""Replay every real log of the corpus on its own timestamps and list the anomalies it raises.

    .venv/bin/python -m bench.detect_corpus [--logs ../shared/corpus/logs] [--write]

Each file is imported with ``lethelog import`` (the service's pipeline: parse, mask, enrich,
sessionize, aggregate) into a fresh data directory (per-minute rows kept for ten years, so an
old multi-day file is judged minute by minute over its whole span), then the detectors run over
its per-minute aggregates from its first to its last minute, as the service's runner does on
log time. Prints, per log: lines accepted, minutes spanned, and every anomaly
(kind, dimensions, the numbers of its strongest minute). The reasons are in docs/detection.md.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import PY, ROOT, command_line, today, write_section
from collector.detect.engine import Engine
from collector.detect.minute import bounds, load_minutes
from collector.settings import DetectSettings

LOGS = next((p / "shared" / "corpus" / "logs" for p in (ROOT.parent, ROOT.parent.parent)
             if (p / "shared" / "corpus" / "logs").is_dir()), ROOT.parent / "shared" / "corpus"
            / "logs")


def replay(log: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run([PY, "-m", "collector", "import", str(log), "--data-dir", tmp,
                              "--workers", "1"], capture_output=True, text=True, cwd=ROOT,
                             timeout=600, check=False,
                             env={**os.environ, "LETHELOG_AGGREGATES_MINUTE_RETENTION": "3650d"})
        accepted = next((int(line.split()[1].replace(",", "")) for line in
                         res.stdout.splitlines() if line.startswith("accepted")), 0)
        db = Path(tmp) / "lethelog.db"
        out: dict[str, Any] = {"log": log.name, "accepted": accepted, "minutes": 0,
                               "anomalies": []}
        if not db.exists():
            return out
        conn = sqlite3.connect(db)
        first, last = bounds(conn)
        if first is None or last is None:
            return out
        out["minutes"] = (last - first) // 60 + 1
        engine = Engine(DetectSettings(), anonymizers=False)
        for start in range(first, last + 60, 1440 * 60):
            end = min(last + 60, start + 1440 * 60)
            minutes = load_minutes(conn, start, end)
            by_t: dict[int, dict[str, Any]] = {}
            for (t, site), m in minutes.items():
                by_t.setdefault(t, {})[site] = m
            for t in range(start, end, 60):
                for what, a in engine.feed(t, by_t.get(t, {})):
                    if what == "opened":
                        out["anomalies"].append(a)
        conn.close()
        return out


def describe(a: Any) -> str:
    ev = a.peak or a.evidence
    keep = {k: v for k, v in ev.items() if not isinstance(v, list | dict)}
    dims = ", ".join(f"{k}={v}" for k, v in a.dims.items())
    numbers = ", ".join(f"{k} {v}" for k, v in keep.items())
    return f"`{a.kind}`{' ' + dims if dims else ''} ({numbers})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, default=LOGS)
    ap.add_argument("--write", action="store_true", help="write the table into bench/RESULTS.md")
    ns = ap.parse_args(argv)
    if not ns.logs.is_dir():
        print(f"detect_corpus: {ns.logs} not found (../shared/corpus)", file=sys.stderr)
        return 2
    rows = ["| log | lines accepted | minutes spanned | anomalies |", "|---|---|---|---|"]
    for log in sorted(ns.logs.iterdir()):
        r = replay(log)
        kinds = Counter(a.kind for a in r["anomalies"])
        shown = "; ".join(describe(a) for a in r["anomalies"][:6])
        more = len(r["anomalies"]) - 6
        summary = (", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ": " + shown
                   + (f"; … {more} more" if more > 0 else "")) if kinds else "none"
        rows.append(f"| `{r['log']}` | {r['accepted']:,} | {r['minutes']:,} | {summary} |")
        print(rows[-1], flush=True)
    if ns.write:
        write_section("Anomaly detection: the corpus logs on their own timestamps "
                      "(bench/detect_corpus.py)",
                      f"`{command_line(sys.argv)}` — {today()}\n\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
