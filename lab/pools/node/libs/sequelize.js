// Sequelize over pg. Scope of the printed text: `Sequelize`, `url`, `options` (the application's:
// dialect, pool size, logging off so that stdout carries only the result).
'use strict'

const sequelizeLib = require('sequelize')
const { build } = require('../recipe')
const { version, url } = require('./common')

const LIBRARY = 'sequelize'
const KNOWN = new Set(['pool', 'dialectOptions'])

async function open(job) {
  const options = {
    dialect: 'postgres',
    logging: false,
    ...(job.pool ? { pool: { min: job.pool.min, max: job.pool.max } } : {}),
  }
  const address = url(job.dsn, true)
  const db = build(job, LIBRARY, KNOWN,
    (capture) => ({
      url: address, options,
      Sequelize: function Sequelize(u, o) { capture(o); return new sequelizeLib.Sequelize(u, o) },
    }),
    () => new sequelizeLib.Sequelize(address, options))
  return {
    query: () => db.query('SELECT 1'),
    connections: () => db.connectionManager.pool.size,
  }
}

module.exports = {
  LIBRARY,
  version: () => `Sequelize ${version('sequelize')} (sequelize-pool ${version('sequelize-pool')}, pg ${version('pg')})`,
  open,
}
