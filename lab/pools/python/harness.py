"""The Python pool harness: runs one job of the pool matrix (lab/pools/README.md) against a real
Python library (SQLAlchemy 2 over psycopg 3 or asyncpg, psycopg_pool, asyncpg, Django, or libpq
through psycopg) and prints one result JSON. Usage: harness.py JOB_FILE. Diagnostics go to stderr.

Where a job carries `recipe_text` (the line idle_drop_exporter printed), the adapter runs that
text as it stands (`eval` of the call, `exec` of settings lines), with the names the line uses in
scope, so a line that does not run as printed fails its cell.

Each library is an adapter with `warm(k)` (hold k connections at once, return their backend
pids) and `query()` (acquire, SELECT 1, release: the pool's normal path). Sync libraries run each
query in a daemon thread so a hung one can be abandoned; the process ends with os._exit so no
library cleanup can hang it.
"""
import asyncio
import json
import os
import sys
import threading
import time
import weakref
from importlib.metadata import version as pkg_version

LIBPQ_KEYS = {"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
              "tcp_user_timeout", "connect_timeout", "options"}

JOB: dict = {}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def error_text(exc: BaseException) -> str:
    """One line, at most 200 characters, with the password masked should a library echo it."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    password = JOB.get("dsn", {}).get("password")
    if password:
        text = text.replace(password, "***")
    return text[:200]


def check_keys(recipe: dict, allowed: set, library: str):
    unknown = set(recipe) - allowed
    if unknown:
        raise SystemExit(f"{library}: unknown recipe keys {sorted(unknown)} (see README.md)")


def libpq_params(d: dict) -> dict:
    """libpq connection keywords from a recipe sub-object, as strings (libpq's own units)."""
    check_keys(d, LIBPQ_KEYS, "libpq")
    return {k: str(v) for k, v in d.items()}


def psycopg_versions() -> str:
    import psycopg
    v = psycopg.pq.version()
    return f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), libpq {v // 10000}.{v % 10000}"


# --- psycopg_pool helpers ------------------------------------------------------------------
# Neither is a pool setting: psycopg_pool measures no idle time at checkout (max_lifetime is
# looked at only when a connection is returned, max_idle never closes connections at or below
# min_size), so an application needs a few lines of its own. These are those lines.
class IdleCheck:
    """Shown unsafe, kept to reproduce it: configure/reset stamp a connection when it enters the
    pool; check refuses (and closes) one idle for `limit` s or more. Every refusal makes
    getconn() sleep 1, 2, 4, ... s (psycopg_pool's AttemptWithBackoff), so a lone request
    behind 4 stale connections waits 15 s, and the fresh ones go stale meanwhile."""

    def __init__(self, limit: float):
        self.limit = limit
        self.idle_since = weakref.WeakKeyDictionary()

    def stamp(self, conn):
        self.idle_since[conn] = time.monotonic()

    def check(self, conn):
        idle = time.monotonic() - self.idle_since.get(conn, 0.0)
        if idle >= self.limit:
            conn.close()
            raise RuntimeError(f"connection idle {idle:.1f} s >= {self.limit} s: replaced")


def check_every(pool, seconds: float):
    """The recipe for psycopg_pool: call the pool's own pool.check() every `seconds` (< T) from
    a daemon thread. It pings every idle connection (execute(""), bytes on the wire, so no
    connection stays idle long enough for any box to drop it) and replaces broken ones,
    without a request paying getconn()'s retry back-off."""
    def loop():
        while True:
            time.sleep(seconds)
            try:
                pool.check()
            except Exception as e:
                log(f"pool.check(): {error_text(e)}")
    threading.Thread(target=loop, daemon=True).start()


# --- the printed text, run as it stands ----------------------------------------------------
def run_printed(names: dict):
    """Runs the job's recipe_text with `names` in scope: a single expression is evaluated and its
    value returned; statements (settings lines) are executed and the namespace returned."""
    text = JOB["recipe_text"]
    scope = dict(names)
    try:
        code = compile(text, "<recipe_text>", "eval")
    except SyntaxError:
        exec(compile(text, "<recipe_text>", "exec"), scope)
        return scope
    return eval(code, scope)


def dsn_url(scheme: str, dsn: dict) -> str:
    from urllib.parse import quote
    return (f"{scheme}://{quote(dsn['user'], safe='')}:{quote(dsn['password'], safe='')}"
            f"@{dsn['host']}:{dsn['port']}/{dsn['dbname']}")


# --- adapters ------------------------------------------------------------------------------
class SqlAlchemy:
    KEYS = {"pool_recycle", "pool_pre_ping", "pool_timeout", "pool_use_lifo", "pool_size",
            "max_overflow", "connect_args"}

    def __init__(self, dsn, pool, recipe):
        import sqlalchemy as sa
        check_keys(recipe, self.KEYS, "sqlalchemy")
        self.sa = sa
        kwargs = {}
        if pool:
            kwargs = {"pool_size": pool["min"], "max_overflow": pool["max"] - pool["min"]}
        kwargs.update({k: v for k, v in recipe.items() if k != "connect_args"})
        if "connect_args" in recipe:
            kwargs["connect_args"] = libpq_params(recipe["connect_args"])
        url = sa.URL.create("postgresql+psycopg", username=dsn["user"], password=dsn["password"],
                            host=dsn["host"], port=dsn["port"], database=dsn["dbname"])
        if JOB.get("recipe_text"):
            sizing = {k: v for k, v in kwargs.items() if k in ("pool_size", "max_overflow")}
            create = lambda u, **kw: sa.create_engine(u, **{**sizing, **kw})  # noqa: E731
            self.engine = run_printed({"create_engine": create, "url": url})
            kwargs = {**sizing, "recipe_text": JOB["recipe_text"]}
        else:
            self.engine = sa.create_engine(url, **kwargs)
        self.version = f"SQLAlchemy {sa.__version__} + {psycopg_versions()}"
        log(f"sqlalchemy: create_engine(..., {kwargs})")

    def warm(self, k):
        conns = [self.engine.connect() for _ in range(k)]
        pids = {c.execute(self.sa.text("SELECT pg_backend_pid()")).scalar() for c in conns}
        for c in conns:
            c.close()
        return pids

    def query(self):
        with self.engine.connect() as c:
            c.execute(self.sa.text("SELECT 1")).scalar()


class PsycopgPool:
    KEYS = {"min_size", "max_size", "max_lifetime", "max_idle", "timeout", "check", "kwargs",
            "idle_check_seconds", "check_interval"}

    def __init__(self, dsn, pool, recipe):
        import psycopg_pool
        check_keys(recipe, self.KEYS, "psycopg_pool")
        kwargs = {}
        if pool:
            kwargs = {"min_size": pool["min"], "max_size": pool["max"]}
        kwargs.update({k: v for k, v in recipe.items()
                       if k not in ("check", "kwargs", "idle_check_seconds",
                                    "check_interval")})
        shown = dict(kwargs)
        if recipe.get("check") == "check_connection":
            kwargs["check"] = psycopg_pool.ConnectionPool.check_connection
            shown["check"] = "ConnectionPool.check_connection"
        elif "check" in recipe:
            raise SystemExit("psycopg_pool: check must be \"check_connection\"")
        if "idle_check_seconds" in recipe:
            idle = IdleCheck(recipe["idle_check_seconds"])
            kwargs.update(configure=idle.stamp, reset=idle.stamp, check=idle.check)
            shown["idle_check_seconds"] = idle.limit
        conn_kwargs = dict(user=dsn["user"], password=dsn["password"], host=dsn["host"],
                           port=dsn["port"], dbname=dsn["dbname"])
        self.version = f"psycopg_pool {pkg_version('psycopg-pool')} + {psycopg_versions()}"
        if JOB.get("recipe_text"):
            self.pool = self.printed(psycopg_pool, dsn, pool)
            return
        conn_kwargs.update(libpq_params(recipe.get("kwargs", {})))
        shown["kwargs"] = recipe.get("kwargs", {})
        self.pool = psycopg_pool.ConnectionPool(kwargs=conn_kwargs, open=False, **kwargs)
        self.pool.open(wait=True, timeout=30)
        if "check_interval" in recipe:
            check_every(self.pool, recipe["check_interval"])
            shown["check_interval"] = recipe["check_interval"]
        log(f"psycopg_pool: ConnectionPool({shown})")

    @staticmethod
    def printed(psycopg_pool, dsn, pool):
        """Runs the printed lines with `ConnectionPool` (sized as the job's pool) and `conninfo`
        in scope; the pool is the `pool` the lines make, or the value of a lone expression."""
        sizing = {"min_size": pool["min"], "max_size": pool["max"]} if pool else {}

        class ConnectionPool(psycopg_pool.ConnectionPool):
            def __init__(self, conninfo, **kw):
                super().__init__(conninfo, **{**sizing, **kw})

        from psycopg.conninfo import make_conninfo
        conninfo = make_conninfo(user=dsn["user"], password=dsn["password"], host=dsn["host"],
                                 port=dsn["port"], dbname=dsn["dbname"])
        made = run_printed({"ConnectionPool": ConnectionPool, "conninfo": conninfo})
        made = made["pool"] if isinstance(made, dict) else made
        made.wait(timeout=30)
        log("psycopg_pool: as printed:", JOB["recipe_text"])
        return made

    def warm(self, k):
        conns = [self.pool.getconn() for _ in range(k)]
        pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns}
        for c in conns:
            c.commit()
            self.pool.putconn(c)
        return pids

    def query(self):
        with self.pool.connection() as c:
            c.execute("SELECT 1").fetchone()


