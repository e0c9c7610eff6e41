#!/usr/bin/env bash
# Overhead benchmark: idle_drop_exporter beside Debian's prometheus-blackbox-exporter and
# prometheus-postgres-exporter, probing the same N targets; then what each reports while the
# lab's middlebox silently drops idle flows. Results are printed as markdown tables.
#
#   bash scripts/bench-overhead.sh steady 1 100      # steady state for N = 1 and 100 targets
#   bash scripts/bench-overhead.sh steady 1000
#   bash scripts/bench-overhead.sh drops             # middlebox at T = 10 s, one target each
#   bash scripts/bench-overhead.sh down              # remove what a run killed with SIGKILL left behind
#
# Knobs (environment): WARMUP (s, default 60), WINDOW (s, 120), SCRAPES (20), INTERVAL (15),
# DROP_T (10), DROP_WINDOW (180), LAB (bnov), OUT (directory for logs, /tmp/bn-overhead).
#
# steady and drops leave nothing running: when they end (done, failed, Ctrl-C or SIGTERM) every
# process they started is stopped and the lab is removed; results and logs stay in OUT.
#
# Setup (needs root): one lab (`lab/lab.sh up bnov --mode silent --timeout 3600`, i.e. no drops
# during the steady-state measurement) and a PgBouncer *inside* the lab's namespace, in front
# of its PostgreSQL (unix socket), listening on port 6432 of the namespace's interfaces, so the
# thousands of idle client connections cost PgBouncer a few KiB each instead of a backend each.
# pool_mode = transaction (the exporter's probes are simple-protocol `SELECT 1`s; see the doc
# for what transaction pooling means for ghost reaping), auth_type = trust (authentication cost
# is not what is measured), max_client_conn = 12000, open-file limit raised to the hard limit (20000 here).
#
# Per N, the three run at the same time, each with N targets, all pointing at that PgBouncer:
# - ours: the release binary, N targets (distinct names, same DSN), 8 connections each (7 idle
#   probes + the control connection), /metrics scraped every INTERVAL;
# - blackbox_exporter: module `tcp_connect` (a TCP handshake and close: it speaks no protocol),
#   driven like Prometheus would: /probe?target=...&module=tcp_connect for each target once per
#   INTERVAL, spread evenly over it;
# - postgres_exporter 0.11.1 (Debian's; no multi-target /probe before 0.12): one process with a
#   DATA_SOURCE_NAME list of N DSNs, /metrics scraped every INTERVAL. It labels series by
#   host:port only, so N DSNs need N distinct hosts: it runs inside the lab's namespace and
#   reaches PgBouncer at 127.0.x.y (the namespace's own loopback). For N > 1 its bgwriter and
#   database collectors are off (0.11.1 fails every scrape with a DSN list otherwise); for
#   N >= 1000 its default and settings metrics are off too (pg_up only), or one scrape would be
#   ~20,000 queries.
# After WARMUP, RSS (VmRSS) and CPU (utime+stime from /proc/PID/stat) are sampled over WINDOW
# seconds; CPU s/hour is extrapolated from the window. Then SCRAPES timed scrapes (curl -w) of
# each one's endpoint give size and latency (median, p90).
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
LAB=${LAB:-bnov}
OUT=${OUT:-/tmp/bn-overhead}
WARMUP=${WARMUP:-60}
WINDOW=${WINDOW:-120}
SCRAPES=${SCRAPES:-20}
INTERVAL=${INTERVAL:-15}
DROP_T=${DROP_T:-10}
DROP_WINDOW=${DROP_WINDOW:-180}
OURS_PORT=19187
BLACKBOX_PORT=19115
PGEXP_PORT=19188
BIN=$HERE/target/release/idle_drop_exporter
NS=idl-$LAB
LABSH=$HERE/lab/lab.sh

log() { echo "bench-overhead: $*" >&2; }
die() { echo "bench-overhead: error: $*" >&2; exit 1; }

deps() {
  local missing=()
  command -v pgbouncer >/dev/null || missing+=(pgbouncer)
  command -v prometheus-blackbox-exporter >/dev/null || missing+=(prometheus-blackbox-exporter)
  command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    # Debian's packages would start their own services where systemd runs; we start our own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  bash "$LABSH" deps
  [ -x "$BIN" ] || (cd "$HERE" && cargo build --release)
}

