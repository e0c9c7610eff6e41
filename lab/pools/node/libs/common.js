// What every library module shares: the job's server, and package versions read from disk (some
// packages export no package.json).
'use strict'

const fs = require('fs')
const path = require('path')

const MODULES = path.join(__dirname, '..', 'node_modules')

function version(pkg) {
  return JSON.parse(fs.readFileSync(path.join(MODULES, pkg, 'package.json'), 'utf8')).version
}

// The job's server as pg.Client takes it.
function pgConnection(dsn) {
  return { host: dsn.host, port: dsn.port, user: dsn.user, password: dsn.password, database: dsn.dbname }
}

// The server as a URL; with `password` false the password stays out (passed as an option).
function url(dsn, password) {
  const auth = encodeURIComponent(dsn.user) + (password ? `:${encodeURIComponent(dsn.password)}` : '')
  return `postgres://${auth}@${dsn.host}:${dsn.port}/${encodeURIComponent(dsn.dbname)}`
}

module.exports = { version, pgConnection, url }
