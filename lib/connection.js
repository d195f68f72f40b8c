'use strict'
// What clients and server-side connections share (SendEmitter), and the
// server-side connection.

const { EventEmitter } = require('events')
const util = require('util')
const Socket = require('./socket')
const Acks = require('./acks')
const outbox = require('./outbox')
const { native, handles, enqueue, queued, flushOutbox, whenBatchHandled, keepAlive, makeError } = require('./native')
const { flatJson, toJson, describe, nonNegative, DEFAULT_LIMITS, MESSAGE_OVERHEAD, checkLimits } = require('./options')
const defaults = require('./defaults')

/** Sets `obj[key]` as plain data, whatever the key (`__proto__` included). */
function setData (obj, key, value) {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true })
  } else obj[key] = value
}

/** The 'error' listener every emitter has (the original's): shared, not a closure per object. */
function logError (err) {
  if (this.logErrors) console.error(err instanceof Error ? err.stack : err)
}

/**
 * An emitter's listeners by event name: like the `{ __proto__: null }`
 * EventEmitter makes (no Object.prototype names), but an object V8 keeps in
 * its fast mode, where a null-prototype literal is a dictionary (~150 bytes
 * more for each of many idle connections). EventEmitter keeps one it finds.
 */
function Listeners () {}
Listeners.prototype = Object.create(null)

/**
 * The addresses of the latest handshake, for a socket made later: what
 * `Socket#_update` reads of the handshake's info, without keeping the rest
 * of it (a dozen fields) for every idle connection. Split in two: the
 * ports, packed in one small integer on the emitter (`_ports`), and the
 * rest, the same for most connections (one listener, one peer host), in an
 * `Endpoints` object shared by every emitter whose handshake gave the same
 * (`endpointsOf`). Frozen: one emitter cannot change another's.
 */
function Endpoints (info, withPorts) {
  this.remoteAddress = info.remoteAddress
  this.remoteFamily = info.remoteFamily
  this.localAddress = info.localAddress
  // Only when the ports do not fit `_ports` (none: a Unix socket, a stream).
  this.remotePort = withPorts ? info.remotePort : undefined
  this.localPort = withPorts ? info.localPort : undefined
  Object.freeze(this)
}

// The last Endpoints made: the next handshake mostly has the same.
let lastEndpoints = null

function isPort (p) {
  return typeof p === 'number' && p >= 0 && p <= 0xffff && p === Math.floor(p)
}

/** Both ports in one int32 (a small integer to V8: no heap object), or null when they do not fit. */
function packPorts (info) {
  return isPort(info.remotePort) && isPort(info.localPort) ? ((info.remotePort << 16) | info.localPort) : null
}

function endpointsOf (info, ports) {
  if (ports === null) return new Endpoints(info, true)
  const last = lastEndpoints
  if (last !== null && last.remoteAddress === info.remoteAddress && last.remoteFamily === info.remoteFamily && last.localAddress === info.localAddress) return last
  lastEndpoints = new Endpoints(info, false)
  return lastEndpoints
}

/** What `Socket#_update` takes, from an emitter's kept `_endpoints` and `_ports`. */
function addressesOf (emitter) {
  const e = emitter._endpoints
  const ports = emitter._ports
  return {
    remoteAddress: e.remoteAddress,
    remotePort: ports === null ? e.remotePort : ports >>> 16,
    remoteFamily: e.remoteFamily,
    localAddress: e.localAddress,
    localPort: ports === null ? e.localPort : ports & 0xffff
  }
}

/** What clients and server-side connections share: send, set, get and the ack bookkeeping. */
function SendEmitter () {
  if (!(this instanceof SendEmitter)) return new SendEmitter()
  initEmitter(this, {})
}

/**
 * SendEmitter's fields, `session` first: a server-side connection starts
 * with its handshake's session, not an empty object it drops at once.
 */
function initEmitter (emitter, session) {
  emitter._events = new Listeners()
  emitter._eventsCount = 0
  EventEmitter.call(emitter)
  emitter._h = 0
  emitter.session = session
  emitter.ready = false
  emitter.objectMode = false
  emitter.enableAcks = false
  emitter._seq = 0
  // Set by every handshake: own from the start (see Endpoints).
  emitter._endpoints = null
  emitter._ports = null
  // The other fields start as the prototype's defaults (below), and become
  // the emitter's own when set: fewer own properties per idle connection.
  // The original always listens for 'error', so errors never throw.
  emitter.on('error', logError)
}
util.inherits(SendEmitter, EventEmitter)