# ---- processes we start: remembered by pid in $OUT/pids, stopped by pid ----------------------
remember() { echo "$1" >> "$OUT/pids"; }
stop_all() {
  [ -f "$OUT/pids" ] || return 0
  local pid
  while read -r pid; do
    kill "$pid" 2>/dev/null || true
  done < "$OUT/pids"
  sleep 1
  while read -r pid; do
    kill -9 "$pid" 2>/dev/null || true
  done < "$OUT/pids"
  rm -f "$OUT/pids"
}

lab_up() {
  mkdir -p "$OUT"
  local lab_env
  lab_env=$(bash "$LABSH" up "$LAB" --mode silent --timeout 3600 --max-connections 200)
  eval "$lab_env"
  echo "$LAB_HOST" > "$OUT/lab_host"
  echo "$LAB_SOCKET_DIR" > "$OUT/lab_socket"
  echo "$LAB_PASSWORD_FILE" > "$OUT/lab_password_file"
  pgbouncer_up
}

pgbouncer_up() {
  local dir=$OUT/pgbouncer socket
  socket=$(cat "$OUT/lab_socket")
  mkdir -p "$dir"
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
postgres = host=$socket port=5432 dbname=postgres user=probe

[pgbouncer]
listen_addr = *
listen_port = 6432
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 12000
default_pool_size = 20
max_db_connections = 40
server_idle_timeout = 30
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
log_connections = 0
log_disconnections = 0
INI
  echo '"probe" ""' > "$dir/userlist.txt"
  chown -R postgres "$dir"
  # Inside the namespace `listen_addr = *` means its loopback and its veth end only.
  ip netns exec "$NS" bash -c "ulimit -n $(ulimit -Hn); exec pgbouncer -d -u postgres '$dir/pgbouncer.ini'"
  sleep 1
  remember "$(cat "$dir/pgbouncer.pid")"
  log "pgbouncer up in $NS on port 6432 (pid $(cat "$dir/pgbouncer.pid"))"
}

down() {
  stop_all
  bash "$LABSH" down "$LAB" || true
}

# EXIT trap of steady and drops; INT and TERM exit through it too.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  log "stopping every process we started and removing lab $LAB"
  down || true
  exit "$rc"
}

# ---- measurement helpers ----------------------------------------------------------------------
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# timed_scrapes NAME URL [netns]: SCRAPES scrapes, prints "median_ms p90_ms bytes failures".
timed_scrapes() {
  local url=$1 ns=${2:-} i out
  : > "$OUT/scrape.tmp"
  for i in $(seq 1 "$SCRAPES"); do
    if [ -n "$ns" ]; then
      out=$(ip netns exec "$ns" curl -s -o /dev/null --max-time 30 -w '%{http_code} %{time_total} %{size_download}' "$url" || true)
    else
      out=$(curl -s -o /dev/null --max-time 30 -w '%{http_code} %{time_total} %{size_download}' "$url" || true)
    fi
    echo "$out" >> "$OUT/scrape.tmp"
    sleep 0.5
  done
  python3 - "$OUT/scrape.tmp" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
ok = [r for r in rows if len(r) == 3 and r[0] == "200"]
t = sorted(float(r[1]) * 1000 for r in ok)
if not t:
    print("- - - %d" % len(rows)); sys.exit()
q = lambda p: t[min(len(t) - 1, int(len(t) * p))]
print("%.1f %.1f %d %d" % (q(0.5), q(0.9), max(int(r[2]) for r in ok), len(rows) - len(ok)))
PY
}

