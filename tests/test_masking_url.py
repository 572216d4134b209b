"""Secrets in URLs and referrers never survive; templates, sessions, languages, consent."""

from __future__ import annotations

import re

import pytest

from masking import UrlScrubber, consent_flags, parse_accept_language, path_template, session_key

U = UrlScrubber(extra_params=["customer_ref"])

SECRETS = {
    "email": "jane.doe+news@example.org",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
           ".SflKxwRJSMeKKF2QT4fwpM",
    "hex": "9f86d081884c7d659a2feaa0c55ad015",
    "base64": "dGhpcyBpcyBhIHNlY3JldCB0b2tlbg2Xy9Qz",
    "card": "4111 1111 1111 1111",
    "card_dashes": "5500-0000-0000-0004",
    "password": "hunter2",
    "ref": "ACME-77",
}
NAMES = ["token", "access_token", "auth", "key", "api_key", "apikey", "password", "passwd", "pwd",
         "secret", "session", "sessionid", "sid", "PHPSESSID", "jsessionid", "code", "signature",
         "sig", "email", "mail", "otp", "x_auth_token", "X-Api-Key", "refreshToken",
         "customer_ref"]


def fragments(secret: str) -> list[str]:
    from urllib.parse import quote, quote_plus

    return [secret, quote(secret, safe=""), quote_plus(secret), secret.replace(" ", "")]


@pytest.mark.parametrize("name", NAMES)
def test_secret_parameter_names(name: str) -> None:
    path, query = U.target(f"/cb?{name}=hunter2&page=3")
    assert query == f"{name}=[redacted]&page=3"
    assert path == "/cb"


@pytest.mark.parametrize("kind", sorted(set(SECRETS) - {"password", "ref"}))
def test_secret_shapes_everywhere(kind: str) -> None:
    secret = SECRETS[kind]
    from urllib.parse import quote

    enc = quote(secret, safe="")
    targets = [
        f"/search?q={enc}&page=2",
        f"/u/{enc}/profile",
        f"/reset/{enc}",
        f"http://user:pa55@shop.example/x/{enc}?next=%2Fhome%3Fq%3D{quote(enc, safe='')}#frag",
        f"/a?redirect=https%3A%2F%2Fx.example%2F%3Fv%3D{quote(enc, safe='')}",
    ]
    for target in targets:
        path, query = U.target(target)
        stored = f"{path}?{query}"
        for frag in fragments(secret):
            assert frag not in stored, (target, stored)
        assert "pa55" not in stored and "user:" not in stored
    for referrer in (f"https://mail.example/inbox/{enc}?token={enc}#x",
                     f"https://bob:{enc}@example.com/?q={enc}"):
        out = U.referrer(referrer)
        assert out is not None
        for frag in fragments(secret):
            assert frag not in out, (referrer, out)


def test_named_secrets_in_referrers_and_nested_urls() -> None:
    assert U.referrer("https://bob:hunter2@Example.com:8443/a/b?password=hunter2#top") == \
        "https://example.com:8443/a/b"
    _, query = U.target("/login?next=%2Fdash%3Fapi_key%3Dhunter2%26x%3D1")
    assert query is not None and "hunter2" not in query
    path, query = U.target("/reset/hunter2x9")
    assert path == "/reset/:token" and query is None


def test_path_placeholders() -> None:
    path, _ = U.target("/u/jane.doe%40example.org/settings")
    assert path == "/u/:email/settings"
    assert U.target(f"/t/{SECRETS['jwt']}")[0] == "/t/:jwt"
    assert U.target("/pay/4111111111111111")[0] == "/pay/:card"
    assert U.target(f"/dl/{SECRETS['hex']}")[0] == "/dl/:token"


def test_harmless_urls_unchanged() -> None:
    for target in ("/", "/index.html", "/blog/2024/05/hello-world?page=2&sort=asc",
                   "/presentations/logstash-monitorama-2013/images/kibana-search.png",
                   "/products/42", "/search?q=privacy+first"):
        path, query = U.target(target)
        assert (path if query is None else f"{path}?{query}") == target
    assert U.target(None) == (None, None)
    assert U.target("-") == (None, None)
    assert U.target("https://example.com") == ("/", None)
    assert U.referrer("-") is None and U.referrer("") is None and U.referrer(None) is None
    assert U.referrer("http://localhost:8080/") == "http://localhost:8080/"


def test_invalid_utf8_and_percent_encoding() -> None:
    path, _ = U.target("/\udcac\udcb0caf\udce9?x=%ff%fe")
    assert path is not None
    path.encode("utf-8")  # valid text out
    _, query = U.target("/?e=a%40b.co")
    assert query == "e=[email]"


def test_path_template() -> None:
    assert path_template("/users/123/orders/9") == "/users/:id/orders/:id"
    assert path_template("/a/550e8400-e29b-41d4-a716-446655440000/b") == "/a/:uuid/b"
    assert path_template("/commit/9f86d081884c7d659a2f") == "/commit/:hex"
    assert path_template("/reset/:token") == "/reset/:token"
    assert path_template("/blog/hello-world") == "/blog/hello-world"
    assert path_template(None) is None


def test_session_key() -> None:
    k = session_key(b"secret", "site", "1.2.3.4", "UA")
    assert re.fullmatch(r"[0-9a-f]{32}", k), k  # 32 hex digits: nothing of the inputs in clear
    assert k == session_key(b"secret", "site", "1.2.3.4", "UA")
    assert k != session_key(b"other", "site", "1.2.3.4", "UA")
    assert k != session_key(b"secret", "site2", "1.2.3.4", "UA")
    assert session_key(b"s", "ab", "c", None) != session_key(b"s", "a", "bc", None)
    assert session_key(b"s", "x", "1.2.3.4", "UA", hint="abc") == \
        session_key(b"s", "x", "9.9.9.9", "other", hint="abc")
    # without a hint, the full address and the User-Agent both make the key
    assert k != session_key(b"secret", "site", "1.2.3.5", "UA")
    assert k != session_key(b"secret", "site", "1.2.3.4", "UA2")


def test_accept_language() -> None:
    assert parse_accept_language("de-DE,de;q=0.9,en;q=0.8") == ("de", ["de-DE", "de", "en"])
    assert parse_accept_language("en;q=0.5, fr-ca, *;q=0.1") == ("fr", ["fr-CA", "en"])
    assert parse_accept_language("zh-hant-tw") == ("zh", ["zh-Hant-TW"])
    for bad in (None, "", ";;;", "q=1", "???", "en;q=abc"):
        assert parse_accept_language(bad) == (None, [])


def test_consent_flags() -> None:
    assert consent_flags("1", None) == (True, False)
    assert consent_flags(None, "1") == (False, True)
    assert consent_flags(True, False) == (True, False)
    assert consent_flags("0", "garbage") == (False, False)
