#!/usr/bin/env bash
# Builds the quaint harness twice, once per configuration (engine/: Prisma's query engine
# settings, mobc 0.8.5; bare/: quaint alone, mobc 0.8.3), each from its own Cargo.lock, into one
# shared target folder: the second build only rebuilds mobc, quaint and the harness. quaint is
# the vendored copy in ../shared/vendor/quaint beside the repository (see its README); every
# other crate comes from crates.io. Idempotent: a second run only checks, in seconds.
# Needs the machine's Rust toolchain, pkg-config and OpenSSL headers (quaint's postgresql
# feature links native-tls).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "install.sh: cargo not found (the machine's rustup toolchain)" >&2; exit 1; }
vendor="$here/../../../../shared/vendor/quaint"
[ -f "$vendor/Cargo.toml" ] || { echo "install.sh: $vendor missing: ../shared/ must lie beside the repository" >&2; exit 1; }
if ! dpkg -s libssl-dev pkg-config >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libssl-dev pkg-config >/dev/null
fi
# quaint's own ~200 warnings are replayed on every build: keep them out of the install log
# unless the build fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for config in engine bare; do
    if ! CARGO_TARGET_DIR="$here/target" cargo build --release --locked --quiet \
        --manifest-path "$here/$config/Cargo.toml" 2>"$log"; then
        grep -v -e '^warning' -e '^ *|' -e '^ *=' -e '^ *-->' -e '^$' "$log" | tail -60 >&2
        echo "install.sh: the $config build failed" >&2
        exit 1
    fi
done
echo "install.sh: built $here/target/release/quaint-harness-engine and -bare" >&2