# The scrape loop Prometheus would run: each URL in FILE once per INTERVAL, spread evenly.
# For URLs whose answer matters (drops phase) it logs "time url status seconds body-lines".
driver() {
  local file=$1 logfile=$2 ns=${3:-}
  local argv=(python3 - "$file" "$INTERVAL" "$logfile")
  [ -n "$ns" ] && argv=(ip netns exec "$ns" "${argv[@]}")
  "${argv[@]}" <<'PY' &
import sys, time, threading, urllib.request
urls = [l.strip() for l in open(sys.argv[1]) if l.strip()]
interval = float(sys.argv[2]); logfile = open(sys.argv[3], "a", buffering=1)
keep = ("probe_success", "probe_duration_seconds", "pg_up ", "pg_up{", "pg_exporter_last_scrape_error", "pg_exporter_last_scrape_duration_seconds")
def hit(url):
    start = time.time()
    try:
        with urllib.request.urlopen(url, timeout=interval) as r:
            body = r.read().decode(errors="replace"); status = r.status
    except Exception as e:
        body = ""; status = type(e).__name__
    took = time.time() - start
    if len(urls) <= 4:
        vals = " ".join(l for l in body.splitlines() if l.startswith(keep))
        logfile.write("%.1f %s %s %.3f %s\n" % (start, url, status, took, vals))
gap = interval / len(urls)
nxt = time.time()
while True:
    for u in urls:
        threading.Thread(target=hit, args=(u,), daemon=True).start()
        nxt += gap
        time.sleep(max(0, nxt - time.time()))
PY
  remember $!
}

write_ours_config() {
  local n=$1 dsn=$2 path=$3 extra=${4:-} i
  {
    echo "listen_address: 127.0.0.1:$OURS_PORT"
    echo "log: {level: warn}"
    echo "targets:"
    for i in $(seq 1 "$n"); do
      printf '  - name: t%04d\n    dsn: %s\n    password_file: %s\n    sslmode: disable\n    max_connections: 8\n%b' \
        "$i" "$dsn" "$(cat "$OUT/lab_password_file")" "$extra"
    done
  } > "$path"
}

start_ours() {
  local config=$1
  "$BIN" --config "$config" --check-config >/dev/null
  bash -c "ulimit -n $(ulimit -Hn); exec '$BIN' --config '$config'" > "$OUT/ours.log" 2>&1 &
  OURS_PID=$!
  remember $OURS_PID
}

start_blackbox() {
  cat > "$OUT/blackbox.yml" <<YML
modules:
  tcp_connect:
    prober: tcp
    timeout: 5s
YML
  bash -c "ulimit -n $(ulimit -Hn); exec prometheus-blackbox-exporter --config.file='$OUT/blackbox.yml' --web.listen-address=127.0.0.1:$BLACKBOX_PORT --log.level=warn" > "$OUT/blackbox.log" 2>&1 &
  BLACKBOX_PID=$!
  remember $BLACKBOX_PID
}

# start_pgexp DSN_LIST [netns] [extra flags]
start_pgexp() {
  local dsns=$1 ns=${2:-} flags=${3:-} listen
  if [ -n "$ns" ]; then listen=127.0.0.1:$PGEXP_PORT; else listen=127.0.0.1:$PGEXP_PORT; fi
  printf '%s' "$dsns" > "$OUT/pgexp.dsn"
  chmod 600 "$OUT/pgexp.dsn"
  local run
  run="ulimit -n $(ulimit -Hn); DATA_SOURCE_NAME=\$(cat '$OUT/pgexp.dsn') exec prometheus-postgres-exporter --web.listen-address=$listen --log.level=warn $flags"
  if [ -n "$ns" ]; then
    ip netns exec "$ns" bash -c "$run" > "$OUT/pgexp.log" 2>&1 &
  else
    bash -c "$run" > "$OUT/pgexp.log" 2>&1 &
  fi
  PGEXP_PID=$!
  remember $PGEXP_PID
}

