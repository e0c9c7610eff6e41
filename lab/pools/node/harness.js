// Pool-matrix harness for the Node.js libraries: builds the library's real pool from one job (see
// ../README.md; the library is job.library, its module libs/<library>.js), warms it, lets it idle,
// queries through the library's normal path and prints one result JSON on stdout.
'use strict'

const fs = require('fs')
const { performance } = require('perf_hooks')

const LIBRARIES = ['node-postgres', 'postgres-js', 'postgres-js-3', 'knex', 'sequelize', 'typeorm', 'prisma-adapter-pg']

// Libraries that log (notices, queries) must not write into the one line of stdout we print.
console.log = (...args) => console.error(...args)
console.info = console.log

const log = (...args) => console.error('node-harness:', ...args)

// Error texts go into the result: cut them, and make sure the password never appears (as it is
// or as a URL carries it).
function errorText(err, secrets) {
  let text = `${err && err.name ? err.name : 'Error'}: ${err && err.message ? err.message : String(err)}`
  if (err && err.code) text += ` (${err.code})`
  for (const secret of secrets) if (secret) text = text.split(secret).join('***')
  return text.replace(/\s+/g, ' ').slice(0, 200)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Runs `count` concurrent SELECT 1 through the library's normal path (acquire, execute, release).
// Queries not settled `hangSeconds` after the start are hung: abandoned, not awaited.
async function runQueries(db, count, hangSeconds, secrets) {
  const start = performance.now()
  const outcomes = new Array(count).fill(null)
  const queries = []
  for (let i = 0; i < count; i++) {
    queries.push(
      Promise.resolve()
        .then(() => db.query())
        .then(
          () => { outcomes[i] = { ok: true, latency: (performance.now() - start) / 1000 } },
          (err) => { outcomes[i] = { ok: false, error: errorText(err, secrets) } }
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

// The matrix starts its jobs in waves with the same rounds, so without this every harness of a
// wave would wake, reconnect and query in the same instant on a 2-core machine, and a cell would
// measure that herd instead of its library. A start offset of up to START_SPREAD_MS spreads them;
// it is before the warm-up, so it changes no idle period, and the contract's 30 s slack covers it.
const START_SPREAD_MS = 4000

async function run(job, lib, secrets) {
  const offset = Math.floor(Math.random() * START_SPREAD_MS)
  await sleep(offset)
  log(`started after ${offset} ms`)
  const db = await lib.open(job, (err) => log('idle client error:', errorText(err, secrets)))
  const warm = (job.pool && job.pool.min) || 1
  const warmed = await runQueries(db, warm, job.hang_seconds, secrets)
  // A pool may still be opening its last connections (postgres.js grows to min after the queries
  // it served on fewer): give it a few seconds.
  for (let waited = 0; waited < 5000 && db.connections() < warm; waited += 100) await sleep(100)
  if (!warmed.every((o) => o && o.ok) || db.connections() < warm) {
    const why = warmed.map((o) => (o ? o.error : 'hung')).filter(Boolean)
    throw new Error(`warm-up failed (${db.connections()}/${warm} connections): ${why.join('; ')}`)
  }
  log(`warm: ${db.connections()} connections`)
  const rounds = []
  for (const round of job.rounds) {
    await sleep(round.idle_seconds * 1000)
    const outcomes = await runQueries(db, round.queries, job.hang_seconds, secrets)
    rounds.push(summarize(round.idle_seconds, outcomes))
    log(`round idle=${round.idle_seconds}s: ${JSON.stringify(rounds[rounds.length - 1])} connections=${db.connections()}`)
  }
  return rounds
}

function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
  const library = LIBRARIES.includes(job.library) ? job.library : null
  const lib = library ? require(`./libs/${library}`) : null
  const version = lib ? lib.version() : 'unknown'
  const secrets = [job.dsn.password, encodeURIComponent(job.dsn.password)]
  const finish = (result, code) => {
    process.stdout.write(JSON.stringify(result) + '\n')
    // No pool.end(): a client stuck on a dead socket would keep us waiting.
    process.exit(code)
  }
  // The contract's hard bound; our own per-round deadlines should make this never fire.
  const budget = job.rounds.reduce((s, r) => s + r.idle_seconds + job.hang_seconds + 5, 25 + START_SPREAD_MS / 1000)
  setTimeout(() => { log(`gave up after ${budget}s`); process.exit(1) }, budget * 1000).unref()
  const started = lib ? run(job, lib, secrets) : Promise.reject(new Error(`no harness for library ${job.library}`))
  started.then(
    (rounds) => finish({ library: job.library, version, rounds }, 0),
    (err) => {
      const text = errorText(err, secrets)
      log(text)
      finish({ library: job.library, version, error: text, rounds: [] }, 1)
    }
  )
}

main()
