#!/usr/bin/env bash
# The test lab: PostgreSQL in a network namespace behind a Linux conntrack "middlebox" that
# forgets idle TCP flows after T seconds, as RDS, NAT gateways and load balancers do.
#
#   lab.sh up NAME --mode silent|reset|server --timeout T [--max-connections N] [--tls]
#                  [--auth scram-sha-256|md5|password]   (how the probe role authenticates)
#   lab.sh set-timeout NAME T | env NAME | status NAME | psql NAME [psql args]
#   lab.sh restart-postgres NAME [--clock-offset OFFSET]   (e.g. +3h, -3h: libfaketime skews the
#                  server's clock, as a database host whose clock is wrong)
#   lab.sh link-down NAME | link-up NAME | down NAME | down-all | deps
#
# Traffic stays on this machine: the namespace is reached over a veth pair with addresses from
# 198.51.100.0/24 (TEST-NET-2). Nothing in the root namespace changes but that veth end.
set -euo pipefail

STATE_ROOT=/tmp/idle-drop-lab
log() { echo "lab: $*" >&2; }
die() { echo "lab: error: $*" >&2; exit 1; }

pg_bin() {
  local dir
  # An unmatched glob stays literal and fails the -x test below.
  dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1 || true)
  if ! { [ -n "$dir" ] && [ -x "$dir/postgres" ]; }; then
    die "no PostgreSQL server found: run 'lab.sh deps' (apt-get install postgresql)"
  fi
  echo "$dir"
}

deps() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  command -v nft >/dev/null || missing+=(nftables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v sysctl >/dev/null || missing+=(procps)
  command -v psql >/dev/null || missing+=(postgresql-client)
  [ -n "$(faketime_lib)" ] || missing+=(libfaketime)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Debian's package may start a cluster of its own; the lab does not use it.
}

faketime_lib() {
  local lib
  for lib in /usr/lib/*/faketime/libfaketime.so.1; do
    [ -e "$lib" ] && { echo "$lib"; return; }
  done
}

# Restarts the server; with --clock-offset, under libfaketime, so every clock the server reads
# for wall time (now(), pg_stat_activity's timestamps) is off by OFFSET. The monotonic clock
# stays true: only the host's wall clock is wrong, as on a database host whose NTP is broken.
restart_postgres() {
  local name=$1 offset=
  shift
  case ${1:-} in
    --clock-offset) offset=${2:?--clock-offset needs a value like +3h} ;;
    '') ;;
    *) die "restart-postgres: unknown option $1" ;;
  esac
  if [ -n "$offset" ]; then
    local lib
    lib=$(faketime_lib)
    [ -n "$lib" ] || die "libfaketime is missing: run 'lab.sh deps'"
    LD_PRELOAD=$lib FAKETIME=$offset DONT_FAKE_MONOTONIC=1 \
      pg_ctl_as_postgres "$name" -m fast -w restart -l "$(dir "$name")/postgres.log" >/dev/null
  else
    pg_ctl_as_postgres "$name" -m fast -w restart -l "$(dir "$name")/postgres.log" >/dev/null
  fi
}

check_name() {
  [[ "$1" =~ ^[a-z0-9]{1,8}$ ]] || die "NAME must be 1-8 characters of a-z 0-9 (interface names are limited to 15)"
}

ns() { echo "idl-$1"; }
dir() { echo "$STATE_ROOT/$1"; }
in_ns() { local name=$1; shift; ip netns exec "$(ns "$name")" "$@"; }

# Each instance gets a /30 out of 198.51.100.0/24: index i -> .4i+1 (host side), .4i+2 (namespace).
free_index() {
  local i
  for i in $(seq 1 62); do
    if ! grep -qsx "$i" "$STATE_ROOT"/*/index; then echo "$i"; return; fi
  done
  die "no free lab address left"
}

apply_middlebox() {
  local name=$1 mode=$2 timeout=$3
  local established=$timeout
  [ "$mode" = server ] && established=432000
  in_ns "$name" sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0
  in_ns "$name" sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_established="$established"
  local invalid_in="drop"
  [ "$mode" = reset ] && invalid_in="reject with tcp reset"
  in_ns "$name" nft -f - <<NFT
table inet middlebox
delete table inet middlebox
table inet middlebox {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "lo" accept
    ct state invalid $invalid_in
  }
  chain output {
    type filter hook output priority 0; policy accept;
    oifname "lo" accept
    # Our own resets answer packets of forgotten flows: they are "invalid" too, let them out.
    tcp flags rst accept
    ct state invalid drop
  }
}
NFT
}

