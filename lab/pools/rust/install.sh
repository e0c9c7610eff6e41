#!/usr/bin/env bash
# Builds the Rust pool harness (pool-harness: deadpool-postgres, sqlx, bb8) with the versions
# pinned in Cargo.toml / Cargo.lock. Idempotent: cargo rebuilds only what changed. Needs the
# machine's Rust toolchain (rustup's cargo, >= 1.94 for sqlx 0.9); crates come from crates.io.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "install.sh: cargo not found (the machine's rustup toolchain)" >&2; exit 1; }
cd "$here"
CARGO_TARGET_DIR="$here/target" cargo build --release --locked
echo "install.sh: built $here/target/release/pool-harness" >&2
