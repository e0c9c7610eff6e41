#!/usr/bin/env bash
# Installs what the PgBouncer harness needs: PgBouncer 1.18 and psql from Debian (bookworm).
# Idempotent; run as root on Debian. The harness starts its own PgBouncer per job.
set -euo pipefail
missing=()
command -v pgbouncer >/dev/null || missing+=(pgbouncer)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  # Where services may start (no policy-rc.d), the package would start the system PgBouncer on
  # 6432; the harness does not use it, so stop it again.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" pgbouncer "* ]]; then
    service pgbouncer stop >/dev/null 2>&1 || true
  fi
fi
case "$(pgbouncer --version | head -n 1)" in
  "PgBouncer 1.18."*) ;;
  *) echo "pgbouncer harness: expected PgBouncer 1.18 (Debian bookworm), got: $(pgbouncer --version | head -n 1)" >&2; exit 1 ;;
esac