class Libpq:
    """No pool: `min` (or 1) long-lived psycopg connections; query i goes to connection
    i mod n (psycopg serialises concurrent use of one connection with its own lock)."""

    def __init__(self, dsn, pool, recipe):
        import psycopg
        self.psycopg = psycopg
        self.params = dict(user=dsn["user"], password=dsn["password"], host=dsn["host"],
                           port=dsn["port"], dbname=dsn["dbname"], autocommit=True)
        if JOB.get("recipe_text"):
            # The printed conninfo, parsed by libpq's own rules (psycopg.conninfo): a line that
            # libpq would refuse fails here.
            from psycopg.conninfo import conninfo_to_dict
            self.params.update(conninfo_to_dict(JOB["recipe_text"]))
        else:
            self.params.update(libpq_params(recipe))
        self.size = pool["min"] if pool else 1
        self.conns = []
        self.next = 0
        self.lock = threading.Lock()
        self.version = psycopg_versions()
        log(f"libpq: {self.size} connection(s) with {recipe or 'libpq defaults'}")

    def warm(self, k):
        self.conns = [self.psycopg.connect(**self.params) for _ in range(self.size)]
        return {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in self.conns}

    def query(self):
        with self.lock:
            conn = self.conns[self.next % len(self.conns)]
            self.next += 1
        conn.execute("SELECT 1").fetchone()


