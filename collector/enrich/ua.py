"""User-Agent enrichment: browser, OS, device, device type and bot flag, behind an LRU cache.

``user_agents.parse`` always runs ua-parser's legacy pure-Python path (0.5–1 ms per string).
Here the family/version parse comes from ua-parser 1.x with its fastest available resolver
(the Rust ``ua-parser-rs`` one when installed; ~30 µs), using the same ``ua_parser_builtins``
regexes as the legacy path, and the result is poured into a ``user_agents.parsers.UserAgent``
built without its slow ``__init__`` so that user-agents' own classification logic
(``is_mobile``/``is_tablet``/``is_pc``/``is_bot``) is reused unchanged.
``tests/test_enrich_ua.py`` checks the two give identical objects on every uap-core case.

Crawlers are also recognised by the crawler-user-agents list (see :mod:`.bots`).
"""

from __future__ import annotations

import functools
from typing import Any

import ua_parser
from ua_parser import Domain
from user_agents.parsers import (
    UserAgent,
    parse_browser,
    parse_device,
    parse_operating_system,
)

from .bots import CrawlerMatcher

__all__ = ["UA_FIELDS", "UAEnricher", "build_user_agent"]

UA_FIELDS: tuple[str, ...] = (
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device",
    "device_type",
    "is_bot",
)

_EMPTY: dict[str, Any] = dict.fromkeys(UA_FIELDS)
_UNKNOWN = "Other"  # ua-parser's family for "no match"
_MISSING = frozenset(("", "-", '"-"'))
_MAX_UA_LENGTH = 2048  # longer strings are cut before parsing (regex cost is linear in length)

_default_parser: ua_parser.Parser | None = None


def _make_parser() -> ua_parser.Parser:
    """A ua-parser 1.x parser with the best resolver and no cache (we keep our own)."""
    if ua_parser.RegexResolver is not None or ua_parser.Re2Resolver is not None:
        matchers = ua_parser.load_lazy_builtins()
    else:
        matchers = ua_parser.load_builtins()
    return ua_parser.Parser(ua_parser.BestAvailableResolver(matchers))


def _parser() -> ua_parser.Parser:
    global _default_parser
    if _default_parser is None:
        _default_parser = _make_parser()
    return _default_parser


def build_user_agent(user_agent: str, parser: ua_parser.Parser | None = None) -> UserAgent:
    """A ``user_agents`` ``UserAgent`` equal to ``user_agents.parse(ua)``, parsed by ua-parser 1.x.

    Mirrors ``ua_parser.user_agent_parser.Parse`` (the legacy path user-agents calls): browser
    versions map empty to ``None`` and the browser keeps major/minor/patch; failed domains get
    family ``"Other"``.
    """
    result = (parser or _parser())(user_agent, Domain.ALL)
    obj: UserAgent = UserAgent.__new__(UserAgent)
    obj.ua_string = user_agent
    b = result.user_agent
    if b is None:
        obj.browser = parse_browser(_UNKNOWN)
    else:
        obj.browser = parse_browser(b.family, b.major or None, b.minor or None, b.patch or None)
    o = result.os
    if o is None:
        obj.os = parse_operating_system(_UNKNOWN)
    else:
        obj.os = parse_operating_system(o.family, o.major, o.minor, o.patch, o.patch_minor)
    d = result.device
    if d is None:
        obj.device = parse_device(_UNKNOWN, None, None)
    else:
        obj.device = parse_device(d.family, d.brand, d.model)
    return obj


def _known(value: str | None) -> str | None:
    if not value or value == _UNKNOWN:
        return None
    return value


class UAEnricher:
    """``enricher(user_agent) -> dict`` with every key of :data:`UA_FIELDS`; unknown is ``None``.

    ``device_type`` is one of ``desktop``, ``mobile``, ``tablet``, ``bot``, ``other`` (``None``
    when there is no User-Agent at all). Thread-safe; results are cached by the exact string.
    """

    def __init__(self, cache_size: int = 65536, crawlers: CrawlerMatcher | None = None) -> None:
        self._ua_parser = _make_parser()
        self._crawlers = crawlers if crawlers is not None else CrawlerMatcher()
        self._cached = functools.lru_cache(maxsize=cache_size)(self._parse)

    @property
    def crawler_engine(self) -> str:
        return self._crawlers.engine

    def __call__(self, user_agent: str | None) -> dict[str, Any]:
        if user_agent is None:
            return dict(_EMPTY)
        return dict(self._cached(user_agent))

    def cache_info(self) -> dict[str, int]:
        info = self._cached.cache_info()
        return {"hits": info.hits, "misses": info.misses, "size": info.currsize}

    def cache_clear(self) -> None:
        self._cached.cache_clear()

    def _parse(self, user_agent: str) -> dict[str, Any]:
        ua = user_agent.strip()
        if ua in _MISSING:
            return _EMPTY
        ua = ua[:_MAX_UA_LENGTH]
        obj = build_user_agent(ua, self._ua_parser)
        crawler = obj.is_bot or self._crawlers(ua)
        if crawler:
            device_type = "bot"
        elif obj.is_tablet:
            device_type = "tablet"
        elif obj.is_mobile:
            device_type = "mobile"
        elif obj.is_pc:
            device_type = "desktop"
        else:
            device_type = "other"
        return {
            "browser": _known(obj.browser.family),
            "browser_version": obj.browser.version_string or None,
            "os": _known(obj.os.family),
            "os_version": obj.os.version_string or None,
            "device": _known(obj.device.family),
            "device_type": device_type,
            "is_bot": crawler,
        }
