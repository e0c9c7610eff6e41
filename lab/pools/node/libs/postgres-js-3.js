// postgres.js 3.x (npm alias `postgres3` of postgres@3.4.10: no `min`, no query_timeout, one
// timer per connection). Scope of the printed text: `postgres`, `url` (no password in it),
// `options` (the application's: password, pool size). 3.x exposes no count of its connections:
// the `debug` hook (called with the connection's id for every query) counts those that ran one.
'use strict'

const postgres = require('postgres3')
const { build } = require('../recipe')
const { version, url } = require('./common')

const LIBRARY = 'postgres-js-3'
// parseOptions' defaults (node_modules/postgres3/cjs/src/index.js).
const KNOWN = new Set([
  'max', 'idle_timeout', 'connect_timeout', 'max_lifetime', 'keep_alive', 'backoff',
  'max_pipeline', 'prepare',
])

async function open(job) {
  const used = new Set()
  const options = {
    password: job.dsn.password,
    debug: (connection) => used.add(connection),
    ...(job.pool ? { max: job.pool.max } : {}),
  }
  const sql = build(job, LIBRARY, KNOWN,
    (capture) => ({
      url: url(job.dsn, false), options,
      postgres: (u, o) => { capture(o); return postgres(u, o) },
    }),
    () => postgres(url(job.dsn, false), options))
  return { query: () => sql`SELECT 1`.then((rows) => rows), connections: () => used.size }
}

module.exports = { LIBRARY, version: () => `postgres ${version('postgres3')}`, open }
