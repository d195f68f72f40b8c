'use strict'
// The client: connect, reconnect and backoff, and the original's
// createConnection hook.

const util = require('util')
const { SendEmitter } = require('./connection')
const { native, handles, whenBatchHandled, keepAlive, releaseOnCollect } = require('./native')
const { addressesOf, bindStream } = require('./js-stream')
const { describe, nonNegative, limitsOf, checkedPort, peerOptions, tlsOptions } = require('./options')
const metrics = require('./metrics')

function Client () {
  if (!(this instanceof Client)) return new Client()
  SendEmitter.call(this)
  this.options = null
  this._active = false
  this._keepingAlive = false
  this.resumeSecret = undefined
  // Every field a connected client has, assigned in this body (some again,
  // after SendEmitter's), because V8 makes a new object with room for about
  // as many fields as its constructor's own body assigns (plus a few): the
  // rest, set later, went to a separate, larger property array.
  this._h = 0
  this.ready = false
  this.objectMode = false
  this.enableAcks = false
  this._endpoints = null
  this._ports = null
}
util.inherits(Client, SendEmitter)

// Defaults, the client's own once set (see SendEmitter).
Client.prototype._stopped = false

/**
 * connect(port[, host][, cb]) or connect(options[, cb]).
 */
Client.prototype.connect = function (a, b, c) {
  let options
  let cb
  if (a !== null && typeof a === 'object') {
    options = Object.assign({}, a)
    cb = typeof b === 'function' ? b : undefined
  } else {
    options = { port: a, host: typeof b === 'string' ? b : undefined }
    cb = typeof b === 'function' ? b : typeof c === 'function' ? c : undefined
  }
  if (options.logErrors) this.logErrors = true
  if (options.maxQueueLength != null) this._maxQueueLength = options.maxQueueLength
  if (options.maxSessionBytes != null) this._maxSessionBytes = nonNegative(options.maxSessionBytes, 'options.maxSessionBytes')
  // The shared default limits (the prototype's) unless the options set others.
  const limits = limitsOf(options)
  if (limits !== this._limits) this._limits = limits
  this.options = options
  if (cb) this.once('connect', cb)
  if (this._h) throw new Error('uhura: this client is already connected; use reconnect()')
  if (options.ackTimeout !== undefined || this._ackTimeout !== undefined) this._ackTimeout = options.ackTimeout
  const native_ = {
    servers: undefined,
    peer: peerOptions(options, this._maxQueueLength)
  }
  if (typeof options.createConnection === 'function') {
    // The original's factory hook: each (re)connection asks it for a stream.
    native_.servers = []
    native_.js = true
  } else {
    if (options.createConnection != null) throw new TypeError('uhura: options.createConnection must be a function')
    const servers = Array.isArray(options.servers) && options.servers.length > 0 ? options.servers : [options]
    native_.servers = servers.map((o) => (o.path != null
      ? { path: String(o.path) }
      : { host: o.host || undefined, port: checkedPort(o.port) }))
    if (options.tls) native_.tls = tlsOptions(options.tls)
  }
  this._h = native.createClient(native_)
  handles.set(this._h, this)
  // A stopped client keeps its Rust side for reconnect(); it goes when this object does.
  releaseOnCollect.register(this, this._h)
  this._active = true
  keepAlive(this, this._ref)
  // Start on the next tick, so autoReconnect() and friends called right
  // after createClient() apply to the first attempt, as in the original.
  startSoon(this._h)
  return this
}

// Clients to start on the next tick, in the order they were made: one tick
// for every client made in a run of code, rather than a tick (its object,
// its async bookkeeping: ~0.4 KB of garbage) for each.
let toStart = []

function startSoon (h) {
  if (toStart.length === 0) process.nextTick(startAll)
  toStart.push(h)
}

function startAll () {
  const hs = toStart
  toStart = []
  for (let i = 0; i < hs.length; i++) {
    try {
      native.clientStart(hs[i])
    } catch (err) {
      // As from a tick of its own: an uncaught exception, and the others still start.
      process.nextTick(rethrow, err)
    }
  }
}

function rethrow (err) {
  throw err
}

