"""Addresses out of free text (query text, error messages) before it is kept or shown.

A query may quote a full client address (``ip = "85.181.35.98"``); the audit log and error
messages keep it truncated like a stored record's address, so a raw address never reaches disk.
"""

from __future__ import annotations

import ipaddress
import re

from masking.ip import AddressError, IPMasker

_masker = IPMasker(24, 48)
_V4 = re.compile(r"(?<![0-9.])\d{1,3}(?:\.\d{1,3}){3}(?![0-9])")
_V6 = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
                 r"(?:%[0-9A-Za-z_.-]+)?(?![0-9A-Fa-f:])")
_V4_TAIL = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f:]*:\d{1,3}(?:\.\d{1,3}){3}(?![0-9])")


def _mask(m: re.Match[str]) -> str:
    text = m.group(0)
    try:
        ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return text
    try:
        return _masker.mask(text)
    except AddressError:
        return "[address]"


def redact_addresses(text: str) -> str:
    """``'ip = "85.181.35.98"'`` → ``'ip = "85.181.35.0"'`` (IPv4 /24, IPv6 /48)."""
    if not any(c in text for c in ".:"):
        return text
    text = _V4_TAIL.sub(_mask, text)
    text = _V4.sub(_mask, text)
    return _V6.sub(_mask, text)
