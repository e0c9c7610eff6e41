#!/usr/bin/env bash
# Runs the exporter against a demo target it sets up itself: PostgreSQL in a network namespace
# behind a conntrack middlebox that silently drops connections idle for 20 s (the lab's `silent`
# mode). Needs root on Debian. Ctrl-C stops the exporter and removes the lab.
# With --discover it runs the one-shot `discover` command against the same target instead,
# prints its report and exits.
#
#   sudo bash scripts/demo.sh [--mode silent|reset|server] [--timeout SECONDS] [--discover]
set -euo pipefail
cd "$(dirname "$0")/.."
mode=silent
timeout=20
discover=false
while [ $# -gt 0 ]; do
  case $1 in
    --mode) mode=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --discover) discover=true; shift ;;
    *) echo "usage: $0 [--mode silent|reset|server] [--timeout SECONDS] [--discover]" >&2; exit 2 ;;
  esac
done

bash lab/lab.sh deps
cargo build --release --locked
eval "$(bash lab/lab.sh up demo --mode "$mode" --timeout "$timeout")"
trap 'bash lab/lab.sh down demo' EXIT

if $discover; then
  echo "demo: middlebox drops flows idle for ${timeout}s ($mode); measuring once" >&2
  ./target/release/idle_drop_exporter discover --dsn "$LAB_DSN" --password-file "$LAB_PASSWORD_FILE" \
    --sslmode disable --query-timeout 5s --tcp-user-timeout 3s --range-max 10m \
    --app-max-idle-lifetime "$((timeout * 3 / 2))s"
  exit $?
fi

config=$(mktemp -d)/demo.yaml
cat > "$config" <<YAML
listen_address: 127.0.0.1:10187
targets:
  - name: demo
    dsn: "$LAB_DSN"
    password_file: $LAB_PASSWORD_FILE
    sslmode: disable
    query_timeout: 5s
    tcp_user_timeout: 3s
    idle_range: {min: 1s, max: 10m}
    app_max_idle_lifetime: $((timeout * 3 / 4))s
YAML
echo "demo: middlebox drops flows idle for ${timeout}s ($mode); open http://127.0.0.1:10187/" >&2
./target/release/idle_drop_exporter --config "$config" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; bash lab/lab.sh down demo' EXIT INT TERM
wait $pid