pg_ctl_as_postgres() {
  local name=$1; shift
  in_ns "$name" runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$(dir "$name")/data" "$@"
}

start_postgres() {
  local name=$1 d
  d=$(dir "$name")
  local address max
  address=$(cat "$d/address"); max=$(cat "$d/max_connections")
  pg_ctl_as_postgres "$name" -w -t 30 -l "$d/postgres.log" \
    -o "-c listen_addresses=$address -c port=5432 -c unix_socket_directories=$d -c max_connections=$max -c log_connections=off" \
    start >/dev/null
}

superuser_sql() {
  local name=$1; shift
  psql -X -q -h "$(dir "$name")" -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
}

print_env() {
  local name=$1 d
  d=$(dir "$name")
  [ -f "$d/address" ] || die "no lab named $name"
  local address; address=$(cat "$d/address")
  cat <<ENV
LAB_NAME=$name
LAB_HOST=$address
LAB_PORT=5432
LAB_USER=probe
LAB_PASSWORD_FILE=$d/password
LAB_DSN=postgres://probe@$address:5432/postgres
LAB_SOCKET_DIR=$d
LAB_MODE=$(cat "$d/mode")
LAB_TIMEOUT=$(cat "$d/timeout")
ENV
  if [ -f "$d/ca.crt" ]; then
    echo "LAB_CA_FILE=$d/ca.crt"
    echo "LAB_WRONG_CA_FILE=$d/wrong-ca.crt"
    echo "LAB_TLS_NAME=db.lab.invalid"
  fi
}

# A test CA, a server certificate for the name db.lab.invalid only (so connecting by address
# passes verify-ca but fails verify-full), and an unrelated CA for the wrong-CA case.
make_certificates() {
  local d=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=idle-drop lab CA" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=unrelated CA" \
    -keyout "$d/wrong-ca.key" -out "$d/wrong-ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=db.lab.invalid" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:db.lab.invalid\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > "$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
  chown postgres "$d/server.key" "$d/server.crt"
  chmod 600 "$d/server.key"
  chmod 644 "$d/ca.crt" "$d/wrong-ca.crt"
}

up() {
  local name=$1; shift
  check_name "$name"
  local mode=silent timeout=30 max=50 tls=no auth=scram-sha-256
  while [ $# -gt 0 ]; do
    case $1 in
      --mode) mode=$2; shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      --max-connections) max=$2; shift 2 ;;
      --tls) tls=yes; shift ;;
      --auth) auth=$2; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  case $mode in silent|reset|server) ;; *) die "--mode must be silent, reset or server" ;; esac
  # password: the server asks for the password in clear text (pg_hba's `password` method).
  case $auth in scram-sha-256|md5|password) ;; *) die "--auth must be scram-sha-256, md5 or password" ;; esac
  if ! { [[ "$timeout" =~ ^[0-9]+$ ]] && [ "$timeout" -gt 0 ]; }; then
    die "--timeout must be whole seconds > 0"
  fi
  [ "$(id -u)" = 0 ] || die "the lab needs root (network namespaces)"
  down "$name" 2>/dev/null || true
  # From here on everything under this name is ours: if any step fails (set -e, die) or we are
  # interrupted, take it all down again instead of leaving a namespace, veth or postgres behind.
  up_cleanup_name=$name
  trap up_failed EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  mkdir -p "$STATE_ROOT"
  chmod 755 "$STATE_ROOT"
  local d index host_ip ns_ip
  d=$(dir "$name")
  mkdir -p "$d"
  # Labs are brought up in parallel by the tests: pick and claim an address under a lock.
  exec 9>"$STATE_ROOT/.lock"
  flock 9
  index=$(free_index)
  echo "$index" > "$d/index"
  flock -u 9
  exec 9>&-
  host_ip="198.51.100.$((index * 4 + 1))"
  ns_ip="198.51.100.$((index * 4 + 2))"
  echo "$ns_ip" > "$d/address"
  echo "$mode" > "$d/mode"
  echo "$timeout" > "$d/timeout"
  echo "$max" > "$d/max_connections"

  ip netns add "$(ns "$name")"
  ip link add "idl-$name-h" type veth peer name "idl-$name-n"
  ip link set "idl-$name-n" netns "$(ns "$name")"
  ip addr add "$host_ip/30" dev "idl-$name-h"
  ip link set "idl-$name-h" up
  in_ns "$name" ip addr add "$ns_ip/30" dev "idl-$name-n"
  in_ns "$name" ip link set "idl-$name-n" up
  in_ns "$name" ip link set lo up
  apply_middlebox "$name" "$mode" "$timeout"

  chown postgres "$d"
  runuser -u postgres -- "$(pg_bin)/initdb" -D "$d/data" -A trust -U postgres >/dev/null
  local client_rule=host
  if [ "$tls" = yes ]; then
    make_certificates "$d"
    client_rule=hostssl
    {
      echo "ssl = on"
      echo "ssl_cert_file = '$d/server.crt'"
      echo "ssl_key_file = '$d/server.key'"
    } >> "$d/data/postgresql.conf"
  fi
  {
    echo "$client_rule all probe $host_ip/32 $auth"
    echo "host all postgres $host_ip/32 reject"
    echo "local all all trust"
  } > "$d/data/pg_hba.conf"
  start_postgres "$name"
  local password
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' )
  printf '%s\n' "$password" > "$d/password"
  chmod 644 "$d/password"
  superuser_sql "$name" -c "CREATE ROLE probe LOGIN PASSWORD '$password'" >/dev/null
  if [ "$mode" = server ]; then
    superuser_sql "$name" -c "ALTER ROLE probe SET idle_session_timeout = '${timeout}s'" >/dev/null
  fi
  log "$name up: $mode, T=${timeout}s, postgres at $ns_ip:5432"
  print_env "$name"
  trap - EXIT INT TERM
}

