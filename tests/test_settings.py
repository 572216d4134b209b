"""Settings: types, defaults, environment, flags, exact errors, and every setting documented."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from collector.commands.settings_doc import doc_with_table
from collector.settings import (
    Secret,
    Settings,
    SettingsError,
    all_settings,
    load_settings,
    parse_duration,
    parse_size,
)
from tests.conftest import ROOT


def test_zero_config_defaults() -> None:
    s = load_settings(None, env={})
    assert s.server.listen == "127.0.0.1:8780"
    assert s.server.data_dir == Path("lethelog-data")
    assert s.store.backend == "sqlite"
    assert s.sessions.idle_timeout == 1800.0
    assert (s.masking.ipv4_keep_bits, s.masking.ipv6_keep_bits) == (24, 48)
    assert s.tokens == ()


@pytest.mark.parametrize(("text", "seconds"), [("45s", 45), ("30m", 1800), ("2h", 7200),
                                               ("7d", 604800), ("250ms", 0.25), (12, 12)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "n"), [("512KiB", 524288), ("10MiB", 10485760), ("1GiB", 2**30),
                                         ("100", 100), (64, 64)])
def test_sizes(text: str, n: int) -> None:
    assert parse_size(text) == n


def test_precedence_file_env_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sessions]\nidle_timeout = "10m"\n[server]\nlisten = "127.0.0.1:9000"\n')
    assert load_settings(cfg, env={}).sessions.idle_timeout == 600
    env = {"LETHELOG_SESSIONS_IDLE_TIMEOUT": "5s"}
    assert load_settings(cfg, env=env).sessions.idle_timeout == 5
    s = load_settings(cfg, env=env, overrides={"server.listen": "127.0.0.1:9001"})
    assert s.listen_port == 9001 and s.sessions.idle_timeout == 5


@pytest.mark.parametrize(("toml", "env", "message"), [
    ("", {"LETHELOG_SESSIONS_IDLE_TIMEOUT": "soon"},
     "sessions.idle_timeout (from LETHELOG_SESSIONS_IDLE_TIMEOUT): expected a duration like "
     "45s, 30m or 2h, got 'soon'"),
    ('[masking]\nipv4_keep_bits = 40\n', {}, "masking.ipv4_keep_bits: must be at most 32, got 40"),
    ('[ingest]\nmax_body_size = "lots"\n', {},
     "ingest.max_body_size: expected a size like 512KiB or 10MiB, got 'lots'"),
    ('[store]\nbackend = "oracle"\n', {},
     "store.backend: expected one of sqlite, redis, got 'oracle'"),
    ('[sessions]\nidle = "5s"\n', {}, "sessions.idle: unknown setting"),
    ('[nonsense]\n', {}, "nonsense: unknown section"),
    ('[server]\nlisten = "0.0.0.0:8780"\n', {}, "server.listen: refusing to bind 0.0.0.0"),
    ('[enrich]\ncity_db = "/nonexistent.mmdb"\n', {},
     "enrich.city_db: file '/nonexistent.mmdb' does not exist"),
    ('[[tokens]]\nname = "x"\nroles = ["root"]\nsha256 = "00"\n', {}, "tokens[x].roles:"),
    ('[[sites]]\nname = "a"\nhosts = ["a.example"]\n[[tokens]]\nname = "t"\nroles = ["sre"]\n'
     'sha256 = "' + "0" * 64 + '"\n', {},
     "tokens[t].sites: a token without sites holds every site, which is for the operator's "
     "own tokens only: list its sites or set operator = true"),
    ('[[sites]]\nname = "a"\nhosts = ["a.example"]\n[syslog]\nsites = ["zz"]\n', {},
     "syslog.sites: unknown site 'zz'"),
])
def test_bad_settings_name_the_setting(tmp_path: Path, toml: str, env: dict[str, str],
                                       message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, env=env)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_bad_setting_stops_startup_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "serve", "--data-dir", str(tmp_path / "d")],
        env={"LETHELOG_SESSIONS_IDLE_TIMEOUT": "forever", "PYTHONPATH": str(ROOT),
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["lethelog: bad setting: sessions.idle_timeout (from "
                     "LETHELOG_SESSIONS_IDLE_TIMEOUT): expected a duration like 45s, 30m or 2h, "
                     "got 'forever'"]
    assert not (tmp_path / "d").exists()


def test_secret_never_prints() -> None:
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s) and "hunter2" not in f"{s}"
    assert s.reveal() == "hunter2"


def test_every_setting_documented_in_readme_and_example() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert doc == doc_with_table(doc), (
        "docs/configuration.md settings table is stale: run "
        "`.venv/bin/python -m collector.commands.settings_doc`")
    example = (ROOT / "config" / "lethelog.example.toml").read_text(encoding="utf-8")
    parsed = tomllib.loads(example)
    load_settings(ROOT / "config" / "lethelog.example.toml", env={})  # the example is valid
    missing = []
    for section, f in all_settings():
        assert f.metadata.get("doc"), f"{section}.{f.name} has no doc"
        in_toml = f.name in parsed.get(section, {})
        commented = re.search(rf"^\[{section}\][^\[]*^#\s*{f.name}\s*=", example, re.M | re.S)
        if not (in_toml or commented):
            missing.append(f"{section}.{f.name}")
    assert missing == [], f"settings missing from config/lethelog.example.toml: {missing}"


def test_default_settings_object_is_complete() -> None:
    s = Settings()
    for section, f in all_settings():
        assert hasattr(getattr(s, section), f.name)
