#!/usr/bin/env python3
"""Time to an answer, end to end, against real PostgreSQL behind real dropping boxes.

Measures, for each box kind and threshold T (one lab per box and T, all boxes at once, the runs
inside one box one after another so the server's session count is theirs alone):

- `discover`: the real command as a user runs it (defaults, budget 8), from its start to its
  report on stdout (the keepalive verdict included) and to its exit;
- `discover-nokc`: the same with `--keepalive-check false`;
- `daemon`: the exporter with a one-target configuration, from its start to the first scrape
  of /metrics showing `idle_drop_discovery_state{state="watching"} 1` (scraped every 100 ms);
- `daemon-guard`: the same with a guard (`app_max_idle_lifetime` = 0.75 x T, as scripts/demo.sh;
  --guard sets the fraction).

Boxes (as lab/pools/matrix.py builds them): `silent` and `reset` are `lab/lab.sh` labs (conntrack
drops or resets flows idle T); `fin` and `proxy` are `idle_drop_exporter simulate --mode fin` and
`--mode silent` in front of a lab that never drops (T = 1 day).

The peak session count is what the server lists for the probe role (`pg_stat_activity`, sampled
every 250 ms through one psql session per lab over its unix socket), during the run; sessions a
run leaves behind (ghosts nobody may reap) are terminated before the next run starts.

`--profile demo` gives every run scripts/demo.sh's target settings instead of the defaults;
`--budget` and `--guard` change the budget and the guard's lifetime; `--report OUT` reprints the
table of an earlier run.

Needs root (lab/lab.sh). Writes every run as a JSON line (`runs.jsonl`) and the table
(`table.md`) to --out, and prints the table. Labs are named PREFIX + box + T (e.g. bhsil20; lab.sh
takes at most 8 characters, so its veth names stay within Linux's 15).

  sudo python3 scripts/bench-discovery.py --binary target/release/idle_drop_exporter \\
      --boxes silent,reset,fin,proxy --thresholds 5,8,13,20,40,120 --repeats 3 --repeats-at 120=1
"""

import argparse
import json
import pathlib
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAB = ROOT / "lab" / "lab.sh"
BOXES = ("silent", "reset", "fin", "proxy")
KINDS = ("discover", "discover-nokc", "daemon", "daemon-guard")
SAMPLE_SECONDS = 0.25
SCRAPE_SECONDS = 0.1
COUNT_SQL = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
             "AND (usename = 'probe' OR application_name LIKE 'idle_drop_exporter%');")
