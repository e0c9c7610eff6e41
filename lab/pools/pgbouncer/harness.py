#!/usr/bin/env python3
"""Pool-matrix harness for PgBouncer: PgBouncer holds the idle server connections.

client (a fresh `psql -c 'select 1'` per query) -> PgBouncer on 127.0.0.1 -> the box ->
PostgreSQL. The clients never cross the box; what must not happen is PgBouncer handing a
server connection the box has forgotten to a client. Reads one job (see ../README.md), prints
one result JSON on stdout, diagnostics on stderr. Python 3 standard library only.
"""
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

LIBRARY = "pgbouncer"
# Transaction pooling: the mode PgBouncer is mostly run in, and the one where a server
# connection goes back to the pool after every transaction, so the 8 queries of a round really
# share the warm server connections. (Session mode would also send server_reset_query, DISCARD
# ALL, on every release: one more round trip that can meet the dead connection first.)
POOL_MODE = "transaction"
# PgBouncer settings a recipe may set (PgBouncer 1.18 doc/config.md, src/main.c). Anything else
# is refused so that a misspelt key cannot pass by being ignored.
RECIPE_KEYS = {
    "server_idle_timeout", "server_lifetime", "server_check_delay", "server_check_query",
    "server_connect_timeout", "server_login_retry", "server_reset_query",
    "tcp_keepalive", "tcp_keepidle", "tcp_keepintvl", "tcp_keepcnt", "tcp_user_timeout",
    "query_timeout", "query_wait_timeout", "idle_transaction_timeout", "client_idle_timeout",
    "min_pool_size", "default_pool_size", "reserve_pool_size", "pool_mode",
}
RUN_AS = "postgres"  # PgBouncer refuses to run as root


def log(msg):
    print(f"pgbouncer-harness: {msg}", file=sys.stderr, flush=True)


def version():
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "pgbouncer"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ini_value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value)
    if "\n" in text:
        raise ValueError("a setting value cannot span lines")
    return text