# EXIT trap of a failed `up`: runs down for its name; the shell still exits with the failure's status.
up_failed() {
  local rc=$?
  [ "$rc" -ne 0 ] || return 0
  log "up $up_cleanup_name failed (exit status $rc): removing what it created"
  down "$up_cleanup_name" 2>/dev/null || true
}

set_timeout() {
  local name=$1 timeout=$2 d
  d=$(dir "$name")
  [ -f "$d/mode" ] || die "no lab named $name"
  if ! { [[ "$timeout" =~ ^[0-9]+$ ]] && [ "$timeout" -gt 0 ]; }; then
    die "timeout must be whole seconds > 0"
  fi
  echo "$timeout" > "$d/timeout"
  if [ "$(cat "$d/mode")" = server ]; then
    superuser_sql "$name" -c "ALTER ROLE probe SET idle_session_timeout = '${timeout}s'" >/dev/null
  else
    in_ns "$name" sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_established="$timeout"
  fi
  log "$name: T=${timeout}s"
}

status() {
  local name=$1 d
  d=$(dir "$name")
  print_env "$name"
  echo "CONNTRACK_ENTRIES=$(in_ns "$name" conntrack -C 2>/dev/null || echo '?')"
  echo "EXPORTER_SESSIONS=$(superuser_sql "$name" -Atc "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'idle_drop_exporter%'")"
}

down() {
  local name=$1 d
  d=$(dir "$name")
  if [ -d "$d/data" ] && ip netns list | grep -qw "$(ns "$name")"; then
    pg_ctl_as_postgres "$name" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -f "$d/data/postmaster.pid" ]; then
    kill -9 "$(head -n 1 "$d/data/postmaster.pid")" 2>/dev/null || true
  fi
  ip link del "idl-$name-h" 2>/dev/null || true
  ip netns del "$(ns "$name")" 2>/dev/null || true
  rm -rf "$d"
}

down_all() {
  local d
  for d in "$STATE_ROOT"/*/; do
    [ -d "$d" ] && down "$(basename "$d")"
  done
  local n
  for n in $(ip netns list | awk '{print $1}' | grep '^idl-' || true); do
    ip netns del "$n" 2>/dev/null || true
  done
}

cmd=${1:-}
[ -n "$cmd" ] || { sed -n '2,11p' "$0"; exit 2; }
shift
case $cmd in
  deps) deps ;;
  up) up "$@" ;;
  set-timeout) set_timeout "$@" ;;
  env) print_env "$@" ;;
  status) status "$@" ;;
  psql) name=$1; shift; superuser_sql "$name" "$@" ;;
  restart-postgres) restart_postgres "$@" ;;
  link-down) ip link set "idl-$1-h" down ;;
  link-up) ip link set "idl-$1-h" up ;;
  down) down "$@" ;;
  down-all) down_all ;;
  *) die "unknown command $cmd" ;;
esac
