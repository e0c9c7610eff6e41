#!/usr/bin/env bash
# Installs the Python pool harness's libraries, pinned, into a virtualenv beside this script
# (lab/pools/python/.venv), and asyncpg 0.31 into a second one (.venv-asyncpg031: up to 0.31
# asyncpg closes idle connections at min_size too, so the matrix runs both). Idempotent;
# ordinary registries only (Debian apt, PyPI).
# psycopg is the `psycopg[binary]` wheel: it ships its own libpq, so the libpq tested by the
# `libpq` harness is the one pip users get, not Debian's libpq5.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=$here/.venv

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check \
  'SQLAlchemy==2.0.58' 'psycopg[binary]==3.3.9' 'psycopg-pool==3.3.3' 'asyncpg==0.32.0' \
  'Django==5.2.19'
old=$here/.venv-asyncpg031
[ -x "$old/bin/python" ] || python3 -m venv "$old"
"$old/bin/pip" install -q --disable-pip-version-check 'asyncpg==0.31.0'