SendEmitter.prototype.logErrors = false
SendEmitter.prototype._maxQueueLength = Infinity
SendEmitter.prototype._maxSessionBytes = defaults.maxSessionBytes
SendEmitter.prototype._ackTimeout = undefined
// ref()'d: open, it keeps the process alive (as a net socket does).
SendEmitter.prototype._ref = true
// `socket` is made on first access (most connections never ask): until
// then the latest handshake's addresses (`_endpoints`, `_ports`), and
// whether it closed since.
SendEmitter.prototype._socket = null
SendEmitter.prototype._socketClosed = false
// `durable: true` on its server: every send with a callback is a durable one.
SendEmitter.prototype._durable = false

/** Every emitter's `_acks` until its first send with a callback; never written to. */
const NO_ACKS = new Acks()
// Ack callbacks by sequence number (lib/acks.js); the shared empty one
// until the first send with a callback (most idle connections never make one).
SendEmitter.prototype._acks = NO_ACKS

/** The limits of an emitter whose options set none; never changed, so shared. */
SendEmitter.prototype._limits = DEFAULT_LIMITS

/**
 * The socket-like object (lib/socket.js), made when first asked for, with
 * the addresses and state an eagerly made one would have by now.
 */
Object.defineProperty(SendEmitter.prototype, 'socket', {
  get () {
    if (this._socket === null) {
      const socket = new Socket(this)
      if (this._endpoints !== null) socket._update(addressesOf(this))
      socket.destroyed = this._socketClosed
      this._socket = socket
    }
    return this._socket
  },
  set (socket) {
    this._socket = socket
  },
  enumerable: true,
  configurable: true
})

Object.defineProperty(SendEmitter.prototype, 'maxQueueLength', {
  get () {
    return this._maxQueueLength
  },
  set (n) {
    this._maxQueueLength = nonNegative(n, 'maxQueueLength')
    if (this._h) native.setMaxQueueLength(this._h, this._maxQueueLength)
  },
  configurable: true
})

// send(event, ...args[, cb]). Read from `arguments` rather than a rest
// parameter: the common send (a name, up to two arguments and a callback,
// or three without) then makes no array of its arguments, which V8 does not
// optimize away (80 bytes of garbage per send, see flatJson in
// lib/options.js). Declared without parameters, as the original's.
SendEmitter.prototype.send = function () {
  const n = arguments.length
  const event = arguments[0]
  if (n <= 4 && typeof event === 'string' && !this._durable) {
    const last = arguments[n - 1]
    const cb = n > 1 && typeof last === 'function' ? last : null
    const count = cb === null ? n : n - 1
    const limits = this._limits
    // The line written into the outbox as it is made (lib/outbox.js), when
    // the outbox can write it: flat arguments, within the limits (a flat
    // array is one level deep). A flat argument list runs no code of the
    // caller's, so the sequence number is still the next one after it.
    if (count <= 3 && count - 1 <= limits.maxArgs && limits.maxDepth >= 1 &&
        outbox.putSend(this, cb === null ? -1 : this._seq, count, event, arguments[1], arguments[2], limits.maxMessageSize - MESSAGE_OVERHEAD)) {
      // The callback is in place before a flush can hand the line to Rust.
      if (cb !== null) this._waitingAcks().add(this._seq++, cb)
      queued()
      return
    }
  }
  const args = new Array(n)
  for (let i = 0; i < n; i++) args[i] = arguments[i]
  this._sendArgs(args)
}

/** send() with its arguments as an array (the callback, if any, still last). */
SendEmitter.prototype._sendArgs = function (args) {
  const cb = typeof args[args.length - 1] === 'function' ? args.pop() : null
  if (typeof args[0] !== 'string') {
    throw new TypeError(`uhura: send(event, ...args): the event name must be a string, got ${describe(args[0])}`)
  }
  if (cb && this._durable) {
    // `durable: true`: the callback hears both stages, persisted first.
    const json = toJson(args, sendLabel)
    checkLimits(this._limits, json, args.length - 1, sendLabel, args)
    this._pushDurable(json, (err) => cb(err || null, 'persisted'), (err) => cb(err || null, 'acked'))
    return
  }
  let prefix = seqPrefix(this, cb)
  let line = flatJson(args, prefix)
  if (line === undefined) {
    // JSON.stringify may run code of the caller's (toJSON), a send among
    // it: the line is put together after it, with the sequence number then next.
    const json = toJson(args, sendLabel)
    prefix = seqPrefix(this, cb)
    line = prefix + json
  }
  checkLimits(this._limits, line, args.length - 1, sendLabel, args, prefix.length)
  if (cb) this._waitingAcks().add(this._seq++, cb)
  enqueue(this, line, !!cb)
}

