"""The transform chain alone, one process: columnar engine against the record-at-a-time oracle.

Usage::

    .venv/bin/python bench/engine_bench.py [--log bench/data/access-1000000.log] [-n 300000]
        [--chunk 50000] [--ndjson] [--oracle] [--profile]

Reads the first ``-n`` lines of a combined log (made by ``bench/gen_log.py`` when absent), then
runs them in chunks of ``--chunk`` lines through ``Pipeline.process_body`` (parse → check time →
… → shape, GeoIP City on from ``tests/data/mmdb``) and reports lines/s and µs per line, split by
stage. ``--ndjson`` sends the same records as canonical NDJSON bodies (what ``bench/http_ingest.py``
posts). ``--oracle`` also runs the old chain (per-line parser + ``tests/oracle/pipeline.py``) on the
same chunks, for a before/after on the same machine in the same run. No store: this measures what
issue 12a owns (bytes → shaped batch); the store's cost is ``bench/store_backends.py``'s.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gen_log import generate  # noqa: E402
from collector.engine.parse import parse_body  # noqa: E402
from collector.engine.stage import Batch  # noqa: E402
from collector.enrich.geo import GeoEnricher  # noqa: E402
from collector.enrich.ua import UAEnricher  # noqa: E402
from collector.keys import Key  # noqa: E402
from collector.pipeline import Pipeline, build_steps  # noqa: E402
from collector.settings import load_settings  # noqa: E402
from collector.sources.body import read_body  # noqa: E402

MMDB = ROOT / "tests" / "data" / "mmdb"


class _Keys:
    key = Key(period=0, secret=b"b" * 32)

    def current(self, now: float | None = None) -> Key:
        return self.key


def _settings(data_dir: Path):  # type: ignore[no-untyped-def]
    cfg = data_dir / "lethelog.toml"
    cfg.write_text(f'[server]\ndata_dir = "{data_dir}"\n'
                   f'[enrich]\ncity_db = "{MMDB / "GeoIP2-City-Test.mmdb"}"\n')
    return load_settings(cfg, env={})


def _ndjson(lines: list[str]) -> bytes:
    import re

    pat = re.compile(r'^(\S+) \S+ \S+ \[[^\]]+\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "([^"]*)" '
                     r'"([^"]*)"')
    now = time.time()
    out = []
    for line in lines:
        m = pat.match(line)
        if not m:
            continue
        ip, method, target, status, size, ref, ua = m.groups()
        out.append(orjson.dumps({
            "time": now, "client": ip, "method": method, "target": target,
            "protocol": "HTTP/1.1", "status": int(status),
            "bytes": None if size == "-" else int(size),
            "referrer": None if ref == "-" else ref, "user_agent": ua}))
    return b"\n".join(out) + b"\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--log", type=Path, default=ROOT / "bench" / "data" / "access-1000000.log")
    p.add_argument("-n", "--lines", type=int, default=300_000)
    p.add_argument("--chunk", type=int, default=50_000)
    p.add_argument("--ndjson", action="store_true")
    p.add_argument("--oracle", action="store_true")
    p.add_argument("--profile", action="store_true")
    ns = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="engine-bench-"))
    log = ns.log
    if not log.exists():
        log = tmp / "gen.log"
        generate(ns.lines, log, seed=1, clients_n=50_000, v6_share=0.05, ua_pool_size=40_000,
                 rate=20.0, start=1_780_000_000.0)
    with open(log, encoding="utf-8", errors="replace") as fh:
        lines = [ln for _, ln in zip(range(ns.lines), fh, strict=False)]
    chunks = [lines[i:i + ns.chunk] for i in range(0, len(lines), ns.chunk)]
    bodies = [(_ndjson(c) if ns.ndjson else "".join(c).encode()) for c in chunks]
    ctype = "application/x-ndjson" if ns.ndjson else "text/plain"
    settings = _settings(tmp)
    geo = GeoEnricher(settings.enrich, settings.server.data_dir)
    ua = UAEnricher(settings.enrich.ua_cache_size)
    steps = build_steps(settings, _Keys(), geo, ua, source="bench")  # type: ignore[arg-type]
    pipe = Pipeline(steps)
    per_stage: dict[str, float] = defaultdict(float)
    prof = cProfile.Profile() if ns.profile else None
    began = time.perf_counter()
    accepted = 0
    if prof:
        prof.enable()
    for body in bodies:
        t0 = time.perf_counter()
        frame, _errors = parse_body(body, ctype, None, 65536)
        per_stage["parse"] += time.perf_counter() - t0
        batch = Batch(frame, None, None)
        for step in steps:
            t0 = time.perf_counter()
            batch, _ = step(batch)
            per_stage[type(step).__name__] += time.perf_counter() - t0
        accepted += batch.frame.height
    if prof:
        prof.disable()
    took = time.perf_counter() - began
    n = len(lines)
    mode = "ndjson" if ns.ndjson else "text"
    print(f"engine ({mode}, chunks of {ns.chunk}): {n} lines in {took:.2f} s = "
          f"{n / took:,.0f} lines/s ({took / n * 1e6:.1f} µs/line), {accepted} records")
    for name, secs in sorted(per_stage.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<12} {secs:6.2f} s  {secs / n * 1e6:5.1f} µs/line  {secs / took:5.1%}")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    if ns.oracle:
        from tests.oracle import pipeline as oracle

        osteps = oracle.build_steps(settings, _Keys(), geo, ua, source="bench")  # type: ignore
        opipe = oracle.Pipeline(osteps)
        began = time.perf_counter()
        accepted = 0
        for body in bodies:
            accepted += len(opipe.process(read_body(body, ctype, None, 65536)).records)
        took_o = time.perf_counter() - began
        print(f"oracle (record at a time): {n} lines in {took_o:.2f} s = {n / took_o:,.0f} "
              f"lines/s ({took_o / n * 1e6:.1f} µs/line), {accepted} records; engine is "
              f"{took_o / took:.1f}× faster")
    _ = pipe
    geo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
