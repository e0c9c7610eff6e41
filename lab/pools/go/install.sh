#!/usr/bin/env bash
# Installs pgx v4 (Debian's packaged source) and Go 1.19 from Debian, and builds the pool-matrix
# harness into build/harness. Idempotent; run as root on Debian 12. No Go module proxy is used:
# the build is GOPATH mode (GO111MODULE=off) against /usr/share/gocode, where the -dev packages
# put their source.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

packages=(golang-go=2:1.19~1 golang-github-jackc-pgx-v4-dev=4.15.0-4)
missing=()
for p in "${packages[@]}"; do
  name=${p%%=*} want=${p#*=}
  [ "$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)" = "$want" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

pgx=$(dpkg-query -W -f='${Version}' golang-github-jackc-pgx-v4-dev)
pgconn=$(dpkg-query -W -f='${Version}' golang-github-jackc-pgconn-dev)
puddle=$(dpkg-query -W -f='${Version}' golang-github-jackc-puddle-dev)
version="v${pgx%%-*} (Debian golang-github-jackc-pgx-v4-dev $pgx, pgconn $pgconn, puddle $puddle, $(go env GOVERSION))"

mkdir -p "$here/build"
start=$(date +%s)
( cd "$here" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$here/build/gocache" GOFLAGS='' \
    go build -o build/harness -ldflags "-X 'main.version=$version'" main.go )
echo "pgx harness built in $(( $(date +%s) - start )) s: $version" >&2
