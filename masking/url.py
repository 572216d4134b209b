"""Secrets out of URLs: query scrubbing by name and by value shape, paths, referrers, templates.

Everything here works on ``str`` and returns ``str``; nothing is logged or stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, unquote, unquote_plus

from masking.textaddr import TextMasker

__all__ = ["DEFAULT_SECRET_PARAMS", "REDACTED", "UrlScrubber", "path_template", "scrub_text"]

REDACTED = "[redacted]"

DEFAULT_SECRET_PARAMS: frozenset[str] = frozenset(
    """
    token access_token accesstoken refresh_token id_token auth auth_token authtoken authorization
    bearer key api_key apikey apikeys api-key secret client_secret secret_key password passwd pwd
    pass passphrase pin session sessionid session_id sessid sid phpsessid jsessionid aspsessionid
    cfid cftoken code auth_code signature sig hmac hash nonce state csrf xsrf csrf_token
    email mail e-mail otp totp mfa credential credentials cred private privatekey ssn iban
    x-amz-signature x-amz-credential x-amz-security-token x-goog-signature
    """.split()
)
# Tokens that mark a parameter as secret when they appear inside a longer name (x_auth_token).
_SECRET_PARTS: frozenset[str] = frozenset(
    """
    token auth key apikey password passwd pwd secret session sessionid sid sessid phpsessid
    jsessionid signature sig email mail otp credential credentials hmac csrf xsrf passphrase
    """.split()
)
_SPLIT_NAME = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")

# anchored at the start of a run of local-part characters: a long run with no "@" is scanned
# once, not once per position (which was quadratic)
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@"
                    r"[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
_HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{16,}(?![0-9A-Za-z])")
_B64 = re.compile(r"(?<![A-Za-z0-9_\-+/])[A-Za-z0-9_\-+/]{24,}={0,2}(?![A-Za-z0-9_\-+/])")
_CARD = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,18}(?![0-9])")
_INNER_PARAM = re.compile(r"(?i)(?<![A-Za-z0-9])([A-Za-z0-9_.\-\[\]]{1,64})=([^&;#\s]*)")

_TOKEN_PREFIX_SEGMENTS = frozenset(
    """
    reset password-reset reset-password resetpassword verify verification confirm confirmation
    activate activation token tokens invite invitation unsubscribe magic magic-link login signin
    sign-in otp auth key keys session sessions share download-token
    """.split()
)


def _is_b64_token(run: str) -> bool:
    has_digit = any(c.isdigit() for c in run)
    has_upper = any(c.isupper() for c in run)
    has_lower = any(c.islower() for c in run)
    if has_digit and has_upper and has_lower:
        return True
    # Long lowercase/uppercase base32-like tokens with digits but no word separators.
    return len(run) >= 32 and has_digit and (has_upper or has_lower) and "-" not in run


def _sub_b64(m: re.Match[str]) -> str:
    return ":token" if _is_b64_token(m.group(0).rstrip("=")) else m.group(0)


def scrub_text(text: str) -> str:
    """Replace secret-shaped substrings (email, JWT, card, hex/base64 tokens) with placeholders."""
    if len(text) < 6:
        return text
    out = _JWT.sub(":jwt", text)
    out = _EMAIL.sub(":email", out)
    out = _CARD.sub(":card", out)
    out = _HEX.sub(":token", out)
    out = _B64.sub(_sub_b64, out)
    return out


def _shape(segment: str) -> str | None:
    """Placeholder when a whole (decoded) value has a secret shape, else None."""
    if _JWT.fullmatch(segment):
        return ":jwt"
    if _EMAIL.fullmatch(segment):
        return ":email"
    if _CARD.fullmatch(segment):
        return ":card"
    if _HEX.fullmatch(segment):
        return ":token"
    m = _B64.fullmatch(segment)
    if m and _is_b64_token(segment.rstrip("=")):
        return ":token"
    return None


def _clean(text: str) -> str:
    """Make text valid Unicode: lone surrogates from undecodable bytes become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _decode(text: str, plus: bool = False) -> str:
    if "%" not in text and not (plus and "+" in text):
        return text
    return (unquote_plus if plus else unquote)(text, errors="replace")


