#!/usr/bin/env python3
"""The pool matrix: every recipe idle_drop_exporter prints, run against the real library behind
each kind of dropping box (lab/pools/README.md).

For each box it runs `discover` (the real binary), takes the recipes the report printed, and
those `recipes --box unknown` prints for the same measurement (what a path whose keepalive
verdict is unknown gets). Then, for each library, three kinds of cell run in parallel:

  defaults   a pool that keeps 4 connections warm, library defaults: must show the problem
             (a failed, hung or stalled request) in at least one box, or the harness cannot see
             what the recipe is for;
  bare       the library's bare defaults: recorded only (pg.Pool closes idle clients itself), so
             run only with --record;
  recipe     the same warm pool with the recipe: 0 failed, 0 hung, and every request within
             the recipe's stated bound, in every round.

Claims in src/recipes/proven.json must all hold; `--record` rewrites that file and
docs/recipes.md from a run. Root, Debian; installs each harness first (their install.sh).

  python3 lab/pools/matrix.py [--record] [--threshold 8] [--second-threshold 20] [--only asyncpg,pgx]

Every box runs at --threshold; silent and proxy also at --second-threshold (0: off), as the
instances "silent@20" and "proxy@20". A recipe counts as proven behind a box only if it passed
at every threshold that box ran at.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import pathlib
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
LAB = REPO / "lab" / "lab.sh"
PROVEN = REPO / "src" / "recipes" / "proven.json"
DOC = REPO / "docs" / "recipes.md"

# Which harness folder runs which library (the ids of src/recipes/pools.rs).
FAMILIES = {
    "python": ["sqlalchemy", "psycopg_pool", "asyncpg", "libpq", "asyncpg_031", "sqlalchemy_asyncpg",
               "django", "django_pool"],
    "rust": ["deadpool", "sqlx", "bb8", "diesel"],
    "go": ["pgx"],
    "gosql": ["database_sql"],
    "java": ["hikaricp", "hikaricp_spring", "pgjdbc"],
    "node": ["node-postgres", "postgres-js", "postgres-js-3", "knex", "sequelize", "typeorm", "prisma-adapter-pg"],
    "pgbouncer": ["pgbouncer"],
    "ruby": ["rails"],
    "quaint": ["quaint_prisma", "quaint_bare"],
}
BOXES = ["silent", "reset", "fin", "proxy", "server"]
# A second threshold, on the two boxes that matter most, shows the recipes scale with T.
SECOND_BOXES = ["silent", "proxy"]
WARM = {"min": 4, "max": 4}
QUERIES = 8
HANG_SECONDS = 15
# Each harness run starts after a random pause of up to this (see run_job).
START_SPREAD_SECONDS = 5.0
# Bounded everything: a lab holds the ghosts of every silently dropped connection of the run.
LAB_MAX_CONNECTIONS = 1000

log_lock = threading.Lock()


def log(*parts):
    with log_lock:
        print("matrix:", *parts, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_env(output):
    return dict(line.split("=", 1) for line in output.strip().splitlines() if "=" in line)


def kind_of(instance):
    return instance.split("@")[0]


class Boxes:
    """The boxes: labs (conntrack silent, reset, PostgreSQL's idle_session_timeout), and
    simulators (fin, proxy) in front of one more lab that never drops; one of each per
    instance (a box kind at a threshold)."""

    def __init__(self, binary, instances, run_dir, prefix):
        self.binary = binary
        self.prefix = prefix
        self.instances = instances
        self.run_dir = run_dir
        self.labs = []
        self.simulators = []
        self.endpoints = {}

    def lab_up(self, name, mode, timeout):
        out = subprocess.run(
            ["bash", str(LAB), "up", name, "--mode", mode, "--timeout", str(timeout),
             "--max-connections", str(LAB_MAX_CONNECTIONS)],
            check=True, capture_output=True, text=True).stdout
        self.labs.append(name)
        return lab_env(out)

    def simulate(self, upstream, mode, threshold):
        port = free_port()
        log_file = open(self.run_dir / f"simulate-{mode}-{threshold}.log", "w")
        proc = subprocess.Popen(
            [self.binary, "simulate", "--listen", f"127.0.0.1:{port}",
             "--upstream", f"{upstream['LAB_HOST']}:5432", "--idle-timeout", f"{threshold}s",
             "--mode", mode, "--max-flows", "4096", "--log.level", "warn"],
            stdout=log_file, stderr=log_file)
        self.simulators.append(proc)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"simulate --mode {mode} did not listen")

    def up(self):
        upstream = self.lab_up(f"{self.prefix}up", "silent", 86400)
        for name, t in self.instances.items():
            kind = kind_of(name)
            if kind in ("silent", "reset", "server"):
                env = self.lab_up(f"{self.prefix}{kind[:3]}{t}", kind, t)
                self.endpoints[name] = endpoint(env, env["LAB_HOST"], 5432)
            else:
                mode = "fin" if kind == "fin" else "silent"
                self.endpoints[name] = endpoint(upstream, "127.0.0.1", self.simulate(upstream, mode, t))

    def down(self):
        for proc in self.simulators:
            proc.terminate()
        for proc in self.simulators:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for name in self.labs:
            subprocess.run(["bash", str(LAB), "down", name], capture_output=True)


def endpoint(env, host, port):
    return {
        "host": host,
        "port": port,
        "user": env["LAB_USER"],
        "password_file": env["LAB_PASSWORD_FILE"],
        "password": pathlib.Path(env["LAB_PASSWORD_FILE"]).read_text().strip(),
        "dbname": "postgres",
    }


def discover(binary, instance, ep, run_dir):
    """`discover` against the box, as a user runs it; returns its JSON report."""
    cmd = [binary, "discover", "--dsn", f"postgres://{ep['user']}@{ep['host']}:{ep['port']}/{ep['dbname']}",
           "--password-file", ep["password_file"], "--sslmode", "disable",
           "--range-max", "60s", "--json"]
    box = kind_of(instance)
    if box in ("fin", "proxy"):
        # Behind a proxy the kernel's TCP_USER_TIMEOUT never fires: only the query timeout ends a
        # probe on a dead flow.
        cmd += ["--query-timeout", "3s", "--tcp-user-timeout", "2s"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    (run_dir / f"discover-{instance}.json").write_text(out.stdout)
    (run_dir / f"discover-{instance}.err").write_text(out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"discover on {instance} exited {out.returncode}: {out.stderr[-500:]}")
    return json.loads(out.stdout)


def recipes_for_unknown_box(binary, report):
    """What the same measurement gets when nobody knows whether keepalives help."""
    # Microseconds: humantime refuses digits below a nanosecond.
    cmd = [binary, "recipes", "--lower", f"{report['lower_bound_seconds']:.6f}s",
           "--drop", report["drop"]["kind"].replace("_", "-"), "--box", "unknown", "--json"]
    if report.get("upper_bound_seconds") is not None:
        cmd += ["--upper", f"{report['upper_bound_seconds']:.6f}s"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["recipes"]


def run_job(family_dir, job, run_dir, name):
    """Runs one harness job; returns its result, or a result that says why there is none."""
    job_file = run_dir / f"job-{name}.json"
    job_file.write_text(json.dumps(job))
    rounds = job["rounds"]
    limit = sum(r["idle_seconds"] for r in rounds) + len(rounds) * (job["hang_seconds"] + 5) + 60
    # Jobs with the same rounds would otherwise all reconnect at one instant: a herd on two
    # cores that shows up as latency no library is to blame for.
    time.sleep(random.uniform(0, START_SPREAD_SECONDS))
    started = time.time()
    try:
        out = subprocess.run([str(family_dir / "run"), str(job_file)], capture_output=True,
                             text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"error": f"the harness did not exit within {limit:.0f}s"}
    finally:
        job_file.unlink(missing_ok=True)  # it holds the lab password
    (run_dir / f"{name}.err").write_text(out.stderr[-20000:])
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"error": f"exit {out.returncode}, no result: {out.stderr[-300:]}"}
    result["took_seconds"] = round(time.time() - started, 1)
    return result


def install(families, run_dir):
    """Runs each family's install.sh, one at a time (several use apt, which holds one lock);
    returns {family: the end of its stderr} for those that failed."""
    errors = {}
    for family in families:
        log("installing", family)
        started = time.time()
        out = subprocess.run(["bash", str(HERE / family / "install.sh")], capture_output=True, text=True)
        (run_dir / f"install-{family}.log").write_text(out.stdout + out.stderr)
        log(f"  {family}: exit {out.returncode} in {time.time() - started:.0f}s")
        if out.returncode != 0:
            errors[family] = out.stderr[-500:]
    return errors


def only_slow(result, recipe):
    """A cell that failed on its latency bound alone: every request answered, none failed or
    hung, but one took longer than the bound. Forty harnesses waking at once on two cores can do
    that to a reconnect; a dead connection cannot be hidden by it (it fails or hangs)."""
    if "error" in result or recipe is None:
        return False
    t = totals(result)
    return t["failed"] == 0 and t["hung"] == 0 and t["ok"] > 0 \
        and (t["max_latency"] or 0.0) > recipe["first_request_bound"]


def rerun_stalls(pool, jobs, results, libraries, run_dir):
    """Runs each cell that failed on latency alone once more, with the machine quieter, and keeps
    that result; the first is kept beside it (`first_run`) for the docs. Failed or hung requests
    are never re-run."""
    again = [(lib, box, kind, recipe, job) for lib, box, kind, recipe, job in jobs
             if kind in ("recipe", "seed") and only_slow(results[(lib, box, kind, recipe["variant"])][0], recipe)]
    if not again:
        return
    log(f"{len(again)} cells over their latency bound with every request answered: running each once more")
    futures = {pool.submit(run_job, libraries[lib], job, run_dir, f"{lib}-{box}-{kind}-{recipe['variant']}-again"):
               (lib, box, kind, recipe) for lib, box, kind, recipe, job in again}
    for future in concurrent.futures.as_completed(futures):
        lib, box, kind, recipe = futures[future]
        key = (lib, box, kind, recipe["variant"])
        first = results[key][0]
        result = future.result()
        result["first_run"] = describe(first)
        results[key] = (result, recipe)
        log(f"{lib:14} {box:9} {kind:8} {recipe['variant']:10} again: {describe(result)} (first: {describe(first)})")


def rerun_note(result):
    return f" (run again: the first run was {result['first_run']})" if "first_run" in result else ""


def totals(result):
    rounds = result.get("rounds", [])
    return {
        "ok": sum(r["ok"] for r in rounds),
        "failed": sum(r["failed"] for r in rounds),
        "hung": sum(r["hung"] for r in rounds),
        "max_latency": max((r["max_latency_seconds"] or 0.0 for r in rounds), default=None),
    }


# A request that waits this long on a dead connection is the problem too (HikariCP's defaults
# validate each dead connection for 5 s before replacing it).
STALL_SECONDS = 2.0


def shows_problem(t):
    return t["failed"] + t["hung"] > 0 or (t["max_latency"] or 0.0) > STALL_SECONDS


def cell_passes(result, recipe):
    """0 failed, 0 hung, and every request within the recipe's own bound."""
    if "error" in result:
        return False
    t = totals(result)
    return t["failed"] == 0 and t["hung"] == 0 and t["ok"] > 0 \
        and (t["max_latency"] or 0.0) <= recipe["first_request_bound"]


def describe(result):
    if "error" in result:
        return "harness error"
    t = totals(result)
    parts = [f"{t['ok']} ok"]
    if t["failed"]:
        parts.append(f"{t['failed']} failed")
    if t["hung"]:
        parts.append(f"{t['hung']} hung")
    text = ", ".join(parts)
    if t["max_latency"] is not None and t["ok"]:
        text += f" (max {t['max_latency']:.2f} s)"
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=int, default=8, help="T of every box, seconds")
    ap.add_argument("--second-threshold", type=int, default=20,
                    help="T of a second silent and proxy box, seconds (0: none)")
    ap.add_argument("--record", action="store_true", help="rewrite proven.json and docs/recipes.md")
    ap.add_argument("--only", help="comma-separated library ids")
    ap.add_argument("--jobs", type=int, default=40,
                    help="harness runs at once (they mostly sleep through idle periods)")
    ap.add_argument("--binary", default=str(REPO / "target" / "debug" / "idle_drop_exporter"))
    ap.add_argument("--skip-install", action="store_true",
                    help="the harnesses are installed already (an earlier --install-only)")
    ap.add_argument("--install-only", action="store_true",
                    help="install every harness and stop (exit 1 if one failed); the test command runs "
                         "this in the background while cargo's tests wait on their idle timers")
    ap.add_argument("--lab-prefix", default="pm",
                    help="two letters that start the lab names, so two runs on one machine never meet")
    args = ap.parse_args()
    if not (len(args.lab_prefix) == 2 and args.lab_prefix.isalnum() and args.lab_prefix.islower()):
        sys.exit("matrix: --lab-prefix must be two characters of a-z 0-9")
    only = set(args.only.split(",")) if args.only else None
    if args.record and only:
        sys.exit("matrix: --record needs the whole matrix (no --only)")
    run_dir = REPO / "target" / "pools" / datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    log("run folder", run_dir)

    libraries = {}
    for family, libs in FAMILIES.items():
        for lib in libs:
            if only is None or lib in only:
                libraries[lib] = HERE / family
    install_errors = {}
    if not args.skip_install:
        install_errors = install(sorted({d.name for d in libraries.values()}), run_dir)
    if args.install_only:
        for family, error in install_errors.items():
            log(f"FAILED: install {family}: {error}")
        sys.exit(1 if install_errors else 0)

    instances = {box: args.threshold for box in BOXES}
    if args.second_threshold:
        instances.update({f"{box}@{args.second_threshold}": args.second_threshold for box in SECOND_BOXES})
    boxes = Boxes(args.binary, instances, run_dir, args.lab_prefix)
    failures = []
    checks = 0
    try:
        boxes.up()
        with concurrent.futures.ThreadPoolExecutor(len(instances)) as pool:
            reports = dict(zip(instances, pool.map(
                lambda b: discover(args.binary, b, boxes.endpoints[b], run_dir), instances)))
        to_test = {}
        for box, report in reports.items():
            log(f"{box}: [{report['lower_bound_seconds']:.2f}, {report['upper_bound_seconds']:.2f}] "
                f"drop {report['drop']['kind']}, box counts {report['box_counts']}")
            recipes = {(r["library"], r["variant"]): r for r in report["recipes"]}
            for r in recipes_for_unknown_box(args.binary, report):
                recipes.setdefault((r["library"], r["variant"]), r)
            to_test[box] = recipes

        jobs = []
        for lib, family_dir in libraries.items():
            if family_dir.name in install_errors:
                failures.append(f"{lib}: install failed: {install_errors[family_dir.name]}")
                continue
            for box, threshold in instances.items():
                ep = {k: v for k, v in boxes.endpoints[box].items() if k != "password_file"}
                one_idle = [{"idle_seconds": 1.5 * threshold, "queries": QUERIES}]
                base = {"library": lib, "dsn": ep, "hang_seconds": HANG_SECONDS}
                jobs.append((lib, box, "defaults", None, {**base, "pool": WARM, "recipe": None, "rounds": one_idle}))
                if args.record:
                    # Recorded for the docs only (no check reads them): not worth CI's time.
                    jobs.append((lib, box, "bare", None, {**base, "pool": None, "recipe": None, "rounds": one_idle}))
                for (rlib, variant), recipe in sorted(to_test[box].items()):
                    if rlib != lib:
                        continue
                    lifetime = reports[box]["recommendation"]["max_idle_lifetime_seconds"]
                    rounds = [
                        {"idle_seconds": 1.5 * threshold, "queries": QUERIES},
                        {"idle_seconds": round((lifetime + reports[box]["lower_bound_seconds"]) / 2, 2), "queries": QUERIES},
                        {"idle_seconds": 1.5 * threshold, "queries": QUERIES},
                    ]
                    settings = {s["key"]: s["value"] for s in recipe["settings"]}
                    jobs.append((lib, box, "recipe", recipe, {**base, "pool": WARM, "recipe": settings,
                                                              "recipe_text": recipe["text"], "rounds": rounds}))
                    if lib in QUAINT:
                        seed_settings, seed_text = seed_fix(settings)
                        jobs.append((lib, box, "seed", recipe, {**base, "pool": WARM, "recipe": seed_settings,
                                                                "recipe_text": seed_text, "rounds": rounds}))
        # Longest first (they are mostly idle waits), so the run does not end on a long tail.
        jobs.sort(key=lambda j: -sum(r["idle_seconds"] for r in j[4]["rounds"]))
        log(f"{len(jobs)} harness runs, {args.jobs} at once")
        results = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {}
            for lib, box, kind, recipe, job in jobs:
                name = f"{lib}-{box}-{kind}" + (f"-{recipe['variant']}" if recipe else "")
                futures[pool.submit(run_job, libraries[lib], job, run_dir, name)] = (lib, box, kind, recipe)
            for future in concurrent.futures.as_completed(futures):
                lib, box, kind, recipe = futures[future]
                result = future.result()
                variant = recipe["variant"] if recipe else None
                results[(lib, box, kind, variant)] = (result, recipe)
                seen_line = " [seed's log line]" if SEED_LINE in result.get("logs", []) else ""
                log(f"{lib:14} {box:9} {kind:8} {variant or '':10} {describe(result)}{seen_line}")
            rerun_stalls(pool, jobs, results, libraries, run_dir)
    finally:
        boxes.down()

    # Judge.
    cell_ok = {}  # (lib, variant) -> {box kind: [passed at each threshold]}
    versions = {}
    for (lib, box, kind, variant), (result, recipe) in sorted(results.items(), key=str):
        if "version" in result:
            versions[lib] = result["version"]
        if kind != "recipe":
            continue
        ok = cell_passes(result, recipe)
        bound = recipe["first_request_bound"]
        cell_ok.setdefault((lib, variant), {}).setdefault(kind_of(box), []).append(ok)
        if not ok:
            why = result.get("error") or f"{describe(result)}, bound {bound:.1f} s"
            log(f"recipe not proven: {lib} {variant} behind {box}: {why}")
    # Proven behind a box kind: passed at every threshold that kind ran at.
    passed = {key: {b: True for b, oks in kinds.items() if all(oks)} for key, kinds in cell_ok.items()}
    passed = {key: kinds for key, kinds in passed.items() if kinds}
    for lib in libraries:
        if libraries[lib].name in install_errors:
            continue
        checks += 1
        seen = [box for box in instances
                if (r := results.get((lib, box, "defaults", None), ({}, None))[0]) and "error" not in r
                and shows_problem(totals(r))]
        if not seen:
            failures.append(f"{lib}: defaults with a warm minimum never failed, hung or stalled: "
                            "the harness cannot see the problem")

    checks += judge_quaint(results, failures)

    claims = json.loads(PROVEN.read_text())
    for claim in claims["recipes"]:
        if only is not None and claim["library"] not in only:
            continue
        for box in claim["boxes"]:
            checks += 1
            if box not in passed.get((claim["library"], claim["variant"]), {}):
                failures.append(f"claim not reproduced: {claim['library']} {claim['variant']} behind {box}")

    if args.record:
        record(args.threshold, instances, reports, results, passed, versions, libraries)
        log("wrote", PROVEN.relative_to(REPO), "and", DOC.relative_to(REPO))
    cells = sum(1 for (_, _, kind, _) in results if kind == "recipe")
    proven_cells = sum(1 for (lib, box, kind, variant), (result, recipe) in results.items()
                       if kind == "recipe" and kind_of(box) in passed.get((lib, variant), {}))
    log(f"{proven_cells} of {cells} recipe cells behind a proven box; the others are printed as "
        "not verified for such a path")
    for f in failures:
        log("FAILED:", f)
    # Checks: every claim in proven.json reproduced, every harness saw the problem.
    print(f"recipes: {checks - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


# quaint (Prisma): the seed's own fix runs beside the printed recipe, and the seed's log line must
# show behind the fin box with defaults (lab/pools/quaint/README.md).
QUAINT = ("quaint_prisma", "quaint_bare")
SEED_LINE = "Error in PostgreSQL connection: Error { kind: Closed, cause: None }"


def seed_fix(settings):
    """The seed's hand-made fix, `?max_idle_connection_lifetime=60&socket_timeout=10`, scaled to
    the box's T: its lifetime becomes the one the printed recipe computes for T (60 s stood
    below the seed's path's threshold the same way), socket_timeout=10 and the default
    pool_timeout (10 s) are kept as the seed had them. Spelt both ways, as the harness needs."""
    lifetime = settings["max_idle_connection_lifetime"]
    params = f"max_idle_connection_lifetime={lifetime}&socket_timeout=10"
    return ({"max_idle_connection_lifetime": lifetime, "socket_timeout": 10},
            f"&{params}\n?{params}")


def judge_quaint(results, failures):
    """The seed's fix must pass wherever the printed recipe runs; the seed's exact log line must
    appear behind every fin box with defaults. Returns the number of checks made."""
    checks = 0
    for (lib, box, kind, variant), (result, recipe) in sorted(results.items(), key=str):
        if lib not in QUAINT:
            continue
        if kind == "seed":
            checks += 1
            if not cell_passes(result, recipe):
                why = result.get("error") or f"{describe(result)}, bound {recipe['first_request_bound']:.1f} s"
                failures.append(f"{lib}: the seed's fix behind {box}: {why}")
        elif kind == "defaults" and kind_of(box) == "fin":
            checks += 1
            logs = result.get("logs", [])
            log(f"{lib} {box} defaults: seed line {'logged' if SEED_LINE in logs else 'MISSING'}")
            if SEED_LINE not in logs:
                failures.append(f"{lib}: behind {box} with defaults the seed's line was not logged "
                                f"({len(logs)} lines: {logs[:3]})")
    return checks


def seed_lines(lib, instances, results):
    """The seed's fix and the seed's log line, per box, for docs/recipes.md."""
    out = ["\nThe seed's own fix (`max_idle_connection_lifetime` as printed, `socket_timeout=10`, "
           "default `pool_timeout`), and whether quaint logged the seed's line:\n\n"
           "| box | seed's fix | line logged with defaults | with the recipe |\n|---|---|---|---|\n"]
    for box in instances:
        seed = [(res, rec) for (l, bx, k, _v), (res, rec) in results.items() if l == lib and bx == box and k == "seed"]
        d = results.get((lib, box, "defaults", None), ({}, None))[0]
        r = [res for (l, bx, k, _v), (res, _rec) in results.items() if l == lib and bx == box and k == "recipe"]
        text = "; ".join(("ok" if cell_passes(res, rec) else "**FAILED**") + f": {describe(res)}" for res, rec in seed)
        logged = "yes" if SEED_LINE in d.get("logs", []) else "no"
        with_recipe = "yes" if any(SEED_LINE in res.get("logs", []) for res in r) else "no"
        out.append(f"| {box} | {text or 'not run'} | {logged} | {with_recipe} |\n")
    return "".join(out)


# How a version is named where the harness reports only a number.
PACKAGE = {"deadpool": "deadpool-postgres", "bb8": "bb8", "sqlx": "sqlx", "node-postgres": "pg",
           "pgbouncer": "PgBouncer", "pgx": "pgx"}


def named(lib, version):
    if version[:1].isdigit() or version[:2] in ("v1", "v2", "v3", "v4", "v5"):
        return f"{PACKAGE.get(lib, lib)} {version}"
    return version


def record(threshold, instances, reports, results, passed, versions, libraries):
    versions = {lib: named(lib, v) for lib, v in versions.items()}
    also_at = {}
    for name, t in instances.items():
        if t != threshold:
            also_at.setdefault(t, []).append(kind_of(name))
    proven = {
        "comment": "written by `python3 lab/pools/matrix.py --record`; each entry: the recipe "
                   "ended the failures behind these boxes (docs/recipes.md)",
        "threshold_seconds": threshold,
        "also_at": [{"threshold_seconds": t, "boxes": boxes} for t, boxes in sorted(also_at.items())],
        "recorded": datetime.date.today().isoformat(),
        "recipes": [
            {"library": lib, "variant": variant, "version": versions[lib],
             "boxes": [b for b in BOXES if b in boxes]}
            for (lib, variant), boxes in sorted(passed.items())
        ],
    }
    PROVEN.write_text(json.dumps(proven, indent=2) + "\n")
    DOC.write_text(render_doc(threshold, instances, reports, results, passed, versions, libraries))


def render_doc(threshold, instances, reports, results, passed, versions, libraries):
    from textwrap import dedent
    lines = [dedent(f"""\
        # Recipes, proven: each pool line run against the real library behind a real dropping box

        Produced by `python3 lab/pools/matrix.py --record` on {datetime.date.today().isoformat()}
        (every run of `bash scripts/test-all.sh` re-checks it: a claim that no longer holds fails
        CI). Every box forgets idle flows after T = {threshold} s; `silent` and `proxy` run again
        at a second T (`silent@T`, `proxy@T`), and a recipe is proven behind a box only if it
        passed at both. How the matrix works, and each harness:
        [`lab/pools/README.md`](../lab/pools/README.md).

        | box | what it is | T | discover measured |
        |---|---|---|---|
        """)]
    what = {
        "silent": "Linux conntrack drops packets of a forgotten flow (NLB, Azure LB, GCP firewall)",
        "reset": "Linux conntrack answers them with a reset (NAT gateway)",
        "fin": "`simulate --mode fin`: a proxy that closes idle flows",
        "proxy": "`simulate --mode silent`: a proxy that stops answering (keepalives never reach its timer)",
        "server": "PostgreSQL's own `idle_session_timeout`",
    }
    for box, t in instances.items():
        r = reports[box]
        lines.append(f"| `{box}` | {what[kind_of(box)]} | {t} s | [{r['lower_bound_seconds']:.2f} s, "
                     f"{r['upper_bound_seconds']:.2f} s], {r['drop']['kind']}, box counts {r['box_counts']} |\n")
    lines.append("\n## Summary\n\n| library | version | defaults (min 4) fail or stall behind | recipe proven behind | not safe behind |\n|---|---|---|---|---|\n")
    for lib in libraries:
        bad = [b for b in instances if (r := results.get((lib, b, "defaults", None), ({"error": 1}, None))[0])
               and "error" not in r and shows_problem(totals(r))]
        proven_by_variant = {v: sorted(boxes, key=BOXES.index) for (l, v), boxes in passed.items() if l == lib}
        proven_text = "; ".join(f"{v}: {', '.join(b)}" for v, b in sorted(proven_by_variant.items())) or "none"
        tested = {kind_of(b) for (l, b, k, _v) in results if l == lib and k == "recipe"}
        unsafe = [b for b in BOXES if b in tested and not any(b in bx for bx in proven_by_variant.values())]
        lines.append(f"| {lib} | {versions.get(lib, '?')} | {', '.join(bad) or 'none'} | {proven_text} | "
                     f"{', '.join(unsafe) or 'none'} |\n")
    lines.append(dedent(f"""
        Each cell: 8 concurrent `SELECT 1` through the pool after it sat idle. **defaults**: a pool
        that keeps 4 connections warm, library defaults, idle 1.5 T. **bare**: the library's bare
        defaults (no minimum), idle 1.5 T. **recipe**: the warm pool with the printed recipe, idle
        1.5 T, then between the recipe's lifetime and T, then 1.5 T again (24 requests); it must
        end with 0 failed, 0 hung and every request within the recipe's stated bound. A query not
        answered within {HANG_SECONDS} s counts as hung. Each run starts after a random pause of up
        to {START_SPREAD_SECONDS:.0f} s, so runs with the same rounds do not reconnect at one instant
        (40 run at once on 2 cores); a recipe cell that failed on its latency bound alone (every
        request answered, none failed or hung) is run once more, and says so.

        """))
    for lib in libraries:
        version = versions.get(lib, "?")
        lines.append(f"## {lib} ({version})\n\n")
        lines.append("| box | defaults (min 4) | bare defaults | recipe | variant | bound |\n|---|---|---|---|---|---|\n")
        shown = {}
        for box in instances:
            d = results.get((lib, box, "defaults", None), ({"error": "not run"}, None))[0]
            b = results.get((lib, box, "bare", None), ({"error": "not run"}, None))[0]
            recipe_cells = [(v, res) for (l, bx, k, v), res in results.items() if l == lib and bx == box and k == "recipe"]
            if not recipe_cells:
                lines.append(f"| {box} | {describe(d)} | {describe(b)} | not run | | |\n")
            for variant, (res, recipe) in sorted(recipe_cells):
                mark = "ok" if cell_passes(res, recipe) else "**FAILED**"
                lines.append(f"| {box} | {describe(d)} | {describe(b)} | {mark}: {describe(res)}{rerun_note(res)} | {variant} | "
                             f"{recipe['first_request_bound']:.1f} s |\n")
                shown.setdefault(variant, recipe)
        if lib in QUAINT:
            lines.append(seed_lines(lib, instances, results))
        for variant, recipe in sorted(shown.items()):
            lines.append(f"\n{variant} recipe as printed for T = {threshold} s (`{lib}`):\n\n```\n{recipe['text']}\n```\n\n"
                         f"Why: {recipe['why']}.\n")
        lines.append("\n")
    lines.append(NOT_RUN)
    return "".join(lines)


NOT_RUN = """## What the matrix cannot run, and what stands in

- **quaint / Prisma** is run, not derived: `lab/pools/quaint/` builds the last standalone
  prisma/quaint (vendored beside the repository, `../shared/vendor/`) twice. `quaint_prisma` is
  the pool as Prisma's query engine builds it for PostgreSQL (`test_on_check_out`, a `SELECT 1`
  when a connection was last checked 15 s ago or more) over mobc 0.8.5, where the lifetime is the
  connection's age; `quaint_bare` is quaint's own pool (no check) over mobc 0.8.3, where it is the
  time since the last checkout. Behind the fin box with defaults both log the original report's
  line, `Error in PostgreSQL connection: Error { kind: Closed, cause: None }`, and fail requests;
  with the printed line the requests stop failing, but the line may still be logged: the pool
  retires connections only at checkout, so one the box closed while it sat in the pool still ends
  its connection task. The seed's own fix (`max_idle_connection_lifetime` below T and
  `socket_timeout=10`, with the default `pool_timeout=10`) runs beside each recipe cell and also
  ends the failures on these paths: the lifetime retires every connection before anything is sent
  on it, so neither timeout is reached. Not run: Prisma engines before mobc 0.8.5 (they check on
  checkout and count the lifetime from the last checkout), and Prisma 7's driver adapters (no
  quaint pool). Which Prisma releases each build stands for: `lab/pools/quaint/README.md`.
- **PostgreSQL server settings** (`tcp_keepalives_*`, `tcp_user_timeout`) let the server find
  dead clients and end their sessions (ghosts); they are not a pool and do not stop a pool from
  handing out a dead connection. Printed as not verified.
- **HikariCP 4.x/5.x `keepaliveTime`** does not exist in Debian's HikariCP 2.7.9, the version
  the matrix runs; the HikariCP line uses only what 2.7.9 has.
- **pgx v5** is not packaged by Debian 12, and no registry the matrix uses serves Go modules: the
  pgx line is run against v4.15 and its v4.17+/v5 claims are read from pgxpool/pool.go.
- **Spring Boot** is not run: the `hikaricp_spring` cell loads the printed
  `spring.datasource.hikari.*` lines and maps them as Spring Boot's relaxed binding does
  (lab/pools/java/README.md) into the real HikariCP.
"""


if __name__ == "__main__":
    main()