class Asyncpg:
    is_async = True
    KEYS = {"min_size", "max_size", "init_size", "max_inactive_connection_lifetime",
            "max_queries", "command_timeout", "server_settings"}

    def __init__(self, dsn, pool, recipe):
        import asyncpg
        check_keys(recipe, self.KEYS, "asyncpg")
        self.asyncpg = asyncpg
        self.kwargs = {}
        if pool:
            self.kwargs = {"min_size": pool["min"], "max_size": pool["max"]}
        self.kwargs.update(recipe)
        if "server_settings" in recipe:
            self.kwargs["server_settings"] = {k: str(v) for k, v in
                                              recipe["server_settings"].items()}
        self.dsn = dsn
        self.version = f"asyncpg {asyncpg.__version__}"
        log(f"asyncpg: create_pool({self.kwargs})", JOB.get("recipe_text", ""))

    async def open(self):
        d = self.dsn
        if JOB.get("recipe_text"):
            # asyncpg.create_pool(dsn, ...) as printed; the pool's own sizing goes under it.
            sizing = {k: v for k, v in self.kwargs.items() if k in ("min_size", "max_size")}
            real = self.asyncpg

            class Shim:
                @staticmethod
                def create_pool(dsn, **kw):
                    return real.create_pool(dsn, **{**sizing, **kw})

            self.pool = await run_printed({"asyncpg": Shim, "dsn": dsn_url("postgresql", d)})
            return
        self.pool = await self.asyncpg.create_pool(
            user=d["user"], password=d["password"], host=d["host"], port=d["port"],
            database=d["dbname"], **self.kwargs)

    async def warm(self, k):
        conns = [await self.pool.acquire() for _ in range(k)]
        pids = {await c.fetchval("SELECT pg_backend_pid()") for c in conns}
        for c in conns:
            await self.pool.release(c)
        return pids

    async def query(self):
        async with self.pool.acquire() as c:
            await c.fetchval("SELECT 1")


