// Knex over pg (tarn pool). Scope of the printed text: `knex`, `config` (the application's:
// client 'pg', connection, pool size).
'use strict'

const knexLib = require('knex')
const { build } = require('../recipe')
const { version, pgConnection } = require('./common')

const LIBRARY = 'knex'
// Knex's config keys the recipes use: `pool` (tarn's options, knex/lib/client.js getPoolSettings)
// and `connection` (handed to new pg.Client).
const KNOWN = new Set(['pool', 'connection', 'acquireConnectionTimeout'])

async function open(job) {
  const config = {
    client: 'pg',
    connection: pgConnection(job.dsn),
    ...(job.pool ? { pool: { min: job.pool.min, max: job.pool.max } } : {}),
  }
  const db = build(job, LIBRARY, KNOWN,
    (capture) => ({ config, knex: (c) => { capture(c); return knexLib(c) } }),
    () => knexLib(config))
  const pool = () => db.client.pool
  return {
    query: () => db.raw('SELECT 1'),
    connections: () => (pool() ? pool().numUsed() + pool().numFree() : 0),
  }
}

module.exports = {
  LIBRARY,
  version: () => `knex ${version('knex')} (tarn ${version('tarn')}, pg ${version('pg')})`,
  open,
}