/** The tag of a send's line, with its sequence number when it has a callback (src/engine/lines.rs). */
function seqPrefix (emitter, cb) {
  return !cb ? '\ne' : outbox.nextSeqImplicit(emitter) ? '\nA' : '\na' + emitter._seq
}

/**
 * The ack callbacks, about to hold one more: made on the first send with a
 * callback. A server-side connection object outlives its socket (sends still
 * reach the resumed session), so it must stay addressable for that ack.
 */
SendEmitter.prototype._waitingAcks = function () {
  if (this._acks === NO_ACKS) this._acks = new Acks()
  if (this._disconnected) handles.set(this._h, this)
  return this._acks
}

/** send()'s name in an error message, made only for one: it costs as much as a send. */
function sendLabel (args) {
  return `send(${JSON.stringify(args[0])})`
}

/** Promise form of send with an ack: resolves when the peer acknowledges. */
SendEmitter.prototype.sendWithAck = function (...args) {
  return new Promise((resolve, reject) => {
    // With `durable: true` the callback also hears 'persisted' first.
    this.send(...args, (err, stage) => (err ? reject(err) : stage !== 'persisted' && resolve()))
  })
}

/**
 * Queues a durable send (line `d<seq><json>`): `onPersisted(err)` runs once
 * the event is in the session store (Rust's PERSISTED entry), `onAcked(err)`
 * once the peer acknowledged it, always after `onPersisted`. The persisted
 * stage waits in `_acks` too (`addPersisted`), so the connection stays
 * addressable until both have run.
 */
SendEmitter.prototype._pushDurable = function (json, onPersisted, onAcked) {
  const seq = this._seq++
  const acks = this._waitingAcks()
  let persisted = false
  let ackedFirst = null
  acks.addPersisted(seq, (err) => {
    persisted = true
    onPersisted(err)
    if (ackedFirst !== null) onAcked(ackedFirst.err)
  })
  acks.add(seq, (err) => {
    if (persisted) onAcked(err)
    else ackedFirst = { err }
  })
  enqueue(this, '\nd' + seq + json, true)
}

/** The PERSISTED entry of a durable send: in the store, or not (`info`). */
SendEmitter.prototype._onPersisted = function (seq, info) {
  const cb = this._acks.takePersisted(seq)
  if (cb === undefined) return
  if (this._acks.size === 0) this._acksSettled()
  cb(info ? makeError(info) : undefined)
}

SendEmitter.prototype.set = function (key, val) {
  let json
  if (typeof key === 'string') json = toJson([key, val === undefined ? null : val], `set(${JSON.stringify(key)})`)
  else if (key !== null && typeof key === 'object') json = toJson([key], 'set(object)')
  else throw new TypeError(`uhura: set(key, value) takes a string key or an object, got ${describe(key)}`)
  // Refused before anything changes: the local session keeps what the peer would have.
  checkLimits(this._limits, json, 0, typeof key === 'string' ? `set(${JSON.stringify(key)})` : 'set(object)')
  // What alone is over the limit fails here; a set that only adds up to
  // too much is refused by Rust, which knows the session's size.
  if (json.length > this._maxSessionBytes) {
    throw new RangeError(`uhura: set(): ${json.length} bytes of JSON is more than maxSessionBytes (${this._maxSessionBytes})`)
  }
  this._set(key, val)
  this.emit('_set', key, val)
  this._push('\ns' + json)
}

SendEmitter.prototype.get = function (key) {
  return key ? this.session[key] : this.session
}

/**
 * Sends the whole local session to the peer, which merges it (the
 * original's syncSession). Useful after changing `session` directly.
 */
SendEmitter.prototype.syncSession = function () {
  this._push(toJson([this.session], 'syncSession()', '\ns'))
}

/** Merges a key (or an object of keys) into the local session only. */
SendEmitter.prototype._set = function (key, val) {
  // Every key is plain data: a peer's `__proto__` never replaces the prototype.
  if (typeof key === 'string') {
    setData(this.session, key, val)
    return
  }
  for (const k in key) setData(this.session, k, key[k])
}

/**
 * Writes one whole message as given (an array in the legacy form, or an
 * `{ args }` object), outside the event queue: no ack, no resend. The
 * original's low-level `_send`.
 */
SendEmitter.prototype._send = function (data) {
  this._push(toJson(data, '_send(data)', '\nr'))
}