class SqlAlchemyAsyncpg:
    """create_async_engine("postgresql+asyncpg://…"): AsyncAdaptedQueuePool over asyncpg."""
    is_async = True
    KEYS = {"pool_recycle", "pool_pre_ping", "pool_timeout", "pool_use_lifo", "pool_size",
            "max_overflow", "connect_args"}

    def __init__(self, dsn, pool, recipe):
        import asyncpg
        import sqlalchemy as sa
        from sqlalchemy.ext.asyncio import create_async_engine
        check_keys(recipe, self.KEYS, "sqlalchemy_asyncpg")
        self.sa = sa
        self.sizing = {"pool_size": pool["min"], "max_overflow": pool["max"] - pool["min"]} \
            if pool else {}
        self.kwargs = {**self.sizing, **recipe}
        self.create = create_async_engine
        self.url = sa.URL.create("postgresql+asyncpg", username=dsn["user"],
                                 password=dsn["password"], host=dsn["host"], port=dsn["port"],
                                 database=dsn["dbname"])
        self.version = f"SQLAlchemy {sa.__version__} + asyncpg {asyncpg.__version__}"
        log("sqlalchemy_asyncpg:", JOB.get("recipe_text") or f"create_async_engine(url, {self.kwargs})")

    async def open(self):
        if JOB.get("recipe_text"):
            create = lambda u, **kw: self.create(u, **{**self.sizing, **kw})  # noqa: E731
            self.engine = run_printed({"create_async_engine": create, "url": self.url})
        else:
            self.engine = self.create(self.url, **self.kwargs)

    async def warm(self, k):
        conns = [await self.engine.connect() for _ in range(k)]
        pids = {(await c.execute(self.sa.text("SELECT pg_backend_pid()"))).scalar() for c in conns}
        for c in conns:
            await c.close()
        return pids

    async def query(self):
        async with self.engine.connect() as c:
            (await c.execute(self.sa.text("SELECT 1"))).scalar()


class Django:
    """Django as a threaded server uses it: `pool.min` (or 1) worker threads; a request is
    request_started, a `SELECT 1` through django.db.connection, request_finished, as Django's
    handler sends them (close_old_connections runs on both signals).

    `django`: persistent connections, one per worker thread. "A pool that keeps 4 warm" is 4
    workers with CONN_MAX_AGE = None (never closed for age); bare defaults are Django's own:
    CONN_MAX_AGE = 0, a new connection per request.
    `django_pool`: the psycopg pool option (Django 5.1+), shared by the workers; a request takes
    a pooled connection at its first query and gives it back when it ends. "Keeps 4 warm" is
    OPTIONS["pool"] = {"min_size": 4, "max_size": 4}; bare is `"pool": True` (psycopg_pool's
    defaults)."""
    KEYS = {"CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "OPTIONS", "check_interval"}

    def __init__(self, dsn, pool, recipe):
        import concurrent.futures
        import django
        from django.conf import settings
        check_keys(recipe, self.KEYS, "django")
        pooled = JOB["library"] == "django_pool"
        DATABASES = {"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": dsn["dbname"],
            "USER": dsn["user"], "PASSWORD": dsn["password"], "HOST": dsn["host"],
            "PORT": str(dsn["port"]), "CONN_MAX_AGE": None if pool and not pooled else 0}}
        if pooled:
            sizing = {"min_size": pool["min"], "max_size": pool["max"]} if pool else True
            DATABASES["default"]["OPTIONS"] = {"pool": sizing}
        text = JOB.get("recipe_text")
        if recipe and not text:
            raise SystemExit("django: this harness runs only the printed recipe_text")
        if text and not pooled:
            run_printed({"DATABASES": DATABASES})
        settings.configure(DATABASES=DATABASES, USE_TZ=True, INSTALLED_APPS=[])
        django.setup()
        if text and pooled:
            # Settings lines and startup code as printed, after setup (the startup code imports
            # django.db) and before the first connection reads DATABASES.
            run_printed({"DATABASES": DATABASES})
        shown = {k: v for k, v in DATABASES["default"].items() if k != "PASSWORD"}
        self.workers = pool["min"] if pool else 1
        self.executor = concurrent.futures.ThreadPoolExecutor(self.workers)
        self.version = f"Django {django.__version__} + {psycopg_versions()}" + \
            (f", psycopg_pool {pkg_version('psycopg-pool')}" if pooled else "")
        log(f"django: {self.workers} worker thread(s), DATABASES['default'] = {shown}")

    def request(self, sql="SELECT 1", hold=None):
        from django.core import signals
        from django.db import connection
        signals.request_started.send(sender=Django, environ={})
        try:
            with connection.cursor() as c:
                c.execute(sql)
                value = c.fetchone()[0]
            if hold:
                hold()
            return value
        finally:
            signals.request_finished.send(sender=Django)

    def warm(self, k):
        # Every worker serves one request at once, holding its connection until all hold one.
        barrier = threading.Barrier(self.workers)
        futures = [self.executor.submit(self.request, "SELECT pg_backend_pid()",
                                        lambda: barrier.wait(timeout=30))
                   for _ in range(self.workers)]
        return {f.result() for f in futures}

    def query(self):
        self.executor.submit(self.request).result()


