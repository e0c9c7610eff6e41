#!/usr/bin/env bash
# Builds the Rust pool harness (pool-harness: deadpool-postgres, sqlx, bb8, Diesel + r2d2) with
# the versions pinned in Cargo.toml / Cargo.lock. Idempotent: cargo rebuilds only what changed.
# Needs the machine's Rust toolchain (rustup's cargo, >= 1.94 for sqlx 0.9), libpq-dev from
# Debian (Diesel links libpq through pq-sys), and the exporter built at the repository root
# (build.rs compiles the Rust recipes it prints); crates come from crates.io.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "install.sh: cargo not found (the machine's rustup toolchain)" >&2; exit 1; }
missing=()
for p in libpq-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cd "$here"
CARGO_TARGET_DIR="$here/target" cargo build --release --locked
echo "install.sh: built $here/target/release/pool-harness" >&2