TERMINATE_SQL = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 "WHERE backend_type = 'client backend' AND usename = 'probe';")
# `demo` is scripts/demo.sh's target; `defaults` leaves every setting at its default;
# `timeouts-2s` shortens only the query and TCP user timeouts (what a death behind a proxy costs).
PROFILES = {
    "defaults": {"discover": [], "yaml": []},
    "demo": {
        "discover": ["--query-timeout", "5s", "--tcp-user-timeout", "3s", "--range-max", "10m"],
        "yaml": ["query_timeout: 5s", "tcp_user_timeout: 3s", "idle_range: {min: 1s, max: 10m}"],
    },
    "timeouts-2s": {
        "discover": ["--query-timeout", "2s", "--tcp-user-timeout", "2s"],
        "yaml": ["query_timeout: 2s", "tcp_user_timeout: 2s"],
    },
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab(*args):
    out = subprocess.run(["bash", str(LAB), *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"lab.sh {' '.join(args[:2])} exited {out.returncode}: {out.stderr.strip()[-300:]}")
    return out.stdout


def parse_env(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class Sessions:
    """The server's session count for the probe role, sampled by one psql session."""

    def __init__(self, socket_dir):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-h", socket_dir, "-p", "5432", "-U", "postgres", "-d", "postgres"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lock = threading.Lock()
        self.peak = 0
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def query(self, sql):
        with self.lock:
            self.proc.stdin.write(sql + "\n")
            self.proc.stdin.flush()
            return int(self.proc.stdout.readline())

    def _sample(self):
        while self.running:
            try:
                count = self.query(COUNT_SQL)
            except (OSError, ValueError):  # psql gone: the peak says so rather than freezing
                self.peak = None
                return
            self.peak = None if self.peak is None else max(self.peak, count)
            time.sleep(SAMPLE_SECONDS)

    def reset(self):
        """Terminates what a run left, then starts a new peak."""
        self.query(TERMINATE_SQL)
        deadline = time.time() + 10
        while self.query(COUNT_SQL) and time.time() < deadline:
            time.sleep(0.2)
        self.peak = 0

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        self.proc.stdin.close()
        self.proc.wait(timeout=5)


class Box:
    """One box at one T: a lab, and for fin/proxy the simulator in front of it."""

    def __init__(self, binary, prefix, kind, threshold):
        self.binary, self.kind, self.threshold = binary, kind, threshold
        self.lab = f"{prefix}{kind[:3]}{threshold}"
        self.simulator = None

    def up(self):
        mode, lab_t = (self.kind, self.threshold) if self.kind in ("silent", "reset") else ("silent", 86400)
        self.env = parse_env(lab("up", self.lab, "--mode", mode, "--timeout", str(lab_t)))
        self.host, self.port = self.env["LAB_HOST"], 5432
        if self.kind in ("fin", "proxy"):
            self.port = free_port()
            self.simulator = subprocess.Popen(
                [self.binary, "simulate", "--listen", f"127.0.0.1:{self.port}",
                 "--upstream", f"{self.env['LAB_HOST']}:5432", "--idle-timeout", f"{self.threshold}s",
                 "--mode", "fin" if self.kind == "fin" else "silent", "--max-flows", "4096",
                 "--log.level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.host = "127.0.0.1"
            wait_listening(self.port, 10)
        self.sessions = Sessions(self.env["LAB_SOCKET_DIR"])
        return self

    def dsn(self):
        return f"postgres://probe@{self.host}:{self.port}/postgres"

    def down(self):
        if getattr(self, "sessions", None):
            self.sessions.close()
        if self.simulator:
            self.simulator.terminate()
            self.simulator.wait(timeout=10)
        subprocess.run(["bash", str(LAB), "down", self.lab], capture_output=True, check=False)


def wait_listening(port, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def run_discover(box, profile, budget, keepalive_check, limit, work):
    cmd = [box.binary, "discover", "--dsn", box.dsn(), "--password-file", box.env["LAB_PASSWORD_FILE"],
           "--sslmode", "disable", "--budget", str(budget), "--json", *PROFILES[profile]["discover"]]
    if not keepalive_check:
        cmd += ["--keepalive-check", "false"]
    err = work / f"{box.lab}-discover.err"
    start = time.monotonic()
    with err.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    first = {}

    def read_stdout():
        chunks = []
        while chunk := proc.stdout.read(1):
            first.setdefault("at", time.monotonic() - start)
            chunks.append(chunk + proc.stdout.read())
        first["text"] = "".join(chunks)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {"seconds": None, "error": f"no exit within {limit:.0f} s"}
    exited = time.monotonic() - start
    reader.join(timeout=5)
    if proc.returncode != 0:
        return {"seconds": None, "error": f"exit {proc.returncode}: {err.read_text()[-300:]}"}
    try:
        report = json.loads(first.get("text") or "")
    except ValueError:
        return {"seconds": None, "error": "no JSON report on stdout"}
    return {"seconds": first.get("at", exited), "exit_seconds": exited, "report": summary(report, box.threshold)}


def summary(report, threshold):
    """The parts of discover's JSON report the table needs (never a DSN or password)."""
    keys = ("outcome", "elapsed_seconds", "sessions_peak", "lower_bound_seconds", "upper_bound_seconds",
            "box_counts")
    out = {k: report[k] for k in keys if k in report}
    out["drop"] = (report.get("drop") or {}).get("kind")
    lower, upper = out.get("lower_bound_seconds"), out.get("upper_bound_seconds")
    out["contains_T"] = lower is not None and lower <= threshold and (upper is None or threshold <= upper)
    return out


def daemon_config(box, profile, guard, budget, port, path):
    """`guard`: the guard's lifetime as a fraction of T, or None for no guard."""
    lines = [f"listen_address: 127.0.0.1:{port}", "targets:", "  - name: bench",
             f"    dsn: \"{box.dsn()}\"", f"    password_file: {box.env['LAB_PASSWORD_FILE']}",
             "    sslmode: disable", f"    max_connections: {budget}"]
    lines += [f"    {line}" for line in PROFILES[profile]["yaml"]]
    if guard is not None:
        lines.append(f"    app_max_idle_lifetime: {round(box.threshold * guard * 1000)}ms")
    path.write_text("\n".join(lines) + "\n")


def run_daemon(box, args, guard, limit, work):
    port = free_port()
    config = work / f"{box.lab}-{'plain' if guard is None else 'guard'}.yaml"
    daemon_config(box, args.profile, guard, args.budget, port, config)
    log = (work / f"{box.lab}-daemon.log").open("a")
    start = time.monotonic()
    proc = subprocess.Popen([box.binary, "--config", str(config)], stdout=log, stderr=log)
    try:
        seconds = watching_after(port, start, limit, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    if seconds is None:
        return {"seconds": None, "error": f"not watching within {limit:.0f} s (or exited)"}
    return {"seconds": seconds}


def watching_after(port, start, limit, proc):
    url = f"http://127.0.0.1:{port}/metrics"
    while time.monotonic() - start < limit and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            text = ""
        at = time.monotonic() - start
        for line in text.splitlines():
            if line.startswith("idle_drop_discovery_state{") and 'state="watching"' in line \
                    and line.rstrip().endswith(" 1"):
                return at
        time.sleep(SCRAPE_SECONDS)
    return None


def run_one(box, kind, args, work):
    limit = 12 * box.threshold + 180
    box.sessions.reset()
    if kind.startswith("discover"):
        result = run_discover(box, args.profile, args.budget, kind == "discover", limit, work)
    else:
        result = run_daemon(box, args, args.guard if kind == "daemon-guard" else None, limit, work)
    time.sleep(2 * SAMPLE_SECONDS)
    result.update(box=box.kind, T=box.threshold, kind=kind, peak_sessions=box.sessions.peak)
    return result


def run_box(kind, threshold, args, work, out, lock):
    box = Box(args.binary, args.lab_prefix, kind, threshold)
    try:
        box.up()
        for rep in range(args.repeats_at.get(threshold, args.repeats)):
            for run_kind in args.runs:
                result = run_one(box, run_kind, args, work)
                result["rep"] = rep + 1
                with lock:
                    out.write(json.dumps(result) + "\n")
                    out.flush()
                    print(f"{kind} T={threshold} {run_kind} #{rep + 1}: {fmt_seconds(result)}", file=sys.stderr)
    except Exception as error:  # noqa: BLE001 (one box failing must not stop the others)
        print(f"{kind} T={threshold}: {error}", file=sys.stderr)
        with lock:
            out.write(json.dumps({"box": kind, "T": threshold, "error": str(error)}) + "\n")
    finally:
        box.down()


def fmt_seconds(result):
    if result.get("seconds") is None:
        return result.get("error", "no result")
    return f"{result['seconds']:.1f} s ({result['seconds'] / result['T']:.2f}×T), peak {result['peak_sessions']}"


def cell(results, threshold):
    times = [r["seconds"] for r in results if r.get("seconds") is not None]
    failed = len(results) - len(times)
    if not times:
        return f"failed ({failed})" if failed else "–"
    median, worst = statistics.median(times), max(times)
    text = f"{median:.1f} s **{median / threshold:.2f}** / {worst:.1f} s {worst / threshold:.2f}"
    peaks = [r["peak_sessions"] for r in results]
    text += f" · n={len(times)} · peak {'?' if None in peaks else max(peaks)}"
    return text + (f" · {failed} failed" if failed else "")


def table(results, kinds):
    rows = ["| box | T | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    keys = sorted({(r["box"], r["T"]) for r in results}, key=lambda k: (BOXES.index(k[0]), k[1]))
    for box, threshold in keys:
        mine = [r for r in results if r["box"] == box and r["T"] == threshold and "kind" in r]
        cells = [cell([r for r in mine if r["kind"] == k], threshold) for k in kinds]
        rows.append(f"| {box} | {threshold} s | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "idle_drop_exporter"))
    parser.add_argument("--boxes", default=",".join(BOXES))
    parser.add_argument("--thresholds", default="5,8,13,20,40,120", help="T in whole seconds")
    parser.add_argument("--runs", default=",".join(KINDS), help="of " + ", ".join(KINDS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeats-at", default="", help="per-T repetitions, e.g. 120=1,40=2")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="defaults")
    parser.add_argument("--budget", type=int, default=8, help="max_connections (discover --budget)")
    parser.add_argument("--guard", type=float, default=0.75,
                        help="daemon-guard's app_max_idle_lifetime as a fraction of T (scripts/demo.sh: 0.75)")
    parser.add_argument("--lab-prefix", default="bh", help="lab names are this + box + T (at most 8 characters)")
    parser.add_argument("--jobs", type=int, default=24, help="boxes measured at once")
    parser.add_argument("--out", default="/tmp/bench-discovery")
    parser.add_argument("--report", help="only print the table of an earlier --out")
    args = parser.parse_args()
    args.boxes = [b for b in args.boxes.split(",") if b]
    args.runs = [k for k in args.runs.split(",") if k]
    args.thresholds = [int(t) for t in args.thresholds.split(",") if t]
    args.repeats_at = {int(k): int(v) for k, v in (p.split("=") for p in args.repeats_at.split(",") if p)}
    unknown = [b for b in args.boxes if b not in BOXES] + [k for k in args.runs if k not in KINDS]
    if unknown:
        parser.error(f"unknown box or run {unknown}")
    if len(f"{args.lab_prefix}sil{max(args.thresholds)}") > 8:
        parser.error("lab names are prefix + box + T, at most 8 characters (lab.sh): shorten --lab-prefix")
    return args


def main():
    args = parse_args()
    out_dir = pathlib.Path(args.report or args.out)
    if not args.report:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock, gate, threads = threading.Lock(), threading.Semaphore(args.jobs), []
        with (out_dir / "runs.jsonl").open("a") as out:
            def gated(kind, threshold):
                with gate:
                    run_box(kind, threshold, args, out_dir, out, lock)
            for threshold in sorted(args.thresholds, reverse=True):
                for kind in args.boxes:
                    threads.append(threading.Thread(target=gated, args=(kind, threshold)))
                    threads[-1].start()
                    time.sleep(1)
            for thread in threads:
                thread.join()
    results = [json.loads(line) for line in (out_dir / "runs.jsonl").read_text().splitlines() if line]
    kinds = [k for k in KINDS if any(r.get("kind") == k for r in results)]
    text = table(results, kinds)
    (out_dir / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