steady() {
  [ $# -gt 0 ] || set -- 1 100 1000
  deps
  mkdir -p "$OUT"
  if ! { [ -f "$OUT/lab_host" ] && ip netns list | grep -qw "$NS"; }; then
    lab_up
  fi
  local host n
  host=$(cat "$OUT/lab_host")
  local ns_list="$*"
  local results=$OUT/steady-${ns_list// /-}.md
  echo "| N targets | exporter | RSS after warm-up (MiB) | RSS max in window (MiB) | CPU s/hour (from ${WINDOW}s; 1 tick = $(awk "BEGIN {printf \"%.1f\", 3600 / $WINDOW / $(getconf CLK_TCK)}") s/h) | endpoint scraped | response size (bytes) | scrape latency median / p90 (ms) | failed scrapes |" > "$results"
  echo "|---|---|---|---|---|---|---|---|---|" >> "$results"
  for n in "$@"; do
    log "N=$n: starting the three exporters"
    write_ours_config "$n" "postgres://probe@$host:6432/postgres" "$OUT/ours-$n.yaml" "    reap_ghosts: false\n"
    start_ours "$OUT/ours-$n.yaml"
    start_blackbox
    # postgres_exporter: N distinct hosts on the namespace's loopback, all PgBouncer.
    local dsns="" i flags="" pw
    pw=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(open(sys.argv[1]).read().strip(),safe=""))' "$(cat "$OUT/lab_password_file")")
    for i in $(seq 1 "$n"); do
      dsns+="${dsns:+,}postgresql://probe:$pw@127.0.$((i / 250)).$((i % 250 + 1)):6432/postgres?sslmode=disable"
    done
    # 0.11.1's newer collectors (bgwriter, database) do not handle a DSN list: with two DSNs
    # every scrape fails with "collected before with the same name and label values".
    [ "$n" -gt 1 ] && flags="--no-collector.bgwriter --no-collector.database"
    [ "$n" -ge 1000 ] && flags="$flags --disable-default-metrics --disable-settings-metrics"
    start_pgexp "$dsns" "$NS" "$flags"
    sleep 2
    # Scrape loops at INTERVAL.
    echo "http://127.0.0.1:$OURS_PORT/metrics" > "$OUT/urls-ours"
    : > "$OUT/urls-bb"
    for i in $(seq 1 "$n"); do
      echo "http://127.0.0.1:$BLACKBOX_PORT/probe?module=tcp_connect&target=$host:6432" >> "$OUT/urls-bb"
    done
    echo "http://127.0.0.1:$PGEXP_PORT/metrics" > "$OUT/urls-pgexp"
    driver "$OUT/urls-ours" "$OUT/driver-ours-$n.log"
    driver "$OUT/urls-bb" "$OUT/driver-bb-$n.log"
    driver "$OUT/urls-pgexp" "$OUT/driver-pgexp-$n.log" "$NS"
    log "N=$n: warm-up ${WARMUP}s"
    sleep "$WARMUP"
    local pids=("$OURS_PID" "$BLACKBOX_PID" "$PGEXP_PID") names=(idle_drop_exporter blackbox_exporter postgres_exporter)
    local c0=() r0=() rmax=(0 0 0) k
    for k in 0 1 2; do c0[k]=$(cpu_ticks "${pids[$k]}"); r0[k]=$(rss_kib "${pids[$k]}"); done
    log "N=$n: window ${WINDOW}s"
    local t0
    t0=$(date +%s.%N)
    for _ in $(seq 1 $((WINDOW / 5))); do
      sleep 5
      for k in 0 1 2; do
        local r; r=$(rss_kib "${pids[$k]}")
        [ "$r" -gt "${rmax[$k]}" ] && rmax[k]=$r
      done
    done
    local elapsed hz
    elapsed=$(python3 -c "import time;print(time.time()-$t0)")
    hz=$(getconf CLK_TCK)
    local cpu=()
    for k in 0 1 2; do
      cpu[k]=$(python3 -c "print('%.1f' % (($(cpu_ticks "${pids[$k]}") - ${c0[$k]}) / $hz / $elapsed * 3600))")
    done
    log "N=$n: timed scrapes"
    local s_ours s_bb s_pg
    s_ours=$(timed_scrapes "http://127.0.0.1:$OURS_PORT/metrics")
    s_bb=$(timed_scrapes "http://127.0.0.1:$BLACKBOX_PORT/probe?module=tcp_connect&target=$host:6432")
    s_pg=$(timed_scrapes "http://127.0.0.1:$PGEXP_PORT/metrics" "$NS")
    local sc=("$s_ours" "$s_bb" "$s_pg") ep=("/metrics (all N targets)" "/probe (one target)" "/metrics (all N DSNs)")
    for k in 0 1 2; do
      read -r med p90 size fail <<< "${sc[$k]}"
      printf '| %s | %s | %.1f | %.1f | %s | %s | %s | %s / %s | %s |\n' "$n" "${names[$k]}" \
        "$(awk "BEGIN {print ${r0[$k]} / 1024}")" "$(awk "BEGIN {print ${rmax[$k]} / 1024}")" "${cpu[$k]}" \
        "${ep[$k]}" "$size" "$med" "$p90" "$fail" >> "$results"
    done
    # What the server side looked like.
    log "N=$n: pgbouncer clients: $(ip netns exec "$NS" ss -Htn state established '( sport = :6432 )' | wc -l), postgres backends: $(bash "$LABSH" psql "$LAB" -Atc 'select count(*) from pg_stat_activity')"
    stop_all
    # keep pgbouncer: it was stopped with the rest; start it again for the next N
    pgbouncer_up
    sleep 2
    cat "$results"
  done
  log "results in $results"
}

