#!/usr/bin/env bash
# Runs every test of the project. On a fresh Debian machine, as root, it first installs what the
# tests need (scripts/install-deps.sh: PostgreSQL, nftables, conntrack, Prometheus, Alertmanager,
# Chromium, ShellCheck, hadolint, kubernetes-validate; the pool matrix installs each library it
# runs).
# Lab tests create network namespaces: root is required.
set -euo pipefail
cd "$(dirname "$0")/.."
# The lab tests skip themselves on a machine without root or PostgreSQL (a laptop's plain
# `cargo test`); this command installs everything, so here a missing piece is a failure.
export CI="${CI:-true}"

echo "== dependencies"
bash scripts/install-deps.sh
# Leftovers of an interrupted earlier run must not break this one.
bash lab/lab.sh down-all >/dev/null 2>&1 || true

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

echo "== layers: no import circles, between top-level modules or between files"
# ../shared is the team's shared folder, checked out beside the clone (as it is for the quaint
# dependency); each call exits 1 and names the arrows of any circle.
python3 ../shared/tools/modcycles.py --modules src
python3 ../shared/tools/modcycles.py src

echo "== unit, integration and lab tests"
cargo build --all-targets --locked
# The pool matrix's harnesses (pip, npm, cargo builds, Debian's Go, Java, Ruby and PgBouncer
# packages) install meanwhile, at low priority: the lab tests mostly wait on idle timers.
mkdir -p target
install_log=target/pool-harness-install.log
nice -n 10 python3 lab/pools/matrix.py --install-only >"$install_log" 2>&1 &
install_pid=$!
# More threads than cores keep the wall time down, for the same reason.
cargo test --all-targets --locked --no-fail-fast -- --test-threads=12

echo "== pool matrix: every printed recipe against the real library behind each kind of box"
if ! wait "$install_pid"; then
  cat "$install_log"
  echo "pool matrix: a harness failed to install" >&2
  exit 1
fi
cat "$install_log"
python3 lab/pools/matrix.py --skip-install

if [ -f scripts/check-observability.sh ]; then
  echo "== dashboards, alert rules, Dockerfile, Kubernetes manifests, shell scripts"
  bash scripts/check-observability.sh
fi
