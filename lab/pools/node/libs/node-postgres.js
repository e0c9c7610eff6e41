// node-postgres: pg.Pool. Scope of the printed text: `Pool`, `config` (the application's options).
'use strict'

const pg = require('pg')
const { build } = require('../recipe')
const { version, pgConnection } = require('./common')

const LIBRARY = 'node-postgres'
// pg-pool's options (node_modules/pg-pool/index.js) and the pg.Client options it passes to each
// client (node_modules/pg/lib/connection-parameters.js, client.js).
const KNOWN = new Set([
  'min', 'max', 'idleTimeoutMillis', 'maxLifetimeSeconds', 'maxUses', 'connectionTimeoutMillis',
  'keepAlive', 'keepAliveInitialDelayMillis', 'query_timeout', 'statement_timeout',
  'lock_timeout', 'idle_in_transaction_session_timeout',
])

async function open(job, onIdleError) {
  const config = { ...pgConnection(job.dsn), ...(job.pool ? { min: job.pool.min, max: job.pool.max } : {}) }
  const pool = build(job, LIBRARY, KNOWN,
    (capture) => ({ config, Pool: function Pool(options) { capture(options); return new pg.Pool(options) } }),
    () => new pg.Pool(config))
  // Without a listener an idle client's socket error (a FIN or RST while idle) would crash the
  // process; pg-pool has already removed that client when it emits this.
  pool.on('error', onIdleError)
  return { query: () => pool.query('SELECT 1'), connections: () => pool.totalCount }
}

module.exports = { LIBRARY, version: () => version('pg'), open }
