// Pool-matrix harness for node-postgres: builds a real pg.Pool from one job (see ../README.md),
// warms it, lets it idle, queries through pool.query() and prints one result JSON on stdout.
'use strict'

const fs = require('fs')
const { performance } = require('perf_hooks')
const pg = require('pg')

const LIBRARY = 'node-postgres'
const VERSION = require('pg/package.json').version

// Recipe keys we pass to new pg.Pool(...): pg-pool's own options and the pg.Client options it
// forwards to every client. A key outside this list is refused, so that a typo in a recipe cannot
// pass the matrix by being silently ignored.
const RECIPE_KEYS = new Set([
  // pg-pool (node_modules/pg-pool/index.js)
  'min', 'max', 'idleTimeoutMillis', 'maxLifetimeSeconds', 'maxUses', 'connectionTimeoutMillis',
  // pg.Client (node_modules/pg/lib/connection-parameters.js, client.js)
  'keepAlive', 'keepAliveInitialDelayMillis', 'query_timeout', 'statement_timeout',
  'lock_timeout', 'idle_in_transaction_session_timeout',
])

const log = (...args) => console.error('node-harness:', ...args)

// Error texts go into the result: cut them and make sure the password never appears.
function errorText(err, password) {
  let text = `${err && err.name ? err.name : 'Error'}: ${err && err.message ? err.message : String(err)}`
  if (err && err.code) text += ` (${err.code})`
  if (password) text = text.split(password).join('***')
  return text.slice(0, 200)
}

function poolOptions(job) {
  const { dsn } = job
  const options = { host: dsn.host, port: dsn.port, user: dsn.user, password: dsn.password, database: dsn.dbname }
  if (job.pool) {
    options.min = job.pool.min
    options.max = job.pool.max
  }
  for (const [key, value] of Object.entries(job.recipe || {})) {
    if (!RECIPE_KEYS.has(key)) throw new Error(`unknown recipe key for ${LIBRARY}: ${key}`)
    options[key] = value
  }
  return options
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Runs `count` concurrent SELECT 1 through the pool's normal path (pool.query: acquire, execute,
// release). Queries not settled `hangSeconds` after the start are hung: abandoned, not awaited.
async function runQueries(pool, count, hangSeconds, password) {
  const start = performance.now()
  const outcomes = new Array(count).fill(null)
  const queries = []
  for (let i = 0; i < count; i++) {
    queries.push(
      pool.query('SELECT 1').then(
        () => { outcomes[i] = { ok: true, latency: (performance.now() - start) / 1000 } },
        (err) => { outcomes[i] = { ok: false, error: errorText(err, password) } }
      )
    )
  }
  const deadline = sleep(hangSeconds * 1000).then(() => 'deadline')
  await Promise.race([Promise.all(queries), deadline])
  // Copy now: a hung query that settles later must not change this round's counts.
  return outcomes.slice()
}

function summarize(idleSeconds, outcomes) {
  const ok = outcomes.filter((o) => o && o.ok)
  const failed = outcomes.filter((o) => o && !o.ok)
  const latencies = ok.map((o) => o.latency)
  return {
    idle_seconds: idleSeconds,
    ok: ok.length,
    failed: failed.length,
    hung: outcomes.filter((o) => o === null).length,
    max_latency_seconds: latencies.length ? Number(Math.max(...latencies).toFixed(4)) : null,
    errors: [...new Set(failed.map((o) => o.error))],
  }
}

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
  const password = job.dsn.password
  // The contract's hard bound; our own per-round deadlines should make this never fire.
  const budget = job.rounds.reduce((s, r) => s + r.idle_seconds + job.hang_seconds + 5, 25)
  setTimeout(() => { log(`gave up after ${budget}s`); process.exit(1) }, budget * 1000).unref()
  const pool = new pg.Pool(poolOptions(job))
  // Without a listener, an idle client's socket error (a FIN or RST while idle) would crash the
  // process; pg-pool has already removed that client when it emits this.
  pool.on('error', (err) => log('idle client error:', errorText(err, password)))

  const warm = (job.pool && job.pool.min) || 1
  const warmed = await runQueries(pool, warm, job.hang_seconds, password)
  if (!warmed.every((o) => o && o.ok) || pool.totalCount < warm) {
    const why = warmed.map((o) => (o ? o.error : 'hung')).filter(Boolean)
    throw new Error(`warm-up failed (${pool.totalCount}/${warm} connections): ${why.join('; ')}`)
  }
  log(`warm: ${pool.totalCount} connections`)

  const rounds = []
  for (const round of job.rounds) {
    await sleep(round.idle_seconds * 1000)
    const outcomes = await runQueries(pool, round.queries, job.hang_seconds, password)
    rounds.push(summarize(round.idle_seconds, outcomes))
    log(`round idle=${round.idle_seconds}s: ${JSON.stringify(rounds[rounds.length - 1])} pool total=${pool.totalCount}`)
  }
  return { library: LIBRARY, version: VERSION, rounds }
}

main().then(
  (result) => {
    process.stdout.write(JSON.stringify(result) + '\n')
    // Do not pool.end(): a client stuck on a dead socket would keep us waiting.
    process.exit(0)
  },
  (err) => {
    log(err && err.message ? err.message : String(err))
    process.stdout.write(JSON.stringify({ library: LIBRARY, version: VERSION, error: String(err && err.message).slice(0, 200), rounds: [] }) + '\n')
    process.exit(1)
  }
)
