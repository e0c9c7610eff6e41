#!/usr/bin/env bash
# Installs what the node-postgres harness needs: Node.js (Debian) and the pinned `pg` from npm
# (versions locked by package-lock.json). Idempotent; run as root on Debian.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
cd "$here"
# npm ci installs exactly the lock file's versions (pg 8.23.1, pg-pool 3.14.0).
if [ ! -f node_modules/pg/package.json ] || ! grep -q '"version": "8.23.1"' node_modules/pg/package.json; then
  npm ci --no-audit --no-fund --loglevel=error
fi
