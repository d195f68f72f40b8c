'use strict'
// The server, with net.Server's surface, and the original's createServer
// hook; connect-style JavaScript stores are run for Rust from here.

const { EventEmitter } = require('events')
const util = require('util')
const sessions = require('./session')
const defaults = require('./defaults')
const Socket = require('./socket')
const { Connection } = require('./connection')
const { native, handles, acceptedBy, keepAlive, releaseServerOnCollect, makeError } = require('./native')
const { streams, addressesOf, bindStream } = require('./js-stream')
const { describe, nonNegative, checkedPort, peerOptions, tlsOptions, storeOptions, toJson, limitsOf, checkLimits } = require('./options')
const metrics = require('./metrics')

/**
 * A uhura server with net.Server's surface (the original's createServer
 * returned a net.Server). `connection` gives a socket for every accepted
 * connection before its handshake, as net does; `handshake` (and the
 * createServer callback) gives the uhura connection once it completes.
 */
function Server (options, onConnection) {
  if (!(this instanceof Server)) return new Server(options, onConnection)
  EventEmitter.call(this)
  if (typeof options === 'function') {
    onConnection = options
    options = {}
  }
  options = options || {}
  this.options = options
  this.logErrors = !!options.logErrors
  this._maxQueueLength = options.maxQueueLength
  this._maxConnections = undefined
  this._address = null
  this._listening = false
  this._bound = false
  this._factoryServer = null
  // The admin endpoint (listenAdmin), closed with the server.
  this._admin = null
  // Sockets of accepted connections still in their handshake, by handle.
  this._accepted = new Map()
  // net.Server's fields, as this server behaves.
  this.allowHalfOpen = false
  this.pauseOnConnect = false
  this.noDelay = true
  this.keepAlive = true
  this.keepAliveInitialDelay = defaults.keepAliveInitialDelay
  this.highWaterMark = 65536
  this._h = native.createServer({
    peer: { ...peerOptions(options), cookie: JSON.stringify(new sessions.Cookie(options.cookie)) },
    resumeWindow: options.resumeWindow == null ? undefined : nonNegative(options.resumeWindow, 'options.resumeWindow'),
    tls: options.tls ? tlsOptions(options.tls) : undefined,
    ...storeOptions(options)
  })
  // Redis keeps each session's pending events: sends can be durable.
  this._durableStore = options.store instanceof sessions.RedisStore
  if (options.durable && !this._durableStore) {
    throw new TypeError('uhura: options.durable needs a store that keeps delivery state: store: Uhura.redisStore(...)')
  }
  // sendTo / broadcast callbacks by number, until Rust reports them.
  this._fleetSeq = 0
  this._fleetCbs = new Map()
  this.store = options.store || null
  // The original's name for it, also on each connection.
  this.sessionStore = this.store
  // Addressable by Rust's events while listening, closing, or waiting for
  // sendTo / broadcast outcomes (set there); until then a server the
  // application drops is collected, and its Rust side freed.
  releaseServerOnCollect.register(this, this._h)
  if (typeof onConnection === 'function') this.on('handshake', onConnection)
  if (options.createServer != null) {
    if (typeof options.createServer !== 'function') throw new TypeError('uhura: options.createServer must be a function')
    // The original's factory hook (e.g. tls.createServer): it owns the
    // listening socket; each stream it accepts is pumped through Rust.
    this._factoryServer = options.createServer(options, (stream) => this._adoptStream(stream))
    // Its connections' events name this server from the start.
    handles.set(this._h, this)
    for (const ev of ['listening', 'close', 'error', 'connection', 'drop']) {
      this._factoryServer.on(ev, (...a) => {
        if (ev === 'listening') this._listening = true
        // A failed listen holds nothing open, as with net.Server.
        if (ev === 'close' || (ev === 'error' && !this._factoryServer.listening)) {
          this._listening = false
          keepAlive(this, false)
        }
        this.emit(ev, ...a)
      })
    }
  }
}
util.inherits(Server, EventEmitter)