# Query parameters whose value is read as a host (so ``?ip=3405803859`` is an address too).
_ADDRESS_PARAM = re.compile(r"(?i)(?:^|[^a-z])(?:ip|ipv4|ipv6|addr|address|host|hostname|client|"
                            r"remote|peer|forwarded|xff|src|dst|source|origin|server|gw|gateway)"
                            r"(?:$|[^a-z])|ip$|addr$|^ip|^addr")


class UrlScrubber:
    """Scrubs request targets and referrers; ``extra_params`` adds secret parameter names.

    ``addresses``: masks every IP address written in the path, the query (names and values) and
    the referrer's host and path (``masking.textaddr``), after percent-decoding."""

    def __init__(self, extra_params: Iterable[str] = (),
                 addresses: TextMasker | None = None) -> None:
        self._addr = addresses
        extra = {p.strip().lower() for p in extra_params if p.strip()}
        self._names = DEFAULT_SECRET_PARAMS | extra
        self._parts = _SECRET_PARTS | {p for p in extra if _SPLIT_NAME.sub("", p) == p}
        self.target = lru_cache(maxsize=8192)(self._target)  # type: ignore[method-assign]
        self.referrer = lru_cache(maxsize=8192)(self._referrer)  # type: ignore[method-assign]

    # ------------------------------------------------------------------ names

    def is_secret_name(self, name: str) -> bool:
        """Whether a query parameter name (decoded) names a secret."""
        low = name.strip().lower()
        if low in self._names:
            return True
        words = [w for w in _SPLIT_NAME.split(name.strip()) if w]
        lowered = [w.lower() for w in words]
        if any(w in self._parts for w in lowered):
            return True
        joined = "".join(lowered)
        return joined in self._names

    # ------------------------------------------------------------------ public

    def target(self, raw: str | None) -> tuple[str | None, str | None]:
        """Request target → (path, query), both scrubbed; query ``None`` when absent."""
        return self._target(raw)

    def referrer(self, raw: str | None) -> str | None:
        """Referrer → ``scheme://host[:port]/path`` (no userinfo, query or fragment)."""
        return self._referrer(raw)

    def query(self, raw: str | None) -> str | None:
        """Scrub a query string (without the leading '?')."""
        if raw is None:
            return None
        return self._query(_clean(raw))

    def path(self, raw: str) -> str:
        """Scrub a path: secret-shaped segments and tokens after /reset/ etc. are replaced."""
        return self._path(_clean(raw))

    # ------------------------------------------------------------------ implementation

    def _target(self, raw: str | None) -> tuple[str | None, str | None]:
        if raw is None:
            return None, None
        text = _clean(raw.strip())
        if not text or text == "-":
            return None, None
        hash_at = text.find("#")
        if hash_at >= 0:
            text = text[:hash_at]
        scheme_at = text.find("://")
        if scheme_at > 0 and text[:scheme_at].isalpha() and "/" not in text[:scheme_at]:
            rest = text[scheme_at + 3 :]
            cut = len(rest)
            for ch in "/?":
                at = rest.find(ch)
                if 0 <= at < cut:
                    cut = at
            text = rest[cut:] or "/"
            if text.startswith("?"):
                text = "/" + text
        path, sep, query = text.partition("?")
        return self._path(path), (self._query(query) if sep else None)

    def _referrer(self, raw: str | None) -> str | None:
        if raw is None:
            return None
        text = _clean(raw.strip())
        if not text or text == "-" or text == '"-"':
            return None
        for ch in "#?":
            at = text.find(ch)
            if at >= 0:
                text = text[:at]
        scheme_at = text.find("://")
        if scheme_at > 0 and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", text[:scheme_at]):
            scheme = text[:scheme_at].lower()
            rest = text[scheme_at + 3 :]
            slash = rest.find("/")
            authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
            host = self._host(authority.rpartition("@")[2].lower())
            return f"{scheme}://{host}{self._path(path) if path else '/'}"
        # No scheme (e.g. "www.example.com/x"): keep host and path, drop userinfo.
        slash = text.find("/")
        authority, path = (text, "") if slash < 0 else (text[:slash], text[slash:])
        host = self._host(authority.rpartition("@")[2].lower())
        return host + (self._path(path) if path else "")

    def _host(self, host: str) -> str:
        if self._addr is None:
            return host
        return self._addr.host(_decode(host) if "%" in host else host)

    def _path(self, path: str) -> str:
        if not path:
            return path
        segments = path.split("/")
        out: list[str] = []
        previous = ""
        for segment in segments:
            if not segment:
                out.append(segment)
                previous = ""
                continue
            original = _decode(segment)
            decoded = original if self._addr is None else self._addr.text(original)
            shape = _shape(decoded)
            if shape is not None:
                out.append(shape)
            elif previous in _TOKEN_PREFIX_SEGMENTS and _token_like(decoded):
                out.append(":token")
            else:
                scrubbed = scrub_text(decoded)
                if ";" in scrubbed or "=" in scrubbed:
                    scrubbed = self._inner(scrubbed)
                out.append(segment if scrubbed == original else _encode_segment(scrubbed))
            previous = decoded.lower()
        return "/".join(out)

    def _query(self, query: str) -> str:
        if not query:
            return query
        pairs = query.split("&")
        out: list[str] = []
        for pair in pairs:
            if not pair:
                out.append(pair)
                continue
            key, eq, value = pair.partition("=")
            dkey = _decode(key, plus=True)
            if self._addr is not None:
                masked_key = self._addr.text(dkey)
                if masked_key != dkey:
                    key, dkey = quote(masked_key, safe=":/@[],"), masked_key
                    pair = key + eq + value
            if self.is_secret_name(dkey):
                out.append(f"{key}={REDACTED}" if eq else REDACTED)
                continue
            if _shape(dkey) is not None or scrub_text(dkey) != dkey:
                # A secret used as a bare key (e.g. "?abc123...token" or "?a@b.org").
                out.append(REDACTED + (f"={REDACTED}" if eq else ""))
                continue
            if not eq:
                out.append(pair)
                continue
            original = _decode(value, plus=True)
            dvalue = original
            if self._addr is not None:
                dvalue = (self._addr.host(dvalue) if _ADDRESS_PARAM.search(dkey)
                          else self._addr.text(dvalue))
            shape = _shape(dvalue)
            if shape is not None:
                out.append(f"{key}=[{shape[1:]}]")
                continue
            scrubbed = scrub_text(dvalue)
            if "=" in scrubbed:
                scrubbed = self._inner(scrubbed)
            out.append(pair if scrubbed == original else f"{key}={quote(scrubbed, safe=':/@[],')}")
        return "&".join(out)

    def _inner(self, text: str) -> str:
        """Secret parameters nested inside a decoded value (e.g. a URL in ``?next=``)."""

        def repl(m: re.Match[str]) -> str:
            if self.is_secret_name(m.group(1)):
                return f"{m.group(1)}={REDACTED}"
            return m.group(0)

        return _INNER_PARAM.sub(repl, text)


