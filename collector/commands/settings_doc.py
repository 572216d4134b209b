"""``lethelog settings``: every setting with its default, environment name and documentation.

The table lives in ``docs/configuration.md`` between the settings-table markers; regenerate it
with ``lethelog settings --write docs/configuration.md`` or
``python -m collector.commands.settings_doc``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from collector.cli import command
from collector.settings import Settings, all_settings, env_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _display(kind: str, value: Any) -> str:
    if kind == "duration" and isinstance(value, float):
        for unit, secs in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if value >= secs and value % secs == 0:
                return f'"{int(value // secs)}{unit}"'
        return f'"{int(value * 1000)}ms"'
    if kind == "size" and isinstance(value, int):
        for unit, n in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
            if value >= n and value % n == 0:
                return f'"{value // n}{unit}"'
    return _show(value)


def settings_table() -> str:
    """The Markdown table in ``docs/configuration.md`` between the settings-table markers."""
    defaults = Settings()
    rows = ["| setting | default | environment | meaning |", "|---|---|---|---|"]
    for section, f in all_settings():
        value = getattr(getattr(defaults, section), f.name)
        kind = f.metadata.get("kind", "")
        shown = _display(kind, value).replace("|", "\\|")
        doc = str(f.metadata["doc"]).replace("|", "\\|")
        rows.append(f"| `{section}.{f.name}` | `{shown}` | `{env_name(section, f.name)}` | {doc} |")
    return "\n".join(rows)


START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def doc_with_table(doc: str) -> str:
    """``doc`` with the text between the settings-table markers replaced by the current table."""
    if START not in doc or END not in doc:
        raise ValueError(f"no {START} ... {END} markers in the document")
    head, _, rest = doc.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{settings_table()}\n{END}{tail}"


def write_table(path: Path = DOC) -> None:
    path.write_text(doc_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--write", "--write-readme", dest="write", metavar="FILE",
                   help="rewrite the table in this file (docs/configuration.md)")


@command("settings", "list every setting with its default and meaning", _args)
def run(ns: argparse.Namespace) -> int:
    if ns.write:
        write_table(Path(ns.write))
        return 0
    print(settings_table())
    return 0


if __name__ == "__main__":
    write_table()
    print(f"settings table written to {DOC}")
