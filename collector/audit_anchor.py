"""Audit anchors that cannot be forged from inside the data directory.

When retention prunes the oldest audit entries, an *anchor* line takes their place (see
``collector.audit``). A hash alone proves nothing about who wrote the anchor: anyone who can edit
``audit.log`` can also compute a SHA-256, and could replace recent entries by a hand-made anchor
(hiding who read what). So an anchor carries ``mac``, an HMAC-SHA256 of its fields keyed with a
secret kept **outside the data directory** (``audit.anchor_key_file``; default
``<data_dir>.audit-key`` beside it, created on the first prune, mode 0600), and it must be
consistent with the retention and with the entries after it:

* ``pruned`` equals ``through_seq`` (every entry before the anchor was pruned, none invented);
* ``through_time`` is at least ``retention_seconds`` before the anchor's ``time`` (entries are
  pruned only once they are older than the retention);
* the first entry after it is not older than ``through_time``.

:func:`check` names the first of these that fails; ``lethelog audit verify`` reports it with the
line. The key never enters the data directory, so a copy or edit of the data directory alone
cannot make an anchor that verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

import orjson

from collector.timefmt import parse_rfc3339

KEY_SUFFIX = ".audit-key"


class AnchorKeyError(OSError):
    """The anchor key cannot be read or created."""


def default_key_path(log_path: Path) -> Path:
    """``<data_dir>.audit-key``: beside the data directory that holds ``log_path``."""
    data_dir = Path(os.path.abspath(log_path)).parent
    return data_dir.parent / f"{data_dir.name}{KEY_SUFFIX}"


def load_key(path: Path, create: bool = False) -> bytes | None:
    """The key in ``path`` (``None`` when absent and not ``create``); raises AnchorKeyError."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            return None
        text = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile
            return load_key(path, create=False)
        except OSError as exc:
            raise AnchorKeyError(f"cannot create the audit anchor key {path.name} "
                                 f"({type(exc).__name__})") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except (OSError, UnicodeDecodeError) as exc:
        raise AnchorKeyError(f"cannot read the audit anchor key {path.name} "
                             f"({type(exc).__name__})") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise AnchorKeyError(f"audit anchor key {path.name} is not hex") from None
    if len(key) < 16:
        raise AnchorKeyError(f"audit anchor key {path.name} is shorter than 16 bytes")
    return key


def _mac(anchor: dict[str, Any], key: bytes) -> str:
    body = {k: v for k, v in anchor.items() if k not in ("hash", "mac")}
    return hmac.new(key, orjson.dumps(body, option=orjson.OPT_SORT_KEYS),
                    hashlib.sha256).hexdigest()


def sign(anchor: dict[str, Any], key: bytes) -> None:
    """Add ``mac`` to ``anchor`` (before its ``hash`` is computed)."""
    anchor["mac"] = _mac(anchor, key)


def check(anchor: dict[str, Any], key: bytes | None, following: dict[str, Any] | None
          ) -> str | None:
    """Why ``anchor`` (followed by entry ``following``) is not one lethelog wrote, or None."""
    mac = anchor.get("mac")
    if not isinstance(mac, str):
        return "anchor carries no mac (hand-made, or written before anchors were signed)"
    if key is None:
        return ("anchor cannot be checked: the audit anchor key (audit.anchor_key_file) is "
                "missing, so the pruned history is unproven")
    if not hmac.compare_digest(mac, _mac(anchor, key)):
        return "anchor mac does not match (not written by lethelog with this key: forged)"
    try:
        seq, pruned = int(anchor["through_seq"]), int(anchor["pruned"])
        at, through = parse_rfc3339(anchor["time"]), parse_rfc3339(anchor["through_time"])
        retention = float(anchor["retention_seconds"])
    except (KeyError, TypeError, ValueError):
        return "anchor lacks through_seq, pruned, time, through_time or retention_seconds"
    if seq < 1 or pruned != seq:
        return f"anchor says {pruned} entries pruned through seq {seq} (they must be equal)"
    if through > at - retention:
        return ("anchor prunes entries younger than its retention "
                f"({anchor['through_time']} is not {retention:g}s before {anchor['time']})")
    if following is not None:
        try:
            after = parse_rfc3339(following["time"])
        except (KeyError, TypeError, ValueError):
            return None  # the entry's own check names what is wrong with it
        if after < through:
            return "the entry after the anchor is older than the last entry it pruned"
    return None
