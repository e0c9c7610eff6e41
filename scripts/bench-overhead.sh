#!/usr/bin/env bash
# Overhead benchmark: idle_drop_exporter beside Debian's prometheus-blackbox-exporter and
# prometheus-postgres-exporter, probing the same N targets; then what each reports while the
# lab's middlebox silently drops idle flows. Results are printed as markdown tables.
#
#   bash scripts/bench-overhead.sh steady 1 100      # steady state for N = 1 and 100 targets
#   bash scripts/bench-overhead.sh steady 1000
#   bash scripts/bench-overhead.sh drops             # middlebox at T = 10 s, one target each
#   bash scripts/bench-overhead.sh watch 1           # watch phase, ours alone: baseline
#   bash scripts/bench-overhead.sh watch 1000        # watch phase at 1,000 targets
#   bash scripts/bench-overhead.sh watch-report 1000 # print a watch run's results again (per
#                                                    # target against watch-1.json if there)
#   bash scripts/bench-overhead.sh down              # remove what a run killed with SIGKILL left behind
#                                                    # (LAB=bnw OUT=/tmp/bn-watch ... down after watch)
#
# Knobs (environment): WARMUP (s, default 60), WINDOW (s, 120; watch: 600), SCRAPES (20),
# INTERVAL (15), DROP_T (10), DROP_WINDOW (180), LAB (bnov; watch: bnw), OUT (directory for
# logs, /tmp/bn-overhead; watch: /tmp/bn-watch). watch only: WATCH_T (middlebox timeout, 30),
# WATCH_GUARD (app_max_idle_lifetime in s, 0.8 x WATCH_T; 0 = no guard), SETTLE (s after every
# target is watching, 120), DISCOVERY_TIMEOUT (s, 1800), WARM_POOL (1: PgBouncer's server pool
# full before ours starts; 0: it grows as probes connect, see pgbouncer_warm).
#
# steady, drops and watch leave nothing running: when they end (done, failed, Ctrl-C or SIGTERM) every
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
#
# watch N: what one replica costs per target in the watch phase (control connection, low and
# high sentinels, guard), ours alone. Lab `bnw` with the middlebox at T = WATCH_T (silent drop),
# the same PgBouncer inside it, reached across the veth (through the middlebox) by N targets
# with idle_range 1 s .. 2T, app_max_idle_lifetime WATCH_GUARD, reap_ghosts false, default
# max_connections (8), query/tcp_user timeouts at their defaults (10 s). PgBouncer gets
# client_idle_timeout = 3T (longer than any live probe connection idles: range max 2T), so the
# client sessions the middlebox dropped silently (PgBouncer never learns of them) are closed
# instead of piling up for hours, max_client_conn 19000 (open files stay at the hard limit,
# 20000 here) and stats_users = probe for SHOW LISTS. The exporter is started, its /metrics is
# scraped every INTERVAL (as Prometheus would), and once every target reports
# idle_drop_discovery_state{state="watching"} (time and discovery-phase peaks are recorded),
# SETTLE seconds pass, then WINDOW seconds are sampled: VmRSS every 5 s, CPU (utime+stime)
# over the window, the exporter's ESTABLISHED TCP sockets to PgBouncer every 5 s (ss in the root
# namespace: ours is the only client there), PgBouncer's established client sockets (ss in the
# namespace) and SHOW LISTS, PostgreSQL's client backends every 30 s, and counters from the
# scrapes (connections opened, deaths by role and kind, threshold changes); then SCRAPES timed
# scrapes without and SCRAPES with `Accept-Encoding: gzip` (as Prometheus scrapes; the scrape
# loop above asks for plain text). Results go to OUT/watch-N.json and a markdown table; per-target figures use OUT/watch-1.json, when there,
# as the baseline.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = watch ] || [ "${1:-}" = watch-report ]; then
  LAB=${LAB:-bnw}
  OUT=${OUT:-/tmp/bn-watch}
  WINDOW=${WINDOW:-600}