Object.defineProperty(Server.prototype, 'listening', {
  get () {
    return this._listening
  },
  configurable: true
})

/** net.Server's maxConnections: connections beyond it are closed at once (`drop` event). */
Object.defineProperty(Server.prototype, 'maxConnections', {
  get () {
    return this._factoryServer ? this._factoryServer.maxConnections : this._maxConnections
  },
  set (n) {
    if (this._factoryServer) {
      this._factoryServer.maxConnections = n
      return
    }
    if (n != null && (typeof n !== 'number' || Number.isNaN(n) || n < 0)) {
      throw new RangeError(`uhura: server.maxConnections must be a non-negative number, got ${describe(n)}`)
    }
    this._maxConnections = n
    native.setMaxConnections(this._h, n == null ? undefined : n)
  },
  configurable: true
})

/** The original's Server#start(options, cb): takes the connection callback, returns the server. */
Server.prototype.start = function (options, cb) {
  if (typeof options === 'function') cb = options
  if (typeof cb === 'function') this.on('handshake', cb)
  return this
}

/**
 * listen(port[, host][, backlog][, cb]), listen(path[, cb]),
 * listen(options[, cb]) or listen([cb]).
 */
Server.prototype.listen = function (...args) {
  if (this._bound) {
    const err = new Error('Listen method has been called more than once without closing.')
    err.code = 'ERR_SERVER_ALREADY_LISTEN'
    throw err
  }
  if (this._factoryServer) {
    keepAlive(this, true)
    this._factoryServer.listen(...args)
    return this
  }
  const cb = typeof args[args.length - 1] === 'function' ? args.pop() : undefined
  let at
  let backlog
  const a0 = args[0]
  if (a0 !== null && typeof a0 === 'object') {
    backlog = a0.backlog
    at = a0.path != null ? { path: String(a0.path) } : { port: checkedPort(a0.port == null ? 0 : a0.port), host: a0.host || undefined }
  } else if (typeof a0 === 'string' && !/^\s*\d+\s*$/.test(a0)) {
    at = { path: a0 }
    if (typeof args[1] === 'number') backlog = args[1]
  } else {
    at = { port: checkedPort(a0 == null ? 0 : a0) }
    if (typeof args[1] === 'string') {
      at.host = args[1] || undefined
      backlog = args[2]
    } else if (typeof args[1] === 'number') backlog = args[1]
  }
  if (cb) this.once('listening', cb)
  this._listenId = native.listen(this._h, at, backlog == null ? undefined : Number(backlog))
  // Listening until close() or a failed listen; a listen after close() serves again.
  this._bound = true
  handles.set(this._h, this)
  keepAlive(this, true)
  return this
}

Server.prototype.address = function () {
  return this._factoryServer ? this._factoryServer.address() : this._address
}

/** net.Server's getConnections(cb): cb(null, connections open now). */
Server.prototype.getConnections = function (cb) {
  if (typeof cb !== 'function') throw new TypeError('uhura: getConnections(cb) takes a callback')
  if (this._factoryServer) return this._factoryServer.getConnections(cb)
  const n = native.serverConnections(this._h)
  process.nextTick(cb, null, n == null ? 0 : n)
  return this
}

/**
 * Stops accepting; `close` fires once every connection has ended. As with
 * net.Server, `cb` gets an ERR_SERVER_NOT_RUNNING error if the server was
 * not listening.
 */
Server.prototype.close = function (cb) {
  if (this._factoryServer) {
    this._factoryServer.close(cb)
    return this
  }
  if (typeof cb === 'function') {
    if (this._listening) this.once('close', cb)
    else {
      this.once('close', () => {
        const err = new Error('Server is not running.')
        err.code = 'ERR_SERVER_NOT_RUNNING'
        cb(err)
      })
    }
  }
  this._bound = false
  if (this._admin) this._admin.close()
  // Its CLOSED event (also for a server never listening) finds it.
  handles.set(this._h, this)
  native.closeServer(this._h)
  return this
}

