"""Query results as NDJSON, CSV, JSON or a readable table (for the CLI)."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

from collector.query.run import Result

FORMATS = ("ndjson", "csv", "json")
CONTENT_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv",
                 "json": "application/json"}


def meta(result: Result) -> dict[str, Any]:
    return {"source": result.source, "rows": len(result.rows), "truncated": result.truncated,
            "elapsed_ms": round(result.elapsed * 1000, 3), "columns": result.columns}


def render(result: Result, fmt: str) -> bytes:
    if fmt == "json":
        return orjson.dumps({**meta(result), "data": result.rows})
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(result.columns)
        for row in result.rows:
            w.writerow([_cell(row.get(c)) for c in result.columns])
        return buf.getvalue().encode()
    return b"".join(orjson.dumps(r) + b"\n" for r in result.rows)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | dict):
        return orjson.dumps(v).decode()
    return str(v)


def table(columns: list[str], rows: list[dict[str, Any]], width: int = 60) -> str:
    """Aligned columns with a header; long cells cut at ``width`` characters."""
    cells = [[_short(_cell(r.get(c)) if r.get(c) is not None else "-", width) for c in columns]
             for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    numeric = [all(_is_number(r.get(c)) for r in rows if r.get(c) is not None)
               for c in columns]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out) + "\n"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
