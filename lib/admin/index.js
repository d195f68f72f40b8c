'use strict'
// The admin endpoint (server.listenAdmin): an operator's HTTP surface over
// node:http, off unless asked for. /metrics (Prometheus text, or JSON with
// ?format=json), /connections and /sessions (JSON, paged and sorted as
// NATS's /connz), / (a live dashboard), /events (Server-Sent Events for
// it) and the dashboard's static files, uPlot's served from the package.

const http = require('node:http')
const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')
const { EventEmitter } = require('node:events')
const util = require('node:util')
const metrics = require('../metrics')
const { describe, checkedPort } = require('../options')

/** Files the dashboard loads: public package files, served without the token. */
const STATIC = {
  '/dashboard.js': [path.join(__dirname, 'dashboard.js'), 'text/javascript; charset=utf-8'],
  '/uplot.min.js': [require.resolve('uplot/dist/uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
  '/uplot.min.css': [require.resolve('uplot/dist/uPlot.min.css'), 'text/css; charset=utf-8']
}
const PAGE = path.join(__dirname, 'dashboard.html')

/** Headers of every answer: nothing is cached, sniffed, framed or leaked in a Referer. */
const SECURITY_HEADERS = {
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': "frame-ancestors 'none'",
}
/** Host names a loopback endpoint without a token answers to (DNS rebinding). */
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]'])
/** Bytes an /events client may leave unread before it is dropped. */
const MAX_STREAM_BACKLOG = 2 ** 20
/** Open /events streams at most. */
const MAX_STREAMS = 64

/** NATS's /connz default page size. */
const DEFAULT_LIMIT = 1024
/** How often /events sends a sample, by default. */
const DEFAULT_INTERVAL = 1 * 1000
/** The connections an /events sample carries (the dashboard's table). */
const EVENTS_CONNECTIONS = 200

/**
 * The admin endpoint of one server. Emits `listening`, `error` and `close`,
 * as a net.Server does; `address()` and `close(cb)` likewise.
 */
function AdminEndpoint (server, options) {
  EventEmitter.call(this)
  this._server = server
  this._token = options.token == null ? null : crypto.createHash('sha256').update(String(options.token)).digest()
  this._interval = options.interval
  this._streams = new Set()
  this._timer = null
  this._closed = false
  this.http = http.createServer((req, res) => this._handle(req, res))
  this.http.on('listening', () => this.emit('listening'))
  this.http.on('error', (err) => this.emit('error', err))
  this.http.on('close', () => this.emit('close'))
}
util.inherits(AdminEndpoint, EventEmitter)

AdminEndpoint.prototype.address = function () {
  return this.http.address()
}

/** Stops serving and ends the open /events streams; `cb` once closed. */
AdminEndpoint.prototype.close = function (cb) {
  if (this._closed) {
    if (typeof cb === 'function') process.nextTick(cb)
    return this
  }
  this._closed = true
  clearInterval(this._timer)
  this._timer = null
  for (const res of this._streams) res.end()
  this._streams.clear()
  this.http.close(typeof cb === 'function' ? () => cb() : undefined)
  this.http.closeIdleConnections()
  return this
}

/**
 * The request carries the token: `Authorization: Bearer <token>`, or
 * `?token=` on the dashboard page and its /events stream only (an
 * EventSource cannot set headers). Without a token, only requests to a
 * loopback host name pass: a web page whose name was rebound to 127.0.0.1
 * must not read session ids.
 */
AdminEndpoint.prototype._authorized = function (req, url) {
  if (!this._token) {
    const host = String(req.headers.host || '').replace(/:\d+$/, '').toLowerCase()
    return LOOPBACK_HOSTS.has(host)
  }
  const header = /^Bearer\s+(.+)$/i.exec(req.headers.authorization || '')
  const inQuery = url.pathname === '/' || url.pathname === '/events'
  const given = header ? header[1].trim() : inQuery ? url.searchParams.get('token') : null
  if (given == null) return false
  const digest = crypto.createHash('sha256').update(given).digest()
  return crypto.timingSafeEqual(digest, this._token)
}

AdminEndpoint.prototype._handle = function (req, res) {
  let url
  try {
    url = new URL(req.url, 'http://admin')
  } catch {
    // A request target URL cannot read (`//[`): the client's mistake.
    return reply(res, 400, { error: 'bad request target' })
  }
  try {
    this._route(req, res, url)
  } catch (err) {
    if (!res.headersSent) reply(res, 500, { error: `uhura admin: ${err.message}` })
    else res.destroy()
  }
}

AdminEndpoint.prototype._route = function (req, res, url) {
  if (this._closed) return reply(res, 503, { error: 'the admin endpoint is closing' })
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return reply(res, 405, { error: 'method not allowed' }, { Allow: 'GET, HEAD' })
  }
  const asset = STATIC[url.pathname]
  if (asset) return sendFile(res, asset[0], asset[1])
  if (!this._authorized(req, url)) {
    if (!this._token) return reply(res, 403, { error: 'forbidden: without a token, only a loopback host name (localhost, 127.0.0.1, [::1]) is served' })
    return reply(res, 401, { error: 'unauthorized: send Authorization: Bearer <token>' }, { 'WWW-Authenticate': 'Bearer' })
  }
  const server = this._server
  switch (url.pathname) {
    case '/':
      return sendFile(res, PAGE, 'text/html; charset=utf-8')
    case '/metrics': {
      const m = server.metrics()
      if (!m) return reply(res, 410, { error: 'the server is gone' })
      if (url.searchParams.get('format') === 'json') return reply(res, 200, m)
      res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' })
      return res.end(metrics.prometheusText(m))
    }
    case '/connections':
    case '/sessions': {
      const name = url.pathname.slice(1)
      const list = (name === 'connections' ? server.connections() : server.sessions()) || []
      const page = paged(list, url.searchParams, name === 'connections' ? 'id' : 'id')
      if (page.error) return reply(res, 400, { error: page.error })
      return reply(res, 200, { now: Date.now(), total: list.length, offset: page.offset, limit: page.limit, sort: page.sort, order: page.order, [name]: page.items })
    }
    case '/events':
      return this._stream(req, res)
    default:
      return reply(res, 404, { error: 'not found' })
  }
}

