#!/usr/bin/env bash
# Installs HikariCP 2.7.9, pgJDBC, SLF4J and Gson from Debian (Java 17 from Debian too) and
# compiles the pool-matrix harness into build/. Idempotent; run as root on Debian 12.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

packages=(openjdk-17-jdk-headless libhikaricp-java=2.7.9-1 libpostgresql-jdbc-java=42.5.5-0+deb12u1
          libslf4j-java=1.7.32-1 libgoogle-gson-java=2.10-1)
missing=()
for p in "${packages[@]}"; do
  name=${p%%=*} want=${p#*=}
  have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
  case $have in
    "install ok installed "*) [ "$name" = "$want" ] || [ "${have##* }" = "$want" ] || missing+=("$p") ;;
    *) missing+=("$p") ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$here/build"
version="HikariCP $(dpkg-query -W -f='${Version}' libhikaricp-java), pgJDBC $(dpkg-query -W -f='${Version}' libpostgresql-jdbc-java), Java $(javac -version 2>&1 | cut -d" " -f2)"
printf '%s\n' "$version" > "$here/build/version"
start=$(date +%s)
javac -d "$here/build" -cp "$(cat "$here/classpath")" "$here"/*.java
echo "hikaricp harness built in $(( $(date +%s) - start )) s: $version" >&2
