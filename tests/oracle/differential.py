"""Run the columnar engine and the record-at-a-time oracle on the same input; name differences.

``Pair`` builds both chains from one :class:`Settings` with the same key, enrichers and a fixed
wall clock. ``compare_*`` return a list of differences, each naming the line and the field; an
empty list means the stored records, the dropped lines and the rejected line numbers and
reasons are identical.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from collector.engine.checks import CheckTime
from collector.enrich.geo import GeoEnricher
from collector.enrich.ua import UAEnricher
from collector.keys import Key
from collector.parse import ParseError
from collector.pipeline import BatchResult, Pipeline, build_steps
from collector.record import Record, RecordError
from collector.settings import Settings
from collector.sources.body import read_body
from tests.oracle import pipeline as oracle

Item = tuple[int, Record | ParseError | RecordError]

NOW = 1_790_000_000.0  # the fixed wall clock of both chains (2026-09-21)


class _Keys:
    """A key ring that always answers with one key (like ``import``'s PinnedKeys)."""

    def __init__(self) -> None:
        self.key = Key(period=0, secret=b"k" * 32)

    def current(self, now: float | None = None) -> Key:
        return self.key


class Pair:
    def __init__(self, settings: Settings, source: str = "diff",
                 max_age: float | None = None) -> None:
        self.settings = settings
        self.geo = GeoEnricher(settings.enrich, settings.server.data_dir)
        self.ua = UAEnricher(settings.enrich.ua_cache_size)
        keys: Any = _Keys()
        steps = build_steps(settings, keys, self.geo, self.ua, source=source, max_age=max_age)
        for step in steps:
            if isinstance(step, CheckTime):
                step.clock = lambda: NOW
        self.engine = Pipeline(steps)
        osteps = oracle.build_steps(settings, keys, self.geo, self.ua, source=source,
                                    max_age=max_age)
        for ostep in osteps:
            if isinstance(ostep, oracle.CheckTime):
                ostep.clock = lambda: NOW
        self.oracle = oracle.Pipeline(osteps)

    def close(self) -> None:
        self.geo.close()

    def run_oracle(self, items: Iterable[Item], source: str | None, sites: frozenset[str] | None
                   ) -> tuple[dict[int, Record], dict[int, list[str]], set[int]]:
        """Per line: the stored record, the errors, and the lines consent dropped."""
        records: dict[int, Record] = {}
        errors: dict[int, list[str]] = {}
        dropped: set[int] = set()
        for line, item in items:
            part = self.oracle.process([(line, item)], source=source, sites=sites)
            for _, reason in part.errors:
                errors.setdefault(line, []).append(reason)
            if part.records:
                records[line] = part.records[0]
            if part.dropped:
                dropped.add(line)
        return records, errors, dropped


def engine_view(result: BatchResult) -> tuple[dict[int, Record], dict[int, list[str]], int]:
    records = dict(zip(result.lines, result.records, strict=True))
    errors: dict[int, list[str]] = {}
    for line, reason in result.errors:
        errors.setdefault(line, []).append(reason)
    return records, errors, result.dropped


def differences(pair: Pair, items: list[Item], result: BatchResult, source: str | None = None,
                sites: frozenset[str] | None = None, label: str = "") -> list[str]:
    """Compare the engine's ``result`` with the oracle run on ``items``."""
    o_records, o_errors, o_dropped = pair.run_oracle(items, source, sites)
    e_records, e_errors, e_dropped = engine_view(result)
    out: list[str] = []
    where = f"{label}: " if label else ""
    for line in sorted(set(o_records) | set(o_records) | set(e_records)):
        o, e = o_records.get(line), e_records.get(line)
        if o is None or e is None:
            out.append(f"{where}line {line}: stored by the "
                       f"{'engine' if o is None else 'oracle'} only "
                       f"(oracle errors {o_errors.get(line)}, engine errors "
                       f"{e_errors.get(line)})")
            continue
        for name in sorted(set(o) | set(e)):
            if name not in o or name not in e or o[name] != e[name] or \
                    type(o[name]) is not type(e[name]):
                out.append(f"{where}line {line} field {name}: oracle {o.get(name, '<absent>')!r}"
                           f" engine {e.get(name, '<absent>')!r}")
    for line in sorted(set(o_errors) | set(e_errors)):
        if o_errors.get(line) != e_errors.get(line):
            out.append(f"{where}line {line} rejects: oracle {o_errors.get(line)} engine "
                       f"{e_errors.get(line)}")
    if len(o_dropped) != e_dropped:
        out.append(f"{where}dropped: oracle {len(o_dropped)} (lines {sorted(o_dropped)[:10]}) "
                   f"engine {e_dropped}")
    return out


def compare_body(pair: Pair, data: bytes, content_type: str = "text/plain",
                 fmt: str | None = None, source: str | None = None,
                 sites: frozenset[str] | None = None, label: str = "") -> list[str]:
    """The engine on a whole body against the oracle on the per-line parsers' items."""
    max_line = pair.settings.ingest.max_line_length
    items = list(read_body(data, content_type, fmt, max_line))
    result = pair.engine.process_body(data, content_type, fmt, max_line, source, sites)
    return differences(pair, items, result, source, sites, label)


def compare_file(pair: Pair, path: Path, fmt: str | None = None) -> list[str]:
    return compare_body(pair, path.read_bytes(), "text/plain", fmt, label=path.name)