def _token_like(segment: str) -> bool:
    """A path segment after /reset/ etc. that is not a plain word: digits or >= 8 characters."""
    if "." in segment and segment.rsplit(".", 1)[1].isalpha() and len(segment) < 24:
        return False
    return any(c.isdigit() for c in segment) or len(segment) >= 8


def _encode_segment(text: str) -> str:
    return quote(text, safe=":@!$&'()*+,;=-._~[]")


# --------------------------------------------------------------------------- templates

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NUMERIC = re.compile(r"[0-9]+(?:[.,:_\-][0-9]+)*")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9:.]+Z?)?")
_HEXID = re.compile(r"(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{10,}")
_MIXED = re.compile(r"[A-Za-z0-9_\-]{16,}")


@lru_cache(maxsize=16384)
def path_template(path: str | None) -> str | None:
    """``/users/123/orders/9`` → ``/users/:id/orders/:id``; uuids, hex ids and tokens replaced."""
    if path is None:
        return None
    out: list[str] = []
    for segment in path.split("/"):
        if not segment or segment.startswith(":"):
            out.append(segment)
        elif _NUMERIC.fullmatch(segment):
            out.append(":id")
        elif _DATE.fullmatch(segment):
            out.append(":date")
        elif _UUID.fullmatch(segment):
            out.append(":uuid")
        elif _HEXID.fullmatch(segment):
            out.append(":hex")
        elif _shape(segment) is not None:
            out.append(_shape(segment) or ":token")
        elif _MIXED.fullmatch(segment) and any(c.isdigit() for c in segment) and sum(
            c.isdigit() for c in segment
        ) * 4 >= len(segment):
            out.append(":token")
        else:
            out.append(segment)
    return "/".join(out)
