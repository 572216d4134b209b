"""Every fixture in ../shared/corpus/logs parses; field-by-field checks per format."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.parse import FORMATS, ParseError, parse_lines
from tests.conftest import CORPUS, corpus_file, data_file

Expected = tuple[int, str | None, str, str | None, str | None, int | None, int | None,
                 str | None, str | None]
# (line, client as logged, UTC time, method, target, status, bytes, referrer, user agent prefix)

MAC_CHROME = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_0) AppleWebKit/537.36"
MATOMO_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/535.11"

CASES: dict[str, list[Expected]] = {
    # Apache common (macOS default)
    "beats_apache_access_test_darwin-2.4.23.log": [
        (1, "::1", "2016-12-26T14:16:28", "GET", "/", 200, 45, None, None),
        (3, "::1", "2016-12-26T14:16:48", None, None, 408, None, None, None),
        (4, "77.179.66.156", "2016-12-26T16:23:35", "GET", "/", 200, 45, None, None),
        (6, "77.179.66.156", "2016-12-26T16:23:45", "GET", "/hmm", 404, 201, None, None),
    ],
    # Apache common + combined mixed
    "beats_apache_access_test_test.log": [
        (2, "192.168.33.1", "2016-12-26T16:22:13", "GET", "/hello", 404, 499, None,
         "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.12; rv:50.0)"),
        (5, "monitoring-server", "2017-05-29T19:02:48", "GET", "/status", 200, 612, None,
         "Mozilla/5.0 (Windows NT 6.1; rv:15.0)"),
        (6, "127.0.0.1", "2019-02-02T04:38:45", None, None, 408, 152, None, None),
        (7, "123.123.123.123", "2019-07-04T07:20:46", "GET", "/", 200, 32953, None,
         "Mozilla/5.0 (X11; Linux x86_64)"),
    ],
    # Apache ssl_request_log
    "beats_apache_access_test_ssl-request.log": [
        (1, "172.30.0.119", "2018-08-10T07:45:56", "GET", "/nagiosxi/ajaxhelper.php?cmd=", None,
         1375, None, None),
        (2, "81.2.69.143", "2019-10-16T09:53:47", "GET", "/appl/ajaxhelper.php?cmd=", None, None,
         None, None),
    ],
    # vhost_combined
    "beats_apache_access_test_test-vhost.log": [
        (1, "123.123.123.123", "2019-07-04T07:20:46", "GET", "/", 200, 32953, None,
         "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/75.0.  3770"),
    ],
    # nginx combined
    "beats_nginx_access_test_access.log": [
        (1, "77.179.66.156", "2016-10-25T12:49:33", "GET", "/", 200, 612, None, MAC_CHROME),
        (2, "77.179.66.156", "2016-10-25T12:49:34", "GET", "/favicon.ico", 404, 571,
         "http://localhost:8080/", MAC_CHROME),
        (4, "77.179.66.156", "2016-12-07T09:34:43", "GET", "/", 200, 612, None, MAC_CHROME),
    ],
    # nginx with forwarded-for chains as the client field
    "beats_nginx_access_test_test.log": [
        (1, "10.0.0.2, 10.0.0.1, 127.0.0.1", "2016-12-07T10:05:07", "GET", "/ocelot", 200, 571,
         None, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.12; rv:49.0)"),
        (3, "10.0.0.2, 10.0.0.1, 85.181.35.98", "2016-12-07T10:05:07", "GET", "/ocelot", 200, 571,
         None, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.12; rv:49.0)"),
        (5, "10.2.1.185", "2016-01-22T13:18:29", "GET", "/assets/xxxx?q=100", 200, 25507, None,
         "Amazon CloudFront"),
        (6, "10.2.2.121", "2016-12-30T06:47:09", "GET", "/test.html", 404, 8571, None,
         "Mozilla/5.0 (compatible; Facebot 1.0;"),
        (7, "127.0.0.1", "2018-04-12T07:48:40", None, None, 400, 0, None, None),
    ],
    "beats_nginx_access_test_test-with-host.log": [
        (1, "10.0.0.2, 10.0.0.1, 127.0.0.1", "2016-12-07T10:05:07", "GET", "/ocelot", 200, 571,
         None, "Mozilla/5.0 (Macintosh;"),
        (4, "81.2.69.143", "2016-12-07T10:05:07", "GET", "/ocelot", 200, 571, None,
         "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_0)"),
        (8, "unix:", "2019-02-26T14:39:42", None, None, 400, 173, None, None),
        (9, "localhost", "2017-05-29T19:02:48", "GET", "/test2", 200, 612, None, "Mozilla/5.0"),
    ],
    # Kubernetes ingress-nginx
    "beats_nginx_ingress_controller_test_test.log": [
        (1, "192.168.64.1", "2020-02-07T11:48:51", "POST", "/products", 200, 59, None,
         "curl/7.54.0"),
        (3, "192.168.64.1", "2020-02-07T11:49:30", "DELETE", "/products/42", 200, 59, None,
         "curl/7.54.0"),
        (5, "192.168.64.1", "2020-02-07T11:49:50", "PATCHp", "/products/42", 400, 163, None, None),
        (7, "192.168.64.1", "2020-02-07T11:55:05", "GET", "/products/42", 200, 59, None,
         "Wget/1.20.3 (darwin18.6.0)"),
    ],
    "lnav_logfile_access_log.0": [
        (1, "192.168.202.254", "2009-07-20T22:59:26", "GET", "/vmw/cgi/tramp", 200, 134, None,
         "gPXE/0.9.7"),
        (2, "192.168.202.254", "2009-07-20T22:59:29", "GET", "/vmw/vSphere/default/vmkboot.gz",
         404, 46210, None, "gPXE/0.9.7"),
        (3, "192.168.202.254", "2009-07-20T22:59:29", "GET", "/vmw/vSphere/default/vmkernel.gz",
         200, 78929, None, "gPXE/0.9.7"),
    ],
    # ---- corpus only (not redistributable here: Apache-2.0 but large / GPL / ELv2)
    "elastic-examples_apache_logs": [
        (1, "83.149.9.216", "2015-05-17T10:05:03", "GET",
         "/presentations/logstash-monitorama-2013/images/kibana-search.png", 200, 203023,
         "http://semicomplete.com/presentations/logstash-monitorama-2013/",
         "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1)"),
        (8896, "157.55.33.15", "2015-05-20T12:05:34", "GET", "/robots.txt", 200, None, None,
         "Mozilla/5.0 (compatible; bingbot/2.0;"),
        (8898, "46.118.127.106", "2015-05-20T12:05:48", "GET", "/files/fastest_sites/", 200, 1436,
         None, "portscout/0.8.1"),
    ],
    "integrations_nginx_access_test-access.log": [
        (1, "67.43.156.13", "2016-10-25T12:49:33", "GET", "/", 200, 612, None, MAC_CHROME),
        (2, "67.43.156.13", "2016-10-25T12:49:34", "GET", "/favicon.ico", 404, 571,
         "http://localhost:8080/", MAC_CHROME),
        (3, "67.43.156.13", "2016-10-25T12:50:44", "GET", "/adsasd", 404, 571, None, MAC_CHROME),
    ],
    "matomo-log-analytics_common.log": [
        (1, "1.2.3.4", "2012-02-10T21:42:07", "GET", "/", 301, 368, None, None),
    ],
    "matomo-log-analytics_common_vhost.log": [
        (1, "1.2.3.4", "2012-02-10T21:42:07", "GET", "/", 301, 368, None, None),
    ],
    "matomo-log-analytics_common_complete.log": [
        (1, "1.2.3.4", "2012-02-10T21:42:07", "GET", "/", 301, 368, None, MATOMO_UA),
    ],
    "matomo-log-analytics_ncsa_extended.log": [
        (1, "1.2.3.4", "2012-02-10T21:42:07", "GET", "/", 301, 368, None, MATOMO_UA),
    ],
    "matomo-log-analytics_static_ignores.log": [
        (1, "1.2.3.4", "2012-02-10T21:41:07", "GET", "/", 200, 368, None, MATOMO_UA),
        (2, "2.2.3.4", "2012-02-10T21:42:07", "GET", "/robots.txt", 200, 368, None, MATOMO_UA),
        (4, "4.2.3.4", "2012-02-10T21:44:07", "GET", "/font.woff2", 200, 368, None, MATOMO_UA),
    ],
    "matomo-log-analytics_ovh.log": [
        (1, "1.2.3.4", "2012-02-10T21:42:07", "GET", "/", 301, 368, None, MATOMO_UA),
    ],
    "matomo-log-analytics_gandi.log": [
        (1, "1.2.3.4", "2012-02-10T21:42:07", "GET", "/", 301, 368, None, MATOMO_UA),
        (2, "125.125.125.125", "2012-02-10T21:42:07", "GET", "/", 200, 1124,
         "https://www.example.com/", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.13; rv:90.0)"),
    ],
    "matomo-log-analytics_icecast2.log": [
        (1, "1.2.3.4", "2012-02-10T21:42:07", "GET", "/", 301, 368, None, MATOMO_UA),
    ],
    "matomo-log-analytics_logs_to_tests.log": [
        (1, "203.38.78.246", "2013-02-05T07:01:26", "GET", "/piwik.php?action_name=Clearcode", 200,
         192, "http://clearcode.cc/", "Mozilla/5.0 (Windows NT 6.1; WOW64)"),
        (2, "203.38.78.246", "2013-02-05T07:01:41", "GET", "/piwik.php?action_name=AdviserBrief",
         200, 192, "http://clearcode.cc/case/adviserbrief", "Mozilla/5.0 (Windows NT 6.1; WOW64)"),
        (6, "95.81.66.139", "2013-10-28T23:48:46", "HEAD", "/", 403, None, None, None),
    ],
    "matomo-log-analytics_nginx_json.log": [
        (1, "1.2.3.4", "2013-10-10T14:52:00", None, "/piwik.php?action_name=Clearcode", 200, 192,
         "http://clearcode.cc/", "Mozilla/5.0 (Windows NT 6.1; WOW64)"),
        (2, "1.2.3.4", "2013-10-10T14:52:00", None, "/piwik.php?action_name=AdviserBrief", 200,
         192, "http://clearcode.cc/", "Mozilla/5.0 (Windows NT 6.1; WOW64)"),
    ],
    "matomo-log-analytics_caddy_json.log": [
        (1, "1.2.3.4", "2023-12-23T23:17:54.815561", "GET", "/beta/", 200, 3609, None,
         "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0)"),
        (2, "1.2.3.4", "2023-12-23T23:17:54.901120", "GET", "/beta/assets/index-mMaLXldj.css", 200,
         34534, "https://example.com/beta/", "Mozilla/5.0 (Macintosh;"),
        (3, "1.2.3.4", "2023-12-23T23:17:55.141868", "GET", "/beta/assets/index-HIcRLzdf.js", 200,
         217912, "https://example.com/beta/", "Mozilla/5.0 (Macintosh;"),
    ],
    "matomo-log-analytics_traefik_json.log": [
        (1, "1.2.3.4", "2023-08-11T11:39:21.773360", "GET", "/my/app/auth?id=1234&user=dude", 200,
         15, "www.example.com", "Prometheus/2.40.5"),
    ],
    "matomo-log-analytics_haproxy.log": [
        (1, "4.3.2.1", "2018-09-25T06:05:27.584000", "POST", "/user/", 200, 7456, None, None),
    ],
    "matomo-log-analytics_elb.log": [
        (1, "1.2.3.4:2817", "2015-05-13T23:39:43.945958", "GET",
         "https://www.example.com:443/path/index.html", 200, 57, None, MATOMO_UA),
    ],
    "matomo-log-analytics_alb.log": [
        (1, "1.2.3.4:2817", "2020-01-01T00:55:04.127531", "GET",
         "https://www.example.com:443/path/index.html", 200, 24950, None, MATOMO_UA),
    ],
    "matomo-log-analytics_s3.log": [
        (1, "1.2.3.4", "2012-02-10T21:42:07", "GET", "/index", 200, 368, None, MATOMO_UA),
    ],
    "matomo-log-analytics_amazon_cloudfront_web.log": [
        (3, "192.0.2.10", "2014-05-23T01:13:11", "GET", "/view/my/file.html", 200, 182,
         "https://example.com/", "Mozilla/5.0 (Windows; U; Windows NT 6.1; de-DE) AppleWebKit"),
    ],
    "matomo-log-analytics_iis.log": [
        (5, "1.2.3.4", "2012-04-01T00:00:13", "GET", "/foo/bar?topCat1=divinity&submit=Search",
         200, 27028, None, "Mozilla/5.0 (X11; U; Linux i686; en-US; rv:1.9.2.7)"),
    ],
    "matomo-log-analytics_iis_custom.log": [
        (8, "70.95.0.0", "2012-08-15T17:00:00.363000", "GET", "/Products/theProduct", 200, None,
         "http://example.com/Search/SearchResults.pg?", "Mozilla/5.0 (Linux; Android 4.4.4;"),
        (9, "-", "2012-08-15T17:00:00.660000", "GET", "/Topic/hw43061", 301, None, None,
         "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_1)"),
        (10, "173.5.0.0", "2012-08-15T17:00:00.675000", "GET", "/hello/world/6,681965", 404, None,
         None, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_1)"),
    ],
    "matomo-log-analytics_netscaler.log": [
        (5, "172.20.1.0", "2012-08-16T11:55:13", "GET", "/Citrix/XenApp/Wan/auth/login.jsp", 302,
         355, None, "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 5.1;"),
    ],
    "matomo-log-analytics_incapsula_w3c.log": [
        (5, "123.123.123.123", "2017-06-28T07:26:35", "GET", "/page.php?variable=test", 200, None,
         None, "Mozilla/5.0 (Windows NT 6.1; Win64; x64)"),
        (6, "125.125.125.125", "2017-06-26T18:21:17", "GET", "/rss/news", None, None, None,
         "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.10; rv:45.0)"),
    ],
    "fail2ban_traefik-auth": [
        (4, "10.0.0.2", "2018-11-18T21:34:30", "GET", "/dashboard/", 401, 17, None,
         "Mozilla/5.0 (X11; Linux x86_64; rv:57.0)"),
        (16, "10.0.0.2", "2018-11-18T21:34:34", "TRACE", "/dashboard/", 401, 17, None, "Mozilla"),
        (18, "10.0.0.2", "2018-11-27T23:33:31", "GET", "/dashboard/", 200, 716, None, "Mozilla"),
    ],
    "fail2ban_apache-fakegooglebot": [
        (3, "66.249.66.1", "2015-01-31T14:29:44", "GET", "/", 200, 814, None,
         "Mozilla/5.0 (compatible; Googlebot/2.1;"),
        (5, "145.239.69.22", "2015-01-31T14:29:44", "GET", "/", 200, 814, None,
         "NOT A __GOOGLE_BOT__"),
        (7, "192.0.2.222", "2024-08-18T20:08:39", "GET", "/", 403, 332, None, "Mozilla/5.0"),
    ],
}

# Formats detected per file (one parser per dialect).
DETECTED = {
    "beats_apache_access_test_darwin-2.4.23.log": "common",
    "beats_apache_access_test_test.log": "combined",
    "beats_apache_access_test_ssl-request.log": "apache_ssl",
    "beats_nginx_access_test_access.log": "combined",
    "beats_nginx_ingress_controller_test_test.log": "ingress_nginx",
    "fail2ban_traefik-auth": "traefik_clf",
    "matomo-log-analytics_haproxy.log": "haproxy",
    "matomo-log-analytics_elb.log": "elb",
    "matomo-log-analytics_alb.log": "alb",
    "matomo-log-analytics_s3.log": "s3",
    "matomo-log-analytics_iis.log": "w3c",
    "matomo-log-analytics_caddy_json.log": "json",
}

# Malformed lines: (file, line) → reason fragment. Nothing else in the corpus is rejected
# except the nginx error-log lines mixed into fail2ban_nginx-botsearch (not access records).
REJECTED: dict[str, dict[int, str]] = {
    "elastic-examples_apache_logs": {8899: "unterminated quoted field"},
    "lnav_logfile_bad_access_log.0": {2: "missing ident and user fields"},
    "beats_nginx_ingress_controller_test_test.log": {27: "upstream_addr"},
    "matomo-log-analytics_elb.log": {3: "TCP listener"},
    "fail2ban_nginx-botsearch": {n: "does not match the combined format"
                                 for n in (26, 29, 32, 35, 40, 43)},
}

COPIED = {p.name for p in (Path(__file__).parent / "data" / "logs").glob("*")}


def fixture(name: str) -> Path:
    return data_file(f"logs/{name}") if name in COPIED else corpus_file(f"logs/{name}")


def parsed(path: Path, fmt: str | None = None) -> dict[int, dict[str, Any] | ParseError]:
    with path.open(encoding="utf-8", errors="surrogateescape") as fh:
        return dict(parse_lines(fh, fmt))


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "")


@pytest.mark.parametrize("name", sorted(CASES))
def test_fields(name: str) -> None:
    records = parsed(fixture(name))
    for line, client, when, method, target, status, size, referrer, agent in CASES[name]:
        rec = records[line]
        assert isinstance(rec, dict), f"{name}:{line} rejected: {rec}"
        assert rec["client"] == client, (name, line)
        assert iso(rec["time"]) == when, (name, line)
        assert rec["method"] == method, (name, line)
        if target is None:
            assert rec["target"] is None
        else:
            assert rec["target"] is not None and rec["target"].startswith(target), (name, line)
        assert rec["status"] == status, (name, line)
        assert rec["bytes"] == size, (name, line)
        if referrer is None:
            assert rec["referrer"] is None, (name, line)
        else:
            assert rec["referrer"] is not None and rec["referrer"].startswith(referrer)
        if agent is None:
            assert rec["user_agent"] is None, (name, line)
        else:
            ua = rec["user_agent"]
            assert ua is not None and ua.startswith(agent), (name, line)


def all_corpus_logs() -> list[str]:
    logs = CORPUS / "logs"
    names = {p.name for p in logs.glob("*")} if logs.is_dir() else set()
    return sorted(names | COPIED)


@pytest.mark.parametrize("name", all_corpus_logs())
def test_every_file_parses(name: str) -> None:
    records = parsed(fixture(name))
    assert records, f"{name}: nothing parsed"
    expected = REJECTED.get(name, {})
    rejected = {n: str(r) for n, r in records.items() if isinstance(r, ParseError)}
    assert set(rejected) == set(expected), rejected
    for n, fragment in expected.items():
        assert fragment in rejected[n], (n, rejected[n])
        assert not re.search(r"\d+\.\d+\.\d+\.\d+", rejected[n])  # reasons never quote addresses
    for rec in records.values():
        if isinstance(rec, dict):
            assert rec["client"], name
            assert isinstance(rec["time"], float)


@pytest.mark.parametrize(("name", "fmt"), sorted(DETECTED.items()))
def test_detected_format(name: str, fmt: str) -> None:
    from collector.parse import detect_format

    with fixture(name).open(encoding="utf-8", errors="surrogateescape") as fh:
        parser = detect_format([ln.rstrip("\n") for ln in fh][:20])
    assert parser is not None and parser.name == fmt


def test_explicit_format_and_mismatch_reason() -> None:
    path = fixture("lnav_logfile_bad_access_log.0")
    records = parsed(path, "combined")
    assert isinstance(records[1], dict)
    err = records[2]
    assert isinstance(err, ParseError)
    assert str(err).startswith("line does not match the combined format:")
    assert "192.168" not in str(err)
    # The same lines under the wrong explicit format are all rejected with the format's name.
    for rec in parsed(path, "haproxy").values():
        assert isinstance(rec, ParseError) and "haproxy format" in str(rec)


def test_bad_ipv6_in_ingress_upstream_is_rejected_without_the_address() -> None:
    records = parsed(fixture("beats_nginx_ingress_controller_test_test.log"))
    err = records[27]
    assert isinstance(err, ParseError)
    assert "cf40" not in str(err)
    ok = records[26]
    assert isinstance(ok, dict) and ok["client"] == "2a02:cf40::4e36"
    assert ok["status"] == 502 and ok["referrer"] == "https://localhost:8080/"


def test_big5_path_is_kept_without_crashing() -> None:
    rec = parsed(fixture("matomo-log-analytics_common_encoding_big5.log"))[1]
    assert isinstance(rec, dict) and rec["target"] is not None and rec["target"].startswith("/")
    assert rec["host"] == "www.example.com" and rec["status"] == 301


def test_caddy_consent_and_language_fields() -> None:
    rec = parsed(fixture("matomo-log-analytics_caddy_json.log"))[1]
    assert isinstance(rec, dict)
    assert rec["accept_language"] == "en-IE"
    assert rec["dnt"] is True and rec["gpc"] is True
    assert rec["protocol"] == "HTTP/2.0" and rec["host"] == "example.com"
    assert rec["request_time"] == pytest.approx(0.001335486)


def test_traefik_duration_is_nanoseconds() -> None:
    rec = parsed(fixture("matomo-log-analytics_traefik_json.log"))[1]
    assert isinstance(rec, dict) and rec["request_time"] == pytest.approx(10.002425284)


def test_all_formats_named() -> None:
    for name in ("combined", "common", "vhost_combined", "nginx_json", "caddy_json",
                 "traefik_json", "traefik_clf", "ingress_nginx", "haproxy", "elb", "alb", "s3",
                 "cloudfront", "w3c", "iis"):
        assert name in FORMATS


# --------------------------------------------------------------------------- fail2ban

FAIL2BAN = ["fail2ban_apache-badbots", "fail2ban_apache-fakegooglebot",
            "fail2ban_nginx-bad-request", "fail2ban_nginx-botsearch", "fail2ban_php-url-fopen",
            "fail2ban_traefik-auth"]


@pytest.mark.parametrize("name", FAIL2BAN)
def test_fail2ban_client_matches_failjson_host(name: str) -> None:
    from masking import IPMasker

    path = corpus_file(f"logs/{name}")
    lines = path.read_text(encoding="utf-8").splitlines()
    records = parsed(path)
    masker = IPMasker()
    checked = 0
    for index, line in enumerate(lines):
        m = re.match(r"#\s*failJSON:\s*(\{.*\})\s*$", line)
        if not m:
            continue
        expected = json.loads(m.group(1)).get("host")
        target = index + 2  # the next line, 1-based
        if not expected or target > len(lines) or not lines[target - 1].strip():
            continue
        rec = records[target]
        if isinstance(rec, ParseError):
            # nginx error-log lines in an access batch: parse them with their own format.
            rec = dict(parse_lines([lines[target - 1]], "nginx_error"))[1]
        assert isinstance(rec, dict), (name, target, rec)
        client = masker.client(rec["client"], rec.get("forwarded_for"))
        assert client.ip == expected, (name, target)
        checked += 1
    assert checked >= 1