ADAPTERS = {"sqlalchemy": SqlAlchemy, "psycopg_pool": PsycopgPool, "libpq": Libpq,
            "asyncpg": Asyncpg, "asyncpg_031": Asyncpg, "sqlalchemy_asyncpg": SqlAlchemyAsyncpg,
            "django": Django, "django_pool": Django}


# --- rounds --------------------------------------------------------------------------------
def summarize(idle, outcomes, n):
    """outcomes: one ("ok", latency) or ("failed", text) per finished query; the rest hung."""
    lat = [v for kind, v in outcomes if kind == "ok"]
    errors = sorted({v for kind, v in outcomes if kind == "failed"})
    r = {"idle_seconds": idle, "ok": len(lat), "failed": len(outcomes) - len(lat),
         "hung": n - len(outcomes),
         "max_latency_seconds": round(max(lat), 3) if lat else None, "errors": errors}
    log(f"round idle={idle}: {r}")
    return r


def run_sync(adapter, job):
    results = []
    for rnd in job["rounds"]:
        time.sleep(rnd["idle_seconds"])
        n = rnd["queries"]
        outcomes, lock, done = [], threading.Lock(), threading.Semaphore(0)
        start = time.monotonic()

        def one():
            try:
                adapter.query()
                o = ("ok", time.monotonic() - start)
            except Exception as e:  # what the application would see
                o = ("failed", error_text(e))
            with lock:
                outcomes.append(o)
            done.release()

        for _ in range(n):
            threading.Thread(target=one, daemon=True).start()
        deadline = start + job["hang_seconds"]
        for _ in range(n):
            if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
        with lock:
            results.append(summarize(rnd["idle_seconds"], list(outcomes), n))
    return results


async def run_async(adapter, job):
    results = []
    for rnd in job["rounds"]:
        await asyncio.sleep(rnd["idle_seconds"])
        n = rnd["queries"]
        start = time.monotonic()

        async def one():
            try:
                await adapter.query()
                return ("ok", time.monotonic() - start)
            except Exception as e:
                return ("failed", error_text(e))

        tasks = [asyncio.ensure_future(one()) for _ in range(n)]
        done, _pending = await asyncio.wait(tasks, timeout=job["hang_seconds"])
        # Pending (hung) tasks are abandoned, not cancelled: the application would still wait.
        outcomes = [t.result() for t in done]
        results.append(summarize(rnd["idle_seconds"], outcomes, n))
    return results


def finish(obj, code=0):
    print(json.dumps(obj), flush=True)
    os._exit(code)


def main():
    global JOB
    with open(sys.argv[1]) as f:
        JOB = json.load(f)
    job = JOB
    library = job["library"]
    budget = (sum(r["idle_seconds"] for r in job["rounds"])
              + len(job["rounds"]) * (job["hang_seconds"] + 5) + 25)
    # Last resort: whatever hangs (a connect, a pool's close), the job ends within its budget.
    threading.Timer(budget, lambda: finish({"library": library,
                                            "error": "harness budget exceeded"}, 3)).start()
    pool, recipe = job.get("pool"), job.get("recipe") or {}
    k = pool["min"] if pool else 1
    try:
        adapter = ADAPTERS[library](job["dsn"], pool, recipe)
        is_async = getattr(adapter, "is_async", False)
        if is_async:
            on_loop = lambda coro: asyncio.run_coroutine_threadsafe(coro, LOOP).result()
            on_loop(adapter.open())
            pids = on_loop(adapter.warm(k))
        else:
            pids = adapter.warm(k)
        if len(pids) < k:
            raise RuntimeError(f"warm-up opened {len(pids)} connections, wanted {k}")
        log(f"warm: {len(pids)} connection(s) open")
        if is_async:
            rounds = on_loop(run_async(adapter, job))
        else:
            rounds = run_sync(adapter, job)
    except Exception as e:
        finish({"library": library, "error": error_text(e)}, 1)
    finish({"library": library, "version": adapter.version, "rounds": rounds})


# asyncpg runs on a loop in a daemon thread, so the main thread can always print and exit.
LOOP = asyncio.new_event_loop()
threading.Thread(target=LOOP.run_forever, daemon=True).start()

if __name__ == "__main__":
    main()
