#!/usr/bin/env bash
# Install everything ocsd and its tests need on Debian 12, idempotently:
# Debian packages (Redis/PostgreSQL only when none answers), a venv with the
# pinned Python packages, and running services.  Used by setup-and-run and by
# the test command.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

have python3 || need_pkgs+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
redis_up || have redis-server || need_pkgs+=(redis-server)
pg_up || have pg_ctlcluster || need_pkgs+=(postgresql)
have pdftotext || need_pkgs+=(poppler-utils)   # tests read the invoice PDFs back
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_pkgs+=(fonts-dejavu-core)   # invoice PDFs
have chromium || need_pkgs+=(chromium)   # the web pages are tested in headless Chromium (Playwright drives it)
if [ "${OCS_NO_COMPILE:-0}" != "1" ]; then   # mypyc compiles the hot modules (scripts/compile.py)
  have gcc || need_pkgs+=(gcc)
  py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python   # the headers of the Python the venv runs
  $py -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(sysconfig.get_paths()["include"] + "/Python.h"))' \
    2>/dev/null || need_pkgs+=(python3-dev)
fi
if [ "${OCS_WITH_INTEROP:-0}" = "1" ]; then
  have radclient || need_pkgs+=(freeradius-utils)
  have erlc || need_pkgs+=(erlang-base erlang-dev)
  [ -d /usr/lib/erlang/lib ] && ls /usr/lib/erlang/lib | grep -q '^diameter-' || need_pkgs+=(erlang-diameter)
  # diameterc-generated dictionaries include diameter/include/diameter_gen.hrl (erlang-dev)
  compgen -G '/usr/lib/erlang/lib/diameter-*/include/diameter_gen.hrl' >/dev/null || need_pkgs+=(erlang-dev)
  have tshark || need_pkgs+=(tshark)
  have radiusd || have freeradius || need_pkgs+=(freeradius)
  have systemd-analyze || need_pkgs+=(systemd)   # tests verify the unit files
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! redis_up; then
  echo "bootstrap: starting redis-server"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! pg_up; then
  echo "bootstrap: starting PostgreSQL"
  ver=$(ls /etc/postgresql | sort -n | tail -1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || $SUDO pg_ctlcluster "$ver" main start
fi
for _ in $(seq 1 30); do redis_up && pg_up && break; sleep 1; done

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
stamp=.venv/.ocs-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install -q -e '.[dev]' 2>&1 | grep -v -E '^(WARNING|  |$)' || true
  .venv/bin/python -c 'import ocs, pyrad, diameter, redis, asyncpg, aiosmtplib, httpx, aiosmtpd, reportlab, openpyxl' && touch "$stamp"
fi
# the hot modules as C extensions (a minute or two, again only when one of their sources changed);
# skipped with one line without a compiler or with OCS_NO_COMPILE=1, and then ocsd runs as pure Python
.venv/bin/python scripts/compile.py