/**
 * Counters since the server was created and gauges now (src/engine/metrics.rs):
 * connections, handshakes, sessions, events and bytes in and out, pending
 * events, drops, errors by code, heartbeat timeouts, store calls.
 */
Server.prototype.metrics = function () {
  return metrics.snapshot(this._h, 'metrics')
}

/** One entry per open connection (as NATS's /connz): id, address, session, mode, traffic. */
Server.prototype.connections = function () {
  return metrics.snapshot(this._h, 'connections')
}

/** Sessions of open connections and of dropped ones waiting to resume. */
Server.prototype.sessions = function () {
  return metrics.snapshot(this._h, 'sessions')
}

/** `metrics()` in the Prometheus text exposition format (version 0.0.4). */
Server.prototype.metricsText = function () {
  return metrics.prometheusText(this.metrics())
}

/**
 * Serves the admin endpoint over HTTP (lib/admin/): /metrics, /connections,
 * /sessions, a live dashboard at /. Binds 127.0.0.1 unless `host` says
 * otherwise; with a `token`, every request must carry it. `cb(err)` once
 * bound (or failed). Returns the endpoint, closed by its close() or with
 * the server's close().
 */
Server.prototype.listenAdmin = function (options, cb) {
  if (this._admin) throw new Error('uhura: listenAdmin() was already called; close the admin endpoint first')
  const admin = require('./admin').listen(this, options, cb)
  this._admin = admin
  const release = () => { if (this._admin === admin) this._admin = null }
  admin.on('close', release)
  // A listen that failed (EADDRINUSE) never closes: listenAdmin may be called again.
  admin.http.once('error', () => { if (!admin.http.listening) release() })
  return admin
}

Server.prototype.ref = function () {
  if (this._factoryServer && this._factoryServer.ref) this._factoryServer.ref()
  keepAlive(this, this._listening)
  return this
}

Server.prototype.unref = function () {
  if (this._factoryServer && this._factoryServer.unref) this._factoryServer.unref()
  keepAlive(this, false)
  return this
}

/** Runs one operation of a connect-style JavaScript store for Rust. */
Server.prototype._storeOp = function (req, op, sid, sess) {
  const h = this._h
  sessions.runStoreOp(this.store, op, sid, sess, (err, json) => {
    native.storeReply(h, req, err ? String(err.message || err) : undefined, json)
  })
}

Server.prototype._adoptStream = function (stream) {
  const h = native.adoptStream(this._h, addressesOf(stream))
  bindStream(h, stream, (err) => {
    const conn = handles.get(h)
    if (conn) conn.emit('error', err)
    else this._onClientError(h, { message: err.message, code: err.code })
  })
}

Server.prototype._onListening = function (info, listenId) {
  // A listener closed before it was up reports late: a later listen() is the one.
  if (listenId !== this._listenId) return
  this._address = info
  this._listening = true
  this.emit('listening')
}

Server.prototype._onClose = function () {
  // listen() again since: that close is moot, as with net.Server.
  if (this._bound) return
  this._listening = false
  keepAlive(this, false)
  this._releaseIfDone()
  this.emit('close')
}

Server.prototype._onError = function (info) {
  // listen() failed (EADDRINUSE and the like): as net.Server, an 'error' event.
  this._bound = false
  this._listening = false
  keepAlive(this, false)
  this.emit('error', makeError(info))
}

Server.prototype._onClientError = function (h, info) {
  // An error on a connection that never finished its handshake: there is no
  // connection object yet, so it is reported here (as http.Server does).
  const err = makeError(info)
  if (this.logErrors) console.error(err.stack)
  const socket = this._accepted.get(h)
  if (socket) socket.emit('error', err)
  if (this.listenerCount('clientError') > 0) this.emit('clientError', err)
}

/** A connection was accepted: net's `connection` event, with a socket, before the handshake. */
Server.prototype._onAccepted = function (h, info) {
  // Only made when somebody listens: an idle server pays nothing for it.
  if (this.listenerCount('connection') === 0) return
  const socket = new Socket(null, h)
  socket._update(info)
  this._accepted.set(h, socket)
  acceptedBy.set(h, this)
  this.emit('connection', socket)
}

