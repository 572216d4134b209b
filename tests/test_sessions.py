"""Session bookkeeping and key rotation, without I/O beyond a temp key file."""

from __future__ import annotations

from pathlib import Path

import orjson

from collector.keys import KeyRing
from collector.sessions import SessionTable


def test_same_key_joins_until_gap_exceeds_timeout() -> None:
    t = SessionTable(idle_timeout=60)
    a = t.touch("k", 1000, 5000, "s", "site").session
    b = t.touch("k", 1050, 5000, "s", "site").session
    assert a is b and b.records == 2
    c = t.touch("k", 1111, 5000, "s", "site")
    assert c.ended is a and c.session is not a and c.session.id != a.id


def test_log_clock_ends_idle_sessions_per_source() -> None:
    t = SessionTable(idle_timeout=60)
    old = t.touch("old", 1000, 5000, "edge-1", "site").session
    other_source = t.touch("x", 1000, 5000, "edge-2", "site").session
    t.touch("new", 1100, 5000, "edge-1", "site")
    ended = t.expire(now_wall=5001)
    assert ended == [old]
    assert other_source.sid in t.by_sid  # edge-2's clock has not moved


def test_wall_clock_ends_sessions_when_traffic_stops() -> None:
    t = SessionTable(idle_timeout=60)
    s = t.touch("k", 1000, 5000, "s", "site").session
    assert t.expire(now_wall=5059) == []
    assert t.expire(now_wall=5061) == [s]
    assert len(t) == 0


def test_restart_restores_and_expires() -> None:
    t = SessionTable(idle_timeout=60)
    s = t.touch("k", 1000, 5000, "s", "site").session
    fresh = SessionTable(idle_timeout=60)
    fresh.restore(s)
    assert fresh.touch("k", 1010, 5005, "s", "site").session.sid == s.sid
    assert fresh.next_sid == s.sid + 1
    assert [x.sid for x in fresh.expire(5100)] == [s.sid]


def test_many_sessions_expire_in_order() -> None:
    t = SessionTable(idle_timeout=10)
    for i in range(1000):
        t.touch(f"k{i}", float(i), 1000.0, "s", "site")  # arrived at 1000: none in the future
    ended = t.expire(now_wall=1000.0)  # log clock is 999: sessions with last < 989 ended
    assert len(ended) == 989
    assert len(t) == 11


def test_keyring_rotates_and_deletes_old_secrets(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring = KeyRing(path, rotation=86400, retention=172800)
    day0 = ring.current(now=0)
    assert ring.current(now=100) is day0
    day1 = ring.current(now=86400 + 1)
    assert day1.secret != day0.secret
    assert path.stat().st_mode & 0o777 == 0o600
    assert "secret=<32 bytes>" in repr(day1) and day1.secret.hex() not in repr(day1)
    # after retention the first secret is gone from memory and from the file
    ring.current(now=4 * 86400)
    assert day0.secret.hex() not in path.read_text()
    periods = [k["period"] for k in orjson.loads(path.read_bytes())["keys"]]
    assert 0 not in periods
    assert KeyRing(path, 86400, 172800).current(now=4 * 86400).secret == ring.current(
        now=4 * 86400).secret