/**
 * Queues one line (src/engine/lines.rs) with the `\n` that ends the one
 * before it in front of it: the outbox then joins lines with one string
 * concatenation each, not two. Rust skips the empty line this leaves at
 * the start of a write.
 */
SendEmitter.prototype._push = function (line) {
  enqueue(this, line)
}

/** Hands every pending send (of every emitter, in order) to Rust now. */
SendEmitter.prototype._flush = function () {
  flushOutbox()
}

/** Hands Rust `buf[start … end)`: lines of sends and sets (src/engine/lines.rs), `\n` before each. */
SendEmitter.prototype._write = function (buf, start, end) {
  let lost
  try {
    lost = native.write(this._h, buf, start, end)
  } catch (e) {
    // Not a closed connection (the other lines were applied): report it,
    // and leave every ack callback to its event's real fate.
    this.emit('error', new Error(`uhura: cannot send: ${e.message}`))
    return
  }
  if (lost != null) this._lost(lost)
}

/**
 * The connection is gone for good (a server-side connection after its
 * disconnect): fails the ack callbacks of the lines Rust could not take,
 * given as their sequence numbers (-1: a line without one). Earlier events
 * have their own fate.
 */
SendEmitter.prototype._lost = function (seqs) {
  const err = new Error('uhura: cannot send: connection is closed')
  err.code = 'ERR_UHURA_CLOSED'
  let unreported = false
  for (const seq of seqs) {
    const cb = seq < 0 ? undefined : this._acks.take(seq)
    if (cb === undefined) {
      unreported = true
      continue
    }
    // A durable send: its persisted stage first.
    const persisted = this._acks.takePersisted(seq)
    if (persisted !== undefined) process.nextTick(persisted, err)
    process.nextTick(cb, err)
  }
  if (this._acks.size === 0) this._acksSettled()
  // A send without a callback, a set: the error event says they were lost.
  if (unreported) process.nextTick(() => this.emit('error', err))
}

SendEmitter.prototype._settle = function (seq, err) {
  const cb = this._acks.take(seq)
  if (cb === undefined) return
  if (this._acks.size === 0) this._acksSettled()
  if (err) cb(err)
  else cb()
}

/** Called when the last pending ack callback has run. */
SendEmitter.prototype._acksSettled = function () {}

SendEmitter.prototype._onMessage = function (args) {
  this.emit.apply(this, args)
}

SendEmitter.prototype._onRemoteSet = function (args) {
  this._set(args[1], args[2])
  this.emit.apply(this, args)
}

SendEmitter.prototype._onConnected = function (info) {
  this.objectMode = info.objectMode
  this.enableAcks = info.enableAcks
  if (this._socket instanceof Socket) this._socket._update(info)
  else {
    const ports = packPorts(info)
    this._endpoints = endpointsOf(info, ports)
    this._ports = ports
  }
  if (this._socketClosed) this._socketClosed = false
  this.ready = true
}

/** The transport closed: shared by clients and connections. */
SendEmitter.prototype._onClosed = function () {
  this.ready = false
  if (this._socket instanceof Socket) this._socket._onClosed()
  this._socketClosed = true
  this.emit('disconnect')
}

SendEmitter.prototype._onError = function (info) {
  this.emit('error', makeError(info))
}

SendEmitter.prototype._onDropped = function (seq, reason) {
  let err
  if (reason === 'refused') {
    err = new Error('uhura: the event was dropped: the peer refused it (it closed the connection with this event unacknowledged 3 times in a row)')
    err.code = 'ERR_UHURA_REFUSED'
  } else {
    err = new Error('uhura: the event was dropped: the send queue was over maxQueueLength or maxQueueBytes, or its session expired')
    err.code = 'ERR_UHURA_DROPPED'
  }
  if (seq != null) this._settle(seq, err)
  this.emit('drop', err)
}

SendEmitter.prototype._onAckTimeout = function (seq) {
  const err = new Error(`uhura: no acknowledgement within ackTimeout (${this._ackTimeout} ms); the event stays queued for delivery`)
  err.code = 'ERR_UHURA_ACK_TIMEOUT'
  this._settle(seq, err)
}

/** Keeps the process alive while this is open (the default), as a net socket does. */
SendEmitter.prototype.ref = function () {
  this._ref = true
  keepAlive(this, this._isOpen())
  return this
}

SendEmitter.prototype.unref = function () {
  this._ref = false
  keepAlive(this, false)
  return this
}

