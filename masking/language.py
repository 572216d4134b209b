"""``Accept-Language`` → primary language and the ordered list of language tags."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["parse_accept_language"]

_TAG = re.compile(r"^(?:[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)$")
_Q = re.compile(r"^\s*q\s*=\s*([01](?:\.\d{0,3})?|\.\d{1,3})\s*$", re.I)


@lru_cache(maxsize=4096)
def _parse(header: str) -> tuple[str | None, tuple[str, ...]]:
    items: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        piece = part.strip()
        if not piece:
            continue
        tag, _, params = piece.partition(";")
        tag = tag.strip().replace("_", "-")
        if not _TAG.match(tag) or tag == "*":
            continue
        q = 1.0
        if params:
            m = _Q.match(params.split(";")[0])
            if not m:
                continue
            q = float(m.group(1))
        if q <= 0 or q > 1:
            continue
        subtags = tag.split("-")
        norm = subtags[0].lower()
        for sub in subtags[1:]:
            norm += "-" + (sub.upper() if len(sub) == 2 else sub.title() if len(sub) == 4 else sub)
        items.append((-q, index, norm))
        if len(items) > 32:
            break
    items.sort()
    seen: list[str] = []
    for _, _, tag in items:
        if tag not in seen:
            seen.append(tag)
    if not seen:
        return None, ()
    return seen[0].split("-")[0], tuple(seen)


def parse_accept_language(header: str | None) -> tuple[str | None, list[str]]:
    """``"de-DE,de;q=0.9,en;q=0.8"`` → ``("de", ["de-DE", "de", "en"])``; malformed → (None, [])."""
    if not header or len(header) > 1024:
        return None, []
    primary, tags = _parse(header)
    return primary, list(tags)