/**
 * Connects over a duplex stream the application opened itself (the
 * original's attach). Later reconnects need `options.createConnection`.
 */
Client.prototype.attach = function (stream) {
  if (!stream || typeof stream.on !== 'function' || typeof stream.write !== 'function') {
    throw new TypeError(`uhura: attach(stream) takes a duplex stream, got ${describe(stream)}`)
  }
  let given = stream
  return this.connect({
    createConnection: (options, cb) => {
      if (given === null) return cb(new Error('uhura: the attached stream has closed; give connect() a createConnection factory to reconnect'))
      const s = given
      given = null
      cb(null, s)
    }
  })
}

/** Closes the connection and connects again; also starts a client stopped by disconnect() again. */
/**
 * This client's traffic since it was created (across reconnections), what
 * it has pending, its reconnections and its current connection; null
 * before connect().
 */
Client.prototype.stats = function () {
  return this._h ? metrics.clientStats(this._h) : null
}

Client.prototype.reconnect = function (cb) {
  if (!this._h) throw new Error('uhura: reconnect() before connect(): there is nowhere to reconnect to')
  if (typeof cb === 'function') this.once('connect', cb)
  this.ready = false
  this._stopped = false
  handles.set(this._h, this)
  this._flush()
  // In call order with a disconnect() made in the same listener.
  const h = this._h
  whenBatchHandled(() => native.clientReconnect(h))
  this._active = true
  keepAlive(this, this._ref)
}

Client.prototype.autoReconnect = function (min, max) {
  // 0 or nothing means the default (Rust's, src/protocol/backoff.rs), as in the original.
  min = min ? nonNegative(min, 'autoReconnect(min)') : 0
  max = max ? nonNegative(max, 'autoReconnect(max)') : 0
  native.clientAutoReconnect(this._h, min, max)
}

Client.prototype.disconnect = function () {
  // Never connected, or already stopped: nothing to close.
  if (!this._h || (this._stopped && !this._active)) return
  this._stopped = true
  this._flush()
  const h = this._h
  whenBatchHandled(() => native.clientDisconnect(h))
}

Client.prototype._isOpen = function () {
  return this._active
}

/** Rust asks for a stream: call the user's createConnection factory. */
Client.prototype._openTransport = function () {
  const h = this._h
  let called = false
  const done = (err, stream) => {
    if (called) return
    called = true
    if (err || !stream) {
      const e = err || new Error('uhura: createConnection gave no stream')
      native.clientOpenFailed(h, String(e.message || e))
      this.emit('error', e)
      return
    }
    this.socket = stream
    native.clientOpened(h, addressesOf(stream))
    bindStream(h, stream, (e) => this.emit('error', e))
    if (!this._ref && typeof stream.unref === 'function') stream.unref()
  }
  try {
    const r = this.options.createConnection(this.options, done)
    // Also accept a factory that returns the stream (as net.createConnection does).
    if (r && typeof r.on === 'function' && typeof r.write === 'function') done(null, r)
  } catch (e) {
    done(e)
  }
}

Client.prototype._onConnected = function (info) {
  SendEmitter.prototype._onConnected.call(this, info)
  // With `sessionID`, what a restarted process needs to resume this session.
  if (info.resumeSecret !== undefined) this.resumeSecret = info.resumeSecret
  // A socket nobody asked for yet has no listeners to tell.
  if (this._socket !== null) this._socket.emit('connect')
  this.emit('connect', { objectMode: info.objectMode, enableAcks: info.enableAcks })
}

Client.prototype._onMessage = function (args) {
  if (args[0] === 'invalidateSession') this.session = {}
  SendEmitter.prototype._onMessage.call(this, args)
}

Client.prototype._onStopped = function () {
  // reconnect() was called since: the client is starting again.
  if (!this._stopped) return
  this.ready = false
  this._active = false
  keepAlive(this, false)
  if (this._acks.size === 0) handles.delete(this._h)
}

Client.prototype._acksSettled = function () {
  if (!this._active && this._stopped) handles.delete(this._h)
}

Client.prototype._onDisconnected = function (willReconnect) {
  if (!willReconnect) {
    this._active = false
    keepAlive(this, false)
  }
  this._onClosed()
}

module.exports = Client
