#!/usr/bin/env bash
# Install everything the tests need and run them: Debian packages, a virtualenv, lint, types, tests.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg_bin in nginx:/usr/sbin/nginx redis-server:/usr/bin/redis-server \
               chromium:/usr/bin/chromium goaccess:/usr/bin/goaccess \
               rsyslog:/usr/sbin/rsyslogd apache2:/usr/sbin/apache2 \
               systemd:/usr/bin/systemd-analyze openssl:/usr/bin/openssl \
               rsyslog-gnutls:/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so \
               curl:/usr/bin/curl; do
  [ -e "${pkg_bin#*:}" ] || need+=("${pkg_bin%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "tests/run.sh: installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "tests/run.sh: missing ${need[*]} (run as root to install; tests that need them skip)" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[test]'

echo "== ruff";   .venv/bin/ruff check collector masking tests bench
echo "== mypy";   .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"