drops() {
  deps
  mkdir -p "$OUT"
  if ! { [ -f "$OUT/lab_host" ] && ip netns list | grep -qw "$NS"; }; then
    lab_up
  fi
  local host pw
  host=$(cat "$OUT/lab_host")
  pw=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(open(sys.argv[1]).read().strip(),safe=""))' "$(cat "$OUT/lab_password_file")")
  bash "$LABSH" set-timeout "$LAB" "$DROP_T"
  # One target each, straight at PostgreSQL (port 5432, through the middlebox): ghosts can be
  # reaped there, and postgres_exporter sees the same path.
  write_ours_config 1 "postgres://probe@$host:5432/postgres" "$OUT/ours-drops.yaml" \
    "    connect_timeout: 3s\n    query_timeout: 3s\n    tcp_user_timeout: 2s\n    idle_range: {min: 1s, max: 60s}\n"
  start_ours "$OUT/ours-drops.yaml"
  start_blackbox
  start_pgexp "postgresql://probe:$pw@$host:5432/postgres?sslmode=disable" "" ""
  echo "http://127.0.0.1:$BLACKBOX_PORT/probe?module=tcp_connect&target=$host:5432" > "$OUT/urls-bb-drops"
  echo "http://127.0.0.1:$PGEXP_PORT/metrics" > "$OUT/urls-pgexp-drops"
  echo "http://127.0.0.1:$OURS_PORT/metrics" > "$OUT/urls-ours-drops"
  : > "$OUT/drops-bb.log"; : > "$OUT/drops-pgexp.log"; : > "$OUT/drops-ours.log"
  driver "$OUT/urls-bb-drops" "$OUT/drops-bb.log"
  driver "$OUT/urls-pgexp-drops" "$OUT/drops-pgexp.log"
  log "drops: middlebox T=${DROP_T}s, watching ${DROP_WINDOW}s"
  sleep "$DROP_WINDOW"
  curl -s "http://127.0.0.1:$OURS_PORT/metrics" > "$OUT/drops-ours.metrics"
  stop_all
  bash "$LABSH" set-timeout "$LAB" 3600
  pgbouncer_up
  echo "## blackbox_exporter (tcp_connect to $host:5432, every ${INTERVAL}s)"
  awk '{print $3, $4, $5, $6, $7, $8}' "$OUT/drops-bb.log" | sort | uniq -c
  echo "## postgres_exporter (DSN straight to $host:5432, scraped every ${INTERVAL}s)"
  awk '{ $2=""; print }' "$OUT/drops-pgexp.log"
  echo "## idle_drop_exporter (one target, range 1s-60s, tcp_user_timeout 2s) after ${DROP_WINDOW}s"
  grep -E '^idle_drop_(threshold_|closed_connections_total|discovery_state|discovery_duration|unexpected|ghost_backends_reaped|recommended_max)' "$OUT/drops-ours.metrics" | grep -v ' 0$' || true
}

cmd=${1:-}
[ -n "$cmd" ] || { sed -n '2,12p' "$0"; exit 2; }
shift
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
case $cmd in
  steady|drops)
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ;;
esac
case $cmd in
  steady) steady "$@" ;;
  drops) drops ;;
  down) down ;;
  *) die "unknown command $cmd" ;;
esac