def write_config(tmp, job, port):
    dsn = job["dsn"]
    settings = {
        "listen_addr": "127.0.0.1", "listen_port": port, "unix_socket_dir": "",
        "auth_type": "trust", "auth_file": os.path.join(tmp, "userlist.txt"),
        "admin_users": dsn["user"], "pool_mode": POOL_MODE, "max_client_conn": 200,
        "logfile": "", "pidfile": "",
    }
    if job.get("pool"):
        settings["min_pool_size"] = job["pool"]["min"]
        settings["default_pool_size"] = job["pool"]["max"]
    for key, value in (job.get("recipe") or {}).items():
        if key not in RECIPE_KEYS:
            raise ValueError(f"unknown recipe key for {LIBRARY}: {key}")
        settings[key] = value
    lines = ["[databases]",
             f"{dsn['dbname']} = host={dsn['host']} port={dsn['port']} dbname={dsn['dbname']} user={dsn['user']}",
             "[pgbouncer]"]
    lines += [f"{k} = {ini_value(v)}" for k, v in settings.items()]
    ini = os.path.join(tmp, "pgbouncer.ini")
    # The auth file gives clients (trust) their user and gives PgBouncer the password it logs in
    # to the server with. Only the postgres user can read either file.
    secret = '"{}" "{}"\n'.format(dsn["user"], dsn["password"].replace('"', '""'))
    owner = pwd.getpwnam(RUN_AS)
    for path, text in ((ini, "\n".join(lines) + "\n"), (settings["auth_file"], secret)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchown(fd, owner.pw_uid, owner.pw_gid)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return ini


def psql(port, dbname, user, sql, timed=False):
    """A client process: `psql -X -At -c SQL` against PgBouncer; `timed` adds psql's own timing
    of the query (`Time: … ms`), which leaves out starting psql and its local connection."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    timing = ["-q", "-c", "\\timing on"] if timed else []
    return subprocess.Popen(
        ["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", dbname, *timing, "-c", sql],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def admin(port, user, sql, timeout=5):
    proc = psql(port, "pgbouncer", user, sql)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    return out if proc.returncode == 0 else None


def server_count(port, user, dbname):
    out = admin(port, user, "SHOW SERVERS")
    if out is None:
        return -1
    # SHOW SERVERS columns: type|user|database|state|...
    return sum(1 for row in out.splitlines() if row.split("|")[2:3] == [dbname])


def query_seconds(line):
    """`Time: 1.234 ms` (psql prints longer times as `Time: 1234.5 ms (00:01.235)`)."""
    return float(line.split()[1]) / 1000.0


def first_error_line(stderr, password):
    # psql's first two lines say what happened; the rest is its generic advice.
    lines = [l.strip() for l in stderr.splitlines() if l.strip()][:2]
    text = " / ".join(lines) or "psql failed with no message"
    if password:
        text = text.replace(password, "***")
    return text[:200]


def run_queries(port, job, count):
    """`count` concurrent fresh psql clients; those unfinished after hang_seconds are hung and
    are left running (abandoned, as the application's request would still be waiting)."""
    dsn, hang = job["dsn"], job["hang_seconds"]
    start = time.monotonic()
    procs = [psql(port, dsn["dbname"], dsn["user"], "select 1", timed=True) for _ in range(count)]
    done = {}
    while len(done) < count and time.monotonic() - start < hang:
        for i, p in enumerate(procs):
            if i not in done and p.poll() is not None:
                done[i] = time.monotonic() - start
        time.sleep(0.005)
    ok, errors, latencies, hung = 0, [], [], []
    for i, p in enumerate(procs):
        if i not in done:
            hung.append(p)
            continue
        out, err = p.communicate()
        lines = out.split("\n")
        if p.returncode == 0 and "1" in lines:
            ok += 1
            # The query's own time: a fresh psql process per request would otherwise count
            # process start-up on a loaded machine (seconds, nothing to do with the pool).
            timed = [l for l in lines if l.startswith("Time: ")]
            latencies.append(query_seconds(timed[0]) if timed else done[i])
        else:
            errors.append(first_error_line(err or out, dsn["password"]))
    return ok, errors, latencies, hung


def wait_ready(port, user, proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if admin(port, user, "SHOW VERSION", timeout=2) is not None:
            return True
        time.sleep(0.1)
    return False


def start_pgbouncer(tmp, job):
    """Starts PgBouncer as the postgres user on a free port; retries if the port was taken."""
    user = job["dsn"]["user"]
    for attempt in range(3):
        port = free_port()
        ini = write_config(tmp, job, port)
        logf = open(os.path.join(tmp, "pgbouncer.log"), "a")
        proc = subprocess.Popen(["pgbouncer", ini], user=RUN_AS, stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, cwd=tmp)
        if wait_ready(port, user, proc, time.monotonic() + 10):
            return proc, port
        stop(proc)
    raise RuntimeError("PgBouncer did not start: " + tail_log(tmp))


def tail_log(tmp, n=15):
    try:
        with open(os.path.join(tmp, "pgbouncer.log")) as f:
            return " | ".join(f.read().splitlines()[-n:])
    except OSError:
        return ""


def stop(proc):
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: PgBouncer's immediate shutdown
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def warm(port, job):
    """Makes sure `pool.min` (or 1) server connections exist. PgBouncer 1.18 only tops a pool up
    to min_pool_size while a client is connected (janitor.c check_pool_size), so one client
    stays connected meanwhile; the concurrent selects open the first connection."""
    dsn = job["dsn"]
    want = (job.get("pool") or {}).get("min") or 1
    holder = subprocess.Popen(
        ["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", dsn["user"], "-d", dsn["dbname"]],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")})
    try:
        ok, errors, _, hung = run_queries(port, job, want)
        if ok != want:
            raise RuntimeError(f"warm-up queries failed: {errors or 'hung'}")
        # min_pool_size is filled one connection per janitor pass (3 a second): 10 s is plenty,
        # and keeps the whole run inside the contract's time bound.
        deadline = time.monotonic() + 10
        while (count := server_count(port, dsn["user"], dsn["dbname"])) < want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count}/{want} server connections after warm-up")
            time.sleep(0.2)
        log(f"warm: {count} server connections")
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=5)
        except subprocess.TimeoutExpired:
            holder.kill()


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    result = {"library": LIBRARY, "version": version(), "rounds": []}
    tmp = tempfile.mkdtemp(prefix="nb-pgbouncer-")
    pg = pwd.getpwnam(RUN_AS)
    os.chown(tmp, pg.pw_uid, pg.pw_gid)
    os.chmod(tmp, 0o700)
    proc, abandoned = None, []
    try:
        proc, port = start_pgbouncer(tmp, job)
        warm(port, job)
        for rnd in job["rounds"]:
            time.sleep(rnd["idle_seconds"])
            ok, errors, latencies, hung = run_queries(port, job, rnd["queries"])
            abandoned += hung
            summary = {"idle_seconds": rnd["idle_seconds"], "ok": ok, "failed": len(errors),
                       "hung": len(hung),
                       "max_latency_seconds": round(max(latencies), 4) if latencies else None,
                       "errors": sorted(set(errors))}
            log(f"round: {json.dumps(summary)}; servers now {server_count(port, job['dsn']['user'], job['dsn']['dbname'])}")
            result["rounds"].append(summary)
        return result, 0
    except Exception as e:  # report, do not hang: one JSON on stdout whatever happened
        msg = str(e).replace(job["dsn"]["password"], "***")[:200]
        log(msg)
        result["error"] = msg
        return result, 1
    finally:
        for p in abandoned:
            p.kill()
            p.wait()
        if proc:
            stop(proc)
            if os.environ.get("NB_PGBOUNCER_LOG"):
                log("pgbouncer log: " + tail_log(tmp, 60))
        shutil.rmtree(tmp, ignore_errors=True)  # it holds the password


if __name__ == "__main__":
    res, code = main()
    print(json.dumps(res), flush=True)
    sys.exit(code)
