// TypeORM over pg. Scope of the printed text: `DataSource`, `options` (the application's:
// type 'postgres', the server, poolSize = pg.Pool's max, extra.min).
'use strict'

const typeorm = require('typeorm')
const { build } = require('../recipe')
const { version } = require('./common')

const LIBRARY = 'typeorm'
const KNOWN = new Set(['extra', 'poolSize', 'connectTimeoutMS'])

async function open(job) {
  const { dsn } = job
  const options = {
    type: 'postgres', host: dsn.host, port: dsn.port, username: dsn.user, password: dsn.password,
    database: dsn.dbname,
    ...(job.pool ? { poolSize: job.pool.max, extra: { min: job.pool.min } } : {}),
  }
  const source = build(job, LIBRARY, KNOWN,
    (capture) => ({
      options,
      DataSource: function DataSource(o) { capture(o); return new typeorm.DataSource(o) },
    }),
    () => new typeorm.DataSource(options))
  await source.initialize()
  return {
    query: () => source.query('SELECT 1'),
    connections: () => source.driver.master.totalCount,
  }
}

module.exports = {
  LIBRARY,
  version: () => `TypeORM ${version('typeorm')} (pg ${version('pg')})`,
  open,
}