/** A server-side connection: made by the server when a handshake completes. */
function Connection (server, h, info) {
  if (!(this instanceof Connection)) return new Connection(server, h, info)
  initEmitter(this, info.session)
  this._h = h
  this.server = server
  // Only what differs from the prototype's defaults becomes the connection's own.
  if (server.logErrors) this.logErrors = true
  if (server.options.ackTimeout !== undefined) this._ackTimeout = server.options.ackTimeout
  // One object per server, shared by its connections (and its own sends).
  const limits = server._sendLimits()
  if (limits !== DEFAULT_LIMITS) this._limits = limits
  this.sessionID = info.session.sessionID
  if (server._maxQueueLength != null) this.maxQueueLength = server._maxQueueLength
  if (server.options.maxSessionBytes != null) this._maxSessionBytes = server.options.maxSessionBytes
  // `durable: true`: every send with a callback is a durable one.
  if (server.options.durable) this._durable = true
  handles.set(h, this)
  keepAlive(this, true)
}
util.inherits(Connection, SendEmitter)

/**
 * A durable send: `{ persisted, acked }`, two Promises. `persisted`
 * resolves once the event is in the Redis store, from where whichever
 * server the session resumes on delivers it; `acked` once the client
 * acknowledged it (never before `persisted`). Neither is an unhandled
 * rejection when left alone.
 */
/**
 * Its server's store (the original's name for it): read from the server
 * rather than kept by every connection. Assigned, it becomes the connection's own.
 */
Object.defineProperty(Connection.prototype, 'sessionStore', {
  get () {
    return this.server.sessionStore
  },
  set (store) {
    Object.defineProperty(this, 'sessionStore', { value: store, writable: true, enumerable: true, configurable: true })
  },
  enumerable: true,
  configurable: true
})

Connection.prototype.sendDurable = function (...args) {
  if (!this.server._durableStore) {
    throw new TypeError('uhura: sendDurable() needs a server whose store keeps delivery state: createServer({ store: Uhura.redisStore(...) })')
  }
  if (typeof args[0] !== 'string') {
    throw new TypeError(`uhura: sendDurable(event, ...args): the event name must be a string, got ${describe(args[0])}`)
  }
  const json = toJson(args, sendDurableLabel)
  checkLimits(this._limits, json, args.length - 1, sendDurableLabel, args)
  const stages = {}
  const settle = (resolve, reject) => (err) => (err ? reject(err) : resolve())
  let persisted, acked
  stages.persisted = new Promise((resolve, reject) => { persisted = settle(resolve, reject) })
  stages.acked = new Promise((resolve, reject) => { acked = settle(resolve, reject) })
  stages.persisted.catch(noop)
  stages.acked.catch(noop)
  this._pushDurable(json, persisted, acked)
  return stages
}

function sendDurableLabel (args) {
  return `sendDurable(${JSON.stringify(args[0])})`
}

function noop () {}

Connection.prototype.invalidateSession = function () {
  this._flush()
  try {
    native.invalidateSession(this._h)
  } catch (e) {
    // Gone for good (its session's resume window has passed): say so here,
    // not as a throw from some later, unrelated call.
    const err = new Error(`uhura: cannot invalidate the session: ${e.message}`)
    err.code = 'ERR_UHURA_CLOSED'
    process.nextTick(() => this.emit('error', err))
  }
}

/**
 * Closes this connection after what was sent on it is written, as
 * `client.disconnect()` does; `disconnect` fires once it is closed. The
 * session stays resumable for `resumeWindow`.
 */
Connection.prototype.disconnect = function () {
  if (this._disconnected) return
  this._flush()
  const h = this._h
  whenBatchHandled(() => native.end(h))
}

/**
 * The original's handshake handlers, run when the peer's `start` arrives.
 * Here the handshake completes in Rust before this object exists, so there
 * is nothing left to start or resume: they only return the connection.
 */
Connection.prototype.start = function () {
  return this
}

Connection.prototype.resume = function () {
  return this
}

/** A server-side connection's stream is chosen by its server (listen or options.createServer). */
Connection.prototype.attach = function () {
  throw new Error('uhura: a server-side connection cannot attach a stream; give the server options.createServer, or use client.attach(stream)')
}

Connection.prototype._acksSettled = function () {
  if (this._disconnected) handles.delete(this._h)
}

Connection.prototype._isOpen = function () {
  return !this._disconnected
}

Connection.prototype._onDisconnected = function () {
  this._disconnected = true
  // Sends on this object still reach the session (kept by the server for
  // resumeWindow); it stays addressable until its ack callbacks have run.
  if (this._acks.size === 0) handles.delete(this._h)
  keepAlive(this, false)
  this._onClosed()
}

module.exports = { SendEmitter, Connection }
