"""Pure masking functions: IP truncation, URL scrubbing, session keys, languages, consent.

This package does no I/O (no files, network or logging) and imports nothing from ``collector``,
so it can be reviewed on its own.
"""

from masking.consent import consent_flags
from masking.ip import AddressError, Client, IPMasker, weaker_than_default
from masking.language import parse_accept_language
from masking.session import session_key
from masking.url import UrlScrubber, path_template

__all__ = [
    "AddressError",
    "Client",
    "IPMasker",
    "UrlScrubber",
    "consent_flags",
    "parse_accept_language",
    "path_template",
    "session_key",
    "weaker_than_default",
]