fi
LAB=${LAB:-bnov}
OUT=${OUT:-/tmp/bn-overhead}
WARMUP=${WARMUP:-60}
WINDOW=${WINDOW:-120}
WATCH_T=${WATCH_T:-30}
WATCH_GUARD=${WATCH_GUARD:-$((WATCH_T * 8 / 10))}
SETTLE=${SETTLE:-120}
DISCOVERY_TIMEOUT=${DISCOVERY_TIMEOUT:-1800}
WARM_POOL=${WARM_POOL:-1}
# PgBouncer settings the watch mode changes (steady and drops keep these).
PGB_MAX_CLIENT_CONN=12000
PGB_EXTRA=""
SCRAPES=${SCRAPES:-20}
INTERVAL=${INTERVAL:-15}
DROP_T=${DROP_T:-10}
DROP_WINDOW=${DROP_WINDOW:-180}
OURS_PORT=19187
BLACKBOX_PORT=19115
PGEXP_PORT=19188
BIN=${BIN:-$HERE/target/release/idle_drop_exporter}
NS=idl-$LAB
LABSH=$HERE/lab/lab.sh

log() { echo "bench-overhead: $*" >&2; }
die() { echo "bench-overhead: error: $*" >&2; exit 1; }

# deps [watch]: watch runs ours alone and needs neither of the other exporters.
deps() {
  local missing=()
  command -v pgbouncer >/dev/null || missing+=(pgbouncer)
  if [ "${1:-}" != watch ]; then
    command -v prometheus-blackbox-exporter >/dev/null || missing+=(prometheus-blackbox-exporter)
    command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
  fi
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

# lab_up [T]: the middlebox timeout, 3600 s (no drops) unless given.
lab_up() {
  local timeout=${1:-3600}
  mkdir -p "$OUT"
  local lab_env
  lab_env=$(bash "$LABSH" up "$LAB" --mode silent --timeout "$timeout" --max-connections 200)
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
max_client_conn = $PGB_MAX_CLIENT_CONN
default_pool_size = 20
max_db_connections = 40
server_idle_timeout = 30
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
log_connections = 0
log_disconnections = 0
$PGB_EXTRA
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

# timed_scrapes URL [netns [curl args...]]: SCRAPES scrapes, prints "median_ms p90_ms bytes
# failures" (bytes as sent: compressed when the curl args ask for gzip).
timed_scrapes() {
  local url=$1 ns=${2:-} i out
  shift; shift || true
  : > "$OUT/scrape.tmp"
  for i in $(seq 1 "$SCRAPES"); do
    if [ -n "$ns" ]; then
      out=$(ip netns exec "$ns" curl -s -o /dev/null --max-time 30 -w '%{http_code} %{time_total} %{size_download}' "$@" "$url" || true)
    else
      out=$(curl -s -o /dev/null --max-time 30 -w '%{http_code} %{time_total} %{size_download}' "$@" "$url" || true)
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
    echo "log: {level: \"${OURS_LOG:-warn}\"}"
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

# ---- watch: the watch phase, ours alone ------------------------------------------------------

# watch_sampler MODE SECONDS OUTJSON: MODE discovery samples until every target is watching
# (or SECONDS pass); MODE window samples for SECONDS. Every 5 s: VmRSS, the exporter's
# established sockets to PgBouncer, PgBouncer's established client sockets; every INTERVAL: a
# timed scrape of /metrics (the Prometheus load); every 30 s: SHOW LISTS and PostgreSQL's backends.
watch_sampler() {
  local mode=$1 seconds=$2 out=$3
  python3 - "$mode" "$seconds" "$out" "$OURS_PID" "$(cat "$OUT/lab_host")" "$NS" "$INTERVAL" \
    "http://127.0.0.1:$OURS_PORT/metrics" "$WATCH_N" "$LABSH" "$LAB" <<'PY'
import json, os, re, subprocess, sys, time, urllib.request
mode, seconds, out, pid, host, ns, interval, url, n, labsh, lab = sys.argv[1:]
seconds = float(seconds); pid = int(pid); interval = float(interval); n = int(n)
HZ = os.sysconf("SC_CLK_TCK")

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def ticks():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime, stime (fields 14, 15)
def count(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return sum(1 for l in r.stdout.splitlines() if l.strip())
def ours_est():
    return count(["ss", "-Htn", "state", "established", f"( dst {host} and dport = :6432 )"])
def pgb_est():
    return count(["ip", "netns", "exec", ns, "ss", "-Htn", "state", "established",
                  "( sport = :6432 and not dst 127.0.0.1 )"])
def fd_sockets():
    try:
        return sum(1 for f in os.listdir(f"/proc/{pid}/fd")
                   if os.readlink(f"/proc/{pid}/fd/{f}").startswith("socket:"))
    except OSError:
        return None
def server_side():
    lists = {}
    r = subprocess.run(["ip", "netns", "exec", ns, "psql", "-X", "-h", "127.0.0.1", "-p", "6432",
                        "-U", "probe", "-d", "pgbouncer", "-Atc", "SHOW LISTS"],
                       capture_output=True, text=True, timeout=20)
    for l in r.stdout.splitlines():
        k, _, v = l.partition("|")
        if v.strip().isdigit():
            lists[k] = int(v)
    r = subprocess.run(["bash", labsh, "psql", lab, "-Atc",
                        "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()"],
                       capture_output=True, text=True, timeout=20)
    pg = int(r.stdout.strip()) if r.stdout.strip().isdigit() else None
    # SHOW LISTS counts the psql admin session as a used client: leave it out.
    return {"pgb_used_clients": lists.get("used_clients", 1) - 1 if lists else None,
            "pgb_used_servers": lists.get("used_servers"), "pg_backends": pg}

LINE = re.compile(r'^([a-z_]+)\{([^}]*)\} (\S+)$')
def scrape():
    t = time.time()
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body = r.read().decode(errors="replace")
    except Exception as e:
        return {"ok": False, "error": type(e).__name__}
    took = time.time() - t
    m = {"ok": True, "ms": took * 1000, "bytes": len(body), "states": {}, "sessions_gauge": 0,
         "connects": 0, "closed": {}, "unexpected": 0, "changes": 0, "connect_errors": 0, "outages": 0}
    for line in body.splitlines():
        if not line.startswith("idle_drop_"):
            continue
        g = LINE.match(line)
        if not g:
            continue
        name, labels, value = g.groups()
        v = float(value)
        lab_ = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if name == "idle_drop_discovery_state" and v == 1:
            m["states"][lab_["state"]] = m["states"].get(lab_["state"], 0) + 1
        elif name == "idle_drop_probe_connections":
            m["sessions_gauge"] += v
        elif name == "idle_drop_connect_duration_seconds_count":
            m["connects"] += v
        elif name == "idle_drop_closed_connections_total":
            k = lab_["role"] + "/" + lab_["kind"]
            m["closed"][k] = m["closed"].get(k, 0) + v
        elif name == "idle_drop_unexpected_closed_connections_total":
            m["unexpected"] += v
        elif name == "idle_drop_threshold_changes_total":
            m["changes"] += v
        elif name == "idle_drop_connect_errors_total":
            m["connect_errors"] += v
        elif name == "idle_drop_outages_total":
            m["outages"] += v
    return m

start = time.time()
c0 = ticks()
res = {"mode": mode, "samples": [], "scrapes": [], "server": []}
next_scrape = start; next_server = start; all_watching_at = None
while True:
    now = time.time()
    if mode == "window" and now - start >= seconds:
        break
    if mode == "discovery" and now - start >= seconds:
        break
    res["samples"].append({"t": now - start, "rss": rss_kib(), "ours": ours_est(), "pgb": pgb_est(),
                           "fd_sockets": fd_sockets()})
    if now >= next_scrape:
        s = scrape(); s["t"] = now - start
        res["scrapes"].append({k: v for k, v in s.items()})
        next_scrape += interval
        if mode == "discovery" and s.get("ok") and s["states"].get("watching", 0) >= n:
            all_watching_at = now - start
    if now >= next_server:
        try:
            sv = server_side(); sv["t"] = now - start
            res["server"].append(sv)
        except Exception as e:
            res["server"].append({"t": now - start, "error": type(e).__name__})
        next_server += 30
    if all_watching_at is not None:
        break
    time.sleep(max(0, 5 - (time.time() - now)))
elapsed = time.time() - start
res["elapsed"] = elapsed
res["cpu_ticks"] = ticks() - c0
res["cpu_s_per_hour"] = res["cpu_ticks"] / HZ / elapsed * 3600
res["all_watching_at"] = all_watching_at
res["rss_end"] = rss_kib()
last = scrape(); last["t"] = elapsed
res["scrapes"].append(last)
json.dump(res, open(out, "w"), indent=1)
PY
}

watch_report() {
  python3 - "$OUT" "$WATCH_N" "$WATCH_T" "$WATCH_GUARD" "$INTERVAL" <<'PY'
import json, math, os, statistics, sys
outdir, n, T, guard, interval = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
r = json.load(open(f"{outdir}/watch-{n}.json"))
p = r.get("params", {})
T, guard, interval = p.get("T", T), p.get("guard", guard), p.get("interval", interval)
def mean(xs): xs = [x for x in xs if x is not None]; return statistics.mean(xs) if xs else float("nan")
def mx(xs): xs = [x for x in xs if x is not None]; return max(xs) if xs else float("nan")
MiB = 1024.0
def fig(d):
    w = d["window"]; s = w["samples"]; sv = [x for x in w["server"] if "error" not in x]
    ok = [x for x in w["scrapes"] if x.get("ok")]
    first, last = ok[0], ok[-1]
    closed = {k: last["closed"].get(k, 0) - first["closed"].get(k, 0) for k in last["closed"]}
    hours = (last["t"] - first["t"]) / 3600 or float("nan")
    return {
        "rss_start": s[0]["rss"] / MiB, "rss_mean": mean([x["rss"] for x in s]) / MiB,
        "rss_max": mx([x["rss"] for x in s]) / MiB, "cpu": w["cpu_s_per_hour"],
        "ours_mean": mean([x["ours"] for x in s]), "ours_max": mx([x["ours"] for x in s]),
        "fd_mean": mean([x["fd_sockets"] for x in s]),
        "gauge_mean": mean([x["sessions_gauge"] for x in ok]),
        "pgb_mean": mean([x["pgb"] for x in s]), "pgb_max": mx([x["pgb"] for x in s]),
        "pgb_used_mean": mean([x["pgb_used_clients"] for x in sv]),
        "pg_mean": mean([x["pg_backends"] for x in sv]), "pg_max": mx([x["pg_backends"] for x in sv]),
        "connects_h": (last["connects"] - first["connects"]) / hours,
        "closed_h": {k: v / hours for k, v in sorted(closed.items()) if v},
        "changes": last["changes"] - first["changes"], "unexpected": last["unexpected"] - first["unexpected"],
        "connect_errors": last["connect_errors"] - first["connect_errors"],
        "states_end": last["states"], "window_s": w["elapsed"],
    }
f = fig(r)
d = r["discovery"]; ds = d["samples"]; dsv = [x for x in d["server"] if "error" not in x]
print(f"### watch, N = {n}: middlebox T = {T} s, guard {guard} s, /metrics every {interval} s, settle {p.get('settle', '?')} s; "
      f"run took {r.get('run_s', '?')} s, ended {p.get('ended', '?')}\n")
aw = d["all_watching_at"]
print(f"- discovery: all {n} targets watching after {aw:.0f} s" if aw is not None else
      f"- discovery: NOT all targets watching after {d['elapsed']:.0f} s (states at the end: {d['scrapes'][-1].get('states')})")
print(f"- discovery-phase peaks: RSS {mx([x['rss'] for x in ds]) / MiB:.1f} MiB, exporter sockets to PgBouncer {mx([x['ours'] for x in ds])}, "
      f"PgBouncer client sockets {mx([x['pgb'] for x in ds])}, PostgreSQL client backends {mx([x['pg_backends'] for x in dsv])}")
print(f"- states at the end of the window: {f['states_end']}; threshold changes in the window: {f['changes']:.0f}; "
      f"unexpected deaths: {f['unexpected']:.0f}; connect errors: {f['connect_errors']:.0f}")
print(f"- deaths per hour in the window (role/kind): " + ", ".join(f"{k} {v:.0f}" for k, v in f["closed_h"].items()))
sc = r.get("timed_scrapes", "- - - -").split()
print(f"- /metrics after the window: {sc[2]} bytes, scrape median / p90 {sc[0]} / {sc[1]} ms, {sc[3]} failed")
if "timed_scrapes_gzip" in r:
    gz = r["timed_scrapes_gzip"].split()
    print(f"- /metrics with Accept-Encoding: gzip (as Prometheus scrapes): {gz[2]} bytes sent, scrape median / p90 {gz[0]} / {gz[1]} ms, {gz[3]} failed")
print()
print(f"| N | window (s) | RSS start / mean / max (MiB) | CPU s/hour | exporter sockets to PgBouncer mean / max | sessions gauge (sum) mean | PgBouncer client sockets mean / max | PgBouncer used_clients mean | PostgreSQL backends mean / max | connections opened per hour |")
print("|---|---|---|---|---|---|---|---|---|---|")
print(f"| {n} | {f['window_s']:.0f} | {f['rss_start']:.1f} / {f['rss_mean']:.1f} / {f['rss_max']:.1f} | {f['cpu']:.1f} | "
      f"{f['ours_mean']:.0f} / {f['ours_max']} | {f['gauge_mean']:.0f} | {f['pgb_mean']:.0f} / {f['pgb_max']} | {f['pgb_used_mean']:.0f} | "
      f"{f['pg_mean']:.1f} / {f['pg_max']} | {f['connects_h']:.0f} |")
base_path = f"{outdir}/watch-1.json"
if n > 1 and os.path.exists(base_path):
    b = fig(json.load(open(base_path)))
    per_rss = (f["rss_mean"] - b["rss_mean"]) / (n - 1)
    per_cpu = (f["cpu"] - b["cpu"]) / (n - 1)
    print(f"\nPer target (baseline: watch 1, (X(N) - X(1)) / (N - 1)): RSS {per_rss * 1024:.0f} KiB (mean over the window; "
          f"from the maxima {(f['rss_max'] - b['rss_max']) / (n - 1) * 1024:.0f} KiB), CPU {per_cpu:.3f} s/hour, "
          f"exporter sockets {f['ours_mean'] / n:.2f} (max {f['ours_max'] / n:.2f}), PgBouncer client sockets {f['pgb_mean'] / n:.2f}, "
          f"connections opened {f['connects_h'] / n:.0f} per hour")
    base = b["rss_max"]
    per_max = (f["rss_max"] - b["rss_max"]) / (n - 1)
    budget = 512 * 0.8
    pod = math.floor((budget - base) / per_max) if per_max > 0 else None
    print(f"N per 512 MiB pod = floor((512 MiB x 0.8 - {base:.1f} MiB) / {per_max * 1024:.0f} KiB) = {pod} "
          f"(80 % of the limit as headroom; base and per-target from the window maxima)")
    bd = max(x["rss"] for x in json.load(open(base_path))["discovery"]["samples"]) / MiB
    nd = max(x["rss"] for x in ds) / MiB
    per_d = (nd - bd) / (n - 1)
    pod_d = math.floor((budget - bd) / per_d) if per_d > 0 else None
    print(f"Discovery (all targets at once, as after a start without --storage.path): peak RSS {nd:.1f} MiB, "
          f"{per_d * 1024:.0f} KiB per target over the 1-target peak {bd:.1f} MiB; "
          f"N per 512 MiB pod if the discovery peak must fit: floor((409.6 - {bd:.1f}) / {per_d * 1024:.0f} KiB) = {pod_d}")
elif n > 1:
    print(f"\nPer target (no watch-1.json baseline: RSS/N): RSS {f['rss_mean'] / n * 1024:.0f} KiB, CPU {f['cpu'] / n:.3f} s/hour, "
          f"exporter sockets {f['ours_mean'] / n:.2f}")
PY
}

# PgBouncer's server pool full (min_pool_size = default_pool_size = 20) and a few seconds old
# before the exporter connects, as a production pooler's would be. A server connection
# PgBouncer opens while a probe connects looks to the exporter like a backend started for that
# probe (connection.rs: backend_start within the probe's connect), so it treats the pooled
# backend as its own session: its ghost check then finds it "alive" for good and keeps the slot.
pgbouncer_warm() {
  local i servers=0
  # PgBouncer fills min_pool_size only while the pool has a client: one idle psql holds it.
  sleep 100000 | ip netns exec "$NS" psql -X -q -h 127.0.0.1 -p 6432 -U probe -d postgres >/dev/null 2>&1 &
  remember $!
  for i in $(seq 1 60); do
    servers=$(bash "$LABSH" psql "$LAB" -Atc "select count(*) from pg_stat_activity where usename = 'probe'")
    [ "$servers" -ge 20 ] && break
    sleep 1
  done
  log "pgbouncer: $servers server connections after ${i}s"
  sleep 5
}

watch() {
  [ $# -gt 0 ] || set -- 1000
  deps watch
  mkdir -p "$OUT"
  PGB_MAX_CLIENT_CONN=19000
  PGB_EXTRA="client_idle_timeout = $((3 * WATCH_T))
stats_users = probe"
  [ "$WARM_POOL" = 1 ] && PGB_EXTRA+="
min_pool_size = 20"
  if ip netns list | grep -qw "$NS"; then
    die "lab $LAB exists: LAB=$LAB OUT=$OUT bash $0 down first"
  fi
  lab_up "$WATCH_T"
  [ "$WARM_POOL" = 1 ] && pgbouncer_warm
  local host n extra
  host=$(cat "$OUT/lab_host")
  for n in "$@"; do
    WATCH_N=$n
    extra="    reap_ghosts: false\n    idle_range: {min: 1s, max: $((2 * WATCH_T))s}\n"
    [ "$WATCH_GUARD" -gt 0 ] && extra+="    app_max_idle_lifetime: ${WATCH_GUARD}s\n"
    write_ours_config "$n" "postgres://probe@$host:6432/postgres" "$OUT/ours-watch-$n.yaml" "$extra"
    log "N=$n: middlebox T=${WATCH_T}s, guard ${WATCH_GUARD}s; starting ours alone"
    local t_start
    t_start=$(date +%s)
    start_ours "$OUT/ours-watch-$n.yaml"
    sleep 1
    log "N=$n: discovery (until every target is watching, at most ${DISCOVERY_TIMEOUT}s)"
    watch_sampler discovery "$DISCOVERY_TIMEOUT" "$OUT/watch-$n.discovery.json"
    log "N=$n: settle ${SETTLE}s (/metrics scraped every ${INTERVAL}s)"
    echo "http://127.0.0.1:$OURS_PORT/metrics" > "$OUT/urls-ours"
    driver "$OUT/urls-ours" "$OUT/driver-watch-$n.log"
    local driver_pid=$!
    sleep "$SETTLE"
    kill "$driver_pid" 2>/dev/null || true
    log "N=$n: window ${WINDOW}s"
    watch_sampler window "$WINDOW" "$OUT/watch-$n.window.json"
    log "N=$n: timed scrapes"
    local sc scz
    sc=$(timed_scrapes "http://127.0.0.1:$OURS_PORT/metrics")
    scz=$(timed_scrapes "http://127.0.0.1:$OURS_PORT/metrics" "" -H "Accept-Encoding: gzip")
    python3 - "$OUT" "$n" "$sc" "$(( $(date +%s) - t_start ))" "$WATCH_T" "$WATCH_GUARD" "$INTERVAL" "$SETTLE" "$scz" <<'PY'
import json, sys, time
out, n, sc, took, t, guard, interval, settle, scz = sys.argv[1:]
r = {"discovery": json.load(open(f"{out}/watch-{n}.discovery.json")),
     "window": json.load(open(f"{out}/watch-{n}.window.json")), "timed_scrapes": sc, "timed_scrapes_gzip": scz,
     "run_s": int(took),
     "params": {"T": t, "guard": guard, "interval": interval, "settle": settle,
                "ended": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
json.dump(r, open(f"{out}/watch-{n}.json", "w"))
PY
    kill "$OURS_PID" 2>/dev/null || true
    watch_report | tee "$OUT/watch-$n.md"
    log "N=$n: took $(( $(date +%s) - t_start ))s; results in $OUT/watch-$n.md and .json"
    sleep 2
  done
}

cmd=${1:-}
[ -n "$cmd" ] || { sed -n '2,21p' "$0"; exit 2; }
shift
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
case $cmd in
  steady|drops|watch)
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ;;
esac
case $cmd in
  steady) steady "$@" ;;
  drops) drops ;;
  watch) watch "$@" ;;
  watch-report) for WATCH_N in "$@"; do watch_report; done ;;
  down) down ;;
  *) die "unknown command $cmd" ;;
esac