/** One sample for the dashboard. */
AdminEndpoint.prototype._sample = function () {
  const connections = this._server.connections() || []
  return JSON.stringify({
    now: Date.now(),
    metrics: this._server.metrics(),
    connections: connections.slice(0, EVENTS_CONNECTIONS),
    connectionsTotal: connections.length
  })
}

/** /events: a sample now, then one per interval, until the client or the endpoint goes. */
AdminEndpoint.prototype._stream = function (req, res) {
  if (this._streams.size >= MAX_STREAMS) return reply(res, 503, { error: `at most ${MAX_STREAMS} /events streams at once` })
  res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream', Connection: 'keep-alive' })
  res.write(`retry: ${this._interval}\n\n`)
  res.write(`data: ${this._sample()}\n\n`)
  this._streams.add(res)
  req.on('close', () => {
    this._streams.delete(res)
    if (this._streams.size === 0) {
      clearInterval(this._timer)
      this._timer = null
    }
  })
  if (!this._timer) {
    this._timer = setInterval(() => {
      const data = `data: ${this._sample()}\n\n`
      for (const s of this._streams) {
        // A client that stopped reading is dropped, not buffered for.
        if (s.writableLength > MAX_STREAM_BACKLOG) s.destroy()
        else s.write(data)
      }
    }, this._interval)
    // The admin endpoint alone never keeps the process alive.
    this._timer.unref()
  }
}

/** Pages and sorts `list` by ?offset, ?limit, ?sort (a field) and ?order (asc or desc). */
function paged (list, params, defaultSort) {
  const int = (name, dflt) => {
    const v = params.get(name)
    if (v == null || v === '') return dflt
    return /^\d+$/.test(v) ? Number(v) : NaN
  }
  const offset = int('offset', 0)
  const limit = int('limit', DEFAULT_LIMIT)
  if (Number.isNaN(offset) || Number.isNaN(limit)) return { error: 'offset and limit must be non-negative integers' }
  const sort = params.get('sort') || defaultSort
  const order = params.get('order') || 'asc'
  if (order !== 'asc' && order !== 'desc') return { error: 'order must be asc or desc' }
  if (list.length > 0 && !(sort in list[0])) return { error: `cannot sort by ${sort}: the fields are ${Object.keys(list[0]).join(', ')}` }
  const sign = order === 'asc' ? 1 : -1
  const sorted = list.slice().sort((a, b) => sign * compare(a[sort], b[sort]))
  return { offset, limit, sort, order, items: sorted.slice(offset, offset + limit) }
}

/** Orders nulls first, then numbers, then strings. */
function compare (a, b) {
  if (a === b) return 0
  if (a == null) return -1
  if (b == null) return 1
  if (typeof a === 'number' && typeof b === 'number') return a - b
  return String(a) < String(b) ? -1 : 1
}

function reply (res, status, body, headers) {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8', ...headers })
  res.end(JSON.stringify(body))
}

function sendFile (res, file, type) {
  fs.readFile(file, (err, data) => {
    if (err) return reply(res, 500, { error: 'cannot read ' + path.basename(file) })
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': type, 'Cache-Control': 'no-cache' })
    res.end(data)
  })
}

/**
 * server.listenAdmin({ port, host = '127.0.0.1', token, interval }, cb):
 * `cb(err)` once listening, or with the listen error (which is then not
 * emitted as 'error').
 */
function listen (server, options, cb) {
  if (options == null || typeof options !== 'object') {
    throw new TypeError(`uhura: listenAdmin(options) takes { port, host, token }, got ${describe(options)}`)
  }
  if (options.token != null && (typeof options.token !== 'string' || options.token === '')) {
    throw new TypeError('uhura: listenAdmin: token must be a non-empty string')
  }
  const interval = options.interval == null ? DEFAULT_INTERVAL : Number(options.interval)
  if (!(interval >= 10)) throw new RangeError(`uhura: listenAdmin: interval must be at least 10 ms, got ${describe(options.interval)}`)
  const port = checkedPort(options.port == null ? 0 : options.port)
  const host = options.host || '127.0.0.1'
  if (options.token == null && !['127.0.0.1', '::1', 'localhost'].includes(host)) {
    // Session ids are secrets (a resume with one takes the session over).
    throw new TypeError(`uhura: listenAdmin: a token is required to listen on ${host}, beyond loopback`)
  }
  const admin = new AdminEndpoint(server, { token: options.token, interval })
  if (typeof cb === 'function') {
    const onError = (err) => {
      admin.removeListener('listening', onListening)
      cb(err)
    }
    const onListening = () => {
      admin.removeListener('error', onError)
      cb(null)
    }
    admin.once('error', onError)
    admin.once('listening', onListening)
  }
  admin.http.listen(port, host)
  return admin
}

module.exports = { listen, AdminEndpoint }