/** A connection closed before its handshake completed. */
Server.prototype._onAcceptedClosed = function (h) {
  const socket = this._accepted.get(h)
  acceptedBy.delete(h)
  if (!socket) return
  this._accepted.delete(h)
  socket._onClosed()
}

/**
 * sendTo(sessionID, event, ...args[, cb]): the event reaches the session
 * wherever in the fleet it is connected, or waits in its queue (Redis)
 * until it resumes on any server. `cb(err)` once it is in that queue.
 */
Server.prototype.sendTo = function (sessionID, ...args) {
  if (typeof sessionID !== 'string' || sessionID === '') {
    throw new TypeError(`uhura: sendTo(sessionID, event, ...args): the session id must be a non-empty string, got ${describe(sessionID)}`)
  }
  const { json, seq } = this._fleetSend('sendTo', args)
  native.serverSendTo(this._h, sessionID, json, seq)
}

/**
 * broadcast(event, ...args[, cb]): the event reaches every session
 * connected to a server of the fleet (this one alone without Redis).
 * `cb(err)` once it is handed to the fleet.
 */
Server.prototype.broadcast = function (...args) {
  const { json, seq } = this._fleetSend('broadcast', args)
  native.serverBroadcast(this._h, json, seq)
}

/**
 * No longer addressable by Rust's events once it neither listens (nor is
 * bound again) nor waits for sendTo / broadcast outcomes: a server the
 * application then drops is collected. A factory server stays.
 */
Server.prototype._releaseIfDone = function () {
  if (!this._listening && !this._bound && !this._factoryServer && this._fleetCbs.size === 0) handles.delete(this._h)
}

/** The limits this server's sends check (its own and its connections'): made once, then shared. */
Server.prototype._sendLimits = function () {
  if (this._limits === undefined) this._limits = limitsOf(this.options)
  return this._limits
}

/** Checks a sendTo / broadcast's arguments and keeps its callback. */
Server.prototype._fleetSend = function (method, args) {
  const cb = typeof args[args.length - 1] === 'function' ? args.pop() : null
  if (typeof args[0] !== 'string') {
    throw new TypeError(`uhura: ${method}(${method === 'sendTo' ? 'sessionID, ' : ''}event, ...args): the event name must be a string, got ${describe(args[0])}`)
  }
  const what = () => `${method}(${JSON.stringify(args[0])})`
  const json = toJson(args, what)
  checkLimits(this._sendLimits(), json, args.length - 1, what)
  const seq = this._fleetSeq++
  this._fleetCbs.set(seq, cb)
  // A closed server can still send to the fleet: addressable until reported.
  handles.set(this._h, this)
  return { json, seq }
}

/** A sendTo / broadcast reached the fleet, or failed (`info`). */
Server.prototype._onPersisted = function (seq, info) {
  const cb = this._fleetCbs.get(seq)
  this._fleetCbs.delete(seq)
  const err = info ? makeError(info) : null
  this._releaseIfDone()
  if (cb) cb(err)
  // Without a callback a failure is an `error` event, if anyone listens.
  else if (err && this.listenerCount('error') > 0) this.emit('error', err)
}

Server.prototype._onConnection = function (h, info) {
  const conn = new Connection(this, h, info)
  const stream = streams.get(h)
  const socket = this._accepted.get(h)
  if (stream) conn.socket = stream
  else if (socket) {
    // The socket the `connection` event gave now belongs to this connection.
    this._accepted.delete(h)
    acceptedBy.delete(h)
    socket._owner = conn
    conn.socket = socket
  }
  conn._onConnected(info)
  // The original passes `true` on a resume and nothing on a new session.
  const reconnect = info.resumed ? true : undefined
  this.emit('handshake', conn, reconnect)
  conn.emit('connect', reconnect)
}

module.exports = Server
