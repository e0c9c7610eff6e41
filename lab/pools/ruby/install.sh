#!/usr/bin/env bash
# Installs Rails' ActiveRecord and ruby-pg from Debian 12 (ruby 3.1, ruby-activerecord 6.1.7,
# ruby-pg 1.4 on libpq 15) for the pool-matrix harness (harness.rb). Idempotent and quiet:
# apt runs only when a package is missing. No RubyGems: Debian's packages are the versions tested.
set -euo pipefail
packages=(ruby ruby-activerecord ruby-pg)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
ruby -e 'require "active_record"; require "pg"; warn "install.sh: ActiveRecord #{ActiveRecord::VERSION::STRING}, pg #{PG::VERSION}, libpq #{PG.library_version}"'
