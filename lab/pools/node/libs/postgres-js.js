// postgres.js (the `postgres` package, ES module only). Scope of the printed text: `postgres`,
// `url` (no password in it), `options` (the application's: password, pool size).
'use strict'

const { build } = require('../recipe')
const { version, url } = require('./common')

const LIBRARY = 'postgres-js'
// parseOptions' defaults (node_modules/postgres/src/index.js).
const KNOWN = new Set([
  'max', 'min', 'idle_timeout', 'connect_timeout', 'max_lifetime', 'keep_alive', 'query_timeout',
  'queue_timeout', 'cancel_timeout', 'backoff', 'max_pipeline', 'prepare',
])

async function open(job) {
  const { default: postgres } = await import('postgres')
  const options = { password: job.dsn.password, ...(job.pool ? { min: job.pool.min, max: job.pool.max } : {}) }
  const sql = build(job, LIBRARY, KNOWN,
    (capture) => ({
      url: url(job.dsn, false), options,
      postgres: (u, o) => { capture(o); return postgres(u, o) },
    }),
    () => postgres(url(job.dsn, false), options))
  return { query: () => sql`SELECT 1`.then((rows) => rows), connections: () => sql.stats.connections }
}

module.exports = { LIBRARY, version: () => `postgres ${version('postgres')}`, open }
