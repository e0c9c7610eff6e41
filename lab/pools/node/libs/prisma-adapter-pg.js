// Prisma 7 with @prisma/adapter-pg: the client `install.sh` generated (prisma-client generator,
// TypeScript compiled to CommonJS in prisma/client/). Scope of the printed text: `PrismaPg`,
// `config` (the application's pg.Pool config: the server, pool size).
'use strict'

const path = require('path')
const { PrismaPg: RealPrismaPg } = require('@prisma/adapter-pg')
const { build } = require('../recipe')
const { version, pgConnection } = require('./common')

const LIBRARY = 'prisma-adapter-pg'
// The adapter hands its config to new pg.Pool as it is: pg-pool's and pg.Client's options.
const KNOWN = new Set([
  'min', 'max', 'idleTimeoutMillis', 'maxLifetimeSeconds', 'connectionTimeoutMillis',
  'keepAlive', 'keepAliveInitialDelayMillis', 'query_timeout', 'statement_timeout',
])

// The real adapter factory; it only also remembers the pg.Pool it makes, to count connections.
class ObservedPrismaPg extends RealPrismaPg {
  async connect() {
    const adapter = await super.connect()
    this.pool = adapter.underlyingDriver()
    return adapter
  }
}

async function open(job) {
  const { PrismaClient } = require(path.join(__dirname, '..', 'prisma', 'client', 'client.js'))
  const config = { ...pgConnection(job.dsn), ...(job.pool ? { min: job.pool.min, max: job.pool.max } : {}) }
  const adapter = build(job, LIBRARY, KNOWN,
    (capture) => ({ config, PrismaPg: function PrismaPg(c) { capture(c); return new ObservedPrismaPg(c) } }),
    () => new ObservedPrismaPg(config))
  const prisma = new PrismaClient({ adapter })
  return {
    query: () => prisma.$queryRaw`SELECT 1`,
    connections: () => (adapter.pool ? adapter.pool.totalCount : 0),
  }
}

module.exports = {
  LIBRARY,
  version: () => `Prisma ${version('@prisma/client')} (@prisma/adapter-pg ${version('@prisma/adapter-pg')}, pg ${version('pg')})`,
  open,
}
