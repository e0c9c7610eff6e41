#!/usr/bin/env bash
# Installs Go 1.19 and lib/pq 1.10.7 from Debian (packaged source) and builds the database/sql
# pool-matrix harness into build/harness. Idempotent; run as root on Debian 12. No Go module
# proxy is used: the build is GOPATH mode (GO111MODULE=off) against /usr/share/gocode, where
# the -dev packages put their source.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

packages=(golang-go=2:1.19~1 golang-github-lib-pq-dev=1.10.7-2)
missing=()
for p in "${packages[@]}"; do
  name=${p%%=*} want=${p#*=}
  [ "$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)" = "$want" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

pq=$(dpkg-query -W -f='${Version}' golang-github-lib-pq-dev)
version="lib/pq ${pq%%-*} (Debian golang-github-lib-pq-dev $pq), database/sql of $(go env GOVERSION)"

mkdir -p "$here/build"
start=$(date +%s)
( cd "$here" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$here/build/gocache" GOFLAGS='' \
    go build -o build/harness -ldflags "-X 'main.version=$version'" main.go )
echo "database/sql harness built in $(( $(date +%s) - start )) s: $version" >&2
