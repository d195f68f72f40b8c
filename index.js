'use strict'
// uhura: a server-to-server event emitter wire protocol, API- and
// wire-compatible with uhura 0.1.2, with its protocol, sockets and sessions
// in Rust (the native addon, loaded by lib/addon.js). One module per role, in lib/.

const sessions = require('./lib/session')
const Client = require('./lib/client')
const Server = require('./lib/server')
const { Connection } = require('./lib/connection')

exports.debug = require('./lib/debug').api
exports.session = sessions.session
// Store factories take connect (`.session.Store`) or, from the
// express-session era on (connect-redis 1.5, session-file-store), the
// session module (`.Store`): `require('connect-redis')(Uhura)` works both ways.
exports.Store = sessions.Store
exports.RedisStore = sessions.RedisStore
exports.redisStore = function redisStore (options) {
  return new sessions.RedisStore(options)
}
exports.Client = Client
exports.Server = Server
exports.Connection = Connection
// Operator metrics: `register(registry, server[, labels])` for prom-client (an
// optional peer dependency), `text(snapshot)` for the Prometheus text.
exports.metrics = {
  register: (registry, server, labels) => require('./lib/metrics').register(registry, server, labels),
  text: (snapshot) => require('./lib/metrics').prometheusText(snapshot)
}

exports.createClient = function createClient (...args) {
  const client = new Client()
  client.connect(...args)
  return client
}

exports.createServer = function createServer (options, cb) {
  return new Server(options, cb)
}
