'use strict'
// The JavaScript surface of uhura: EventEmitter classes with the method
// names, argument forms and events of uhura 0.1.2. The protocol, sockets and
// sessions live in Rust (uhura.node); this file converts arguments, keeps a
// mirror of the session for synchronous get(), and dispatches event batches.

const { EventEmitter } = require('events')
const path = require('path')
const util = require('util')
const sessions = require('./lib/session')

// UHURA_NATIVE_PATH: another build of the addon (tests load a fault-injection build this way).
const addonPath = process.env.UHURA_NATIVE_PATH ? path.resolve(process.env.UHURA_NATIVE_PATH) : path.join(__dirname, 'uhura.node')
let native
try {
  native = require(addonPath)
} catch (e) {
  const err = new Error(
    `uhura: cannot load the native addon ${addonPath}: ${e.message}\n` +
      'Build it with `npm rebuild uhura` (or `npm run build` in a checkout of uhura); this needs Rust\'s cargo (https://rustup.rs).'
  )
  err.code = 'UHURA_ADDON_NOT_FOUND'
  err.cause = e
  throw err
}

// Entry kinds of a delivered batch: [handle, kind, ...]. Mirrors src/engine/link.rs `kind`.
const MESSAGE = 0
const ACKED = 1
const SET = 2
const CONNECTED = 3
const DISCONNECTED = 4
const ERROR = 5
const LISTENING = 6
const CLOSED = 7
const DROPPED = 8
const RECONNECTING = 9
const OUTPUT = 10
const TRANSPORT_CLOSED = 11
const RESUME_INPUT = 12
const OPEN_TRANSPORT = 13
const STORE_OP = 14
const ACK_TIMEOUT = 15
const STOPPED = 16
const WATCH = 17
const UNWATCH = 18
const LOG = 19
const ACCEPTED = 20
const REFUSED = 21

// Mirrors the default of `Config::max_session_bytes` (src/protocol/peer.rs).
const DEFAULT_MAX_SESSION_BYTES = 1024 * 1024

const handles = new Map()
// Handle of a connection still in its handshake -> the server whose
// `connection` event gave its socket.
const acceptedBy = new Map()
// Handle -> the JavaScript stream carrying that link's bytes (factory transports).
const streams = new Map()

native.init(drain)
// DEBUG=uhura:* namespaces (lib/debug.js), read now; adds exports.debug.refresh().
const debugLog = require('./lib/debug')
debugLog.init(native, exports)
// Native sockets are read on this thread's event loop (src/node/uv.rs), which
// saves a thread hop per received message.
native.enableNodeReads(process.env.UHURA_NODE_READS !== '0')

/** Runs on the JS thread whenever Rust has events: take every batch there is. */
// Closing calls made by listeners wait until the batch is handled: the acks
// of the events just handled go out first (see eventsHandled below).
let dispatching = false
let afterBatch = []
// Sends of every emitter in call order, as segments [{ emitter, lines }].
// One flush per tick hands them to Rust segment by segment, so sends on two
// connection objects of one session keep their relative order too.
let outbox = []
let outboxScheduled = false

function flushOutbox () {
  outboxScheduled = false
  if (outbox.length === 0) return
  const segments = outbox
  outbox = []
  for (const { emitter, lines } of segments) emitter._write(lines)
}

function whenBatchHandled (fn) {
  if (dispatching) afterBatch.push(fn)
  else fn()
}

function drain () {
  let batch
  dispatching = true
  while ((batch = native.takeEvents()) != null) {
    const entries = JSON.parse(batch)
    for (let i = 0; i < entries.length; i++) {
      try {
        dispatch(entries[i])
      } catch (err) {
        // The rest of the batch is still delivered either way.
        listenerThrew(entries[i], err)
      }
    }
  }
  // What the listeners sent goes out first (a reply travels ahead of the
  // acks), then the acks of the handled events: only now, after the
  // listeners ran, may they vouch for them.
  flushOutbox()
  native.eventsHandled()
  dispatching = false
  const later = afterBatch
  afterBatch = []
  for (const fn of later) {
    try {
      fn()
    } catch (err) {
      // A close requested from a listener, of something that closed in the
      // meantime: it is closed, which is what was asked.
      if (process.env.UHURA_TRACE === '1') console.error('uhura: deferred close failed:', err)
    }
  }
}

function rethrow (err) {
  throw err
}

/**
 * A listener (or an ack callback) threw while a delivered entry was
 * dispatched. What the peer sends cannot make that crash the process: the
 * error goes to the emitter as an 'error' event (code ERR_UHURA_LISTENER, the
 * thrown value as `cause`), which the built-in listener swallows unless
 * `logErrors` is on. Only an 'error' listener that throws, or an entry with
 * no emitter, is rethrown (an uncaughtException, as from a net socket).
 */
function listenerThrew (entry, thrown) {
  const obj = handles.get(entry[0])
  if (!obj || entry[1] === ERROR || typeof obj.emit !== 'function') {
    process.nextTick(rethrow, thrown)
    return
  }
  const what = entry[1] === MESSAGE && Array.isArray(entry[2]) ? `the "${String(entry[2][0])}" event` : 'an event'
  const cause = thrown instanceof Error ? thrown.message : String(thrown)
  const err = new Error(`uhura: a listener of ${what} threw: ${cause}`)
  err.code = 'ERR_UHURA_LISTENER'
  err.cause = thrown
  if (thrown instanceof Error && thrown.stack) err.stack = `${err.stack}\nCaused by: ${thrown.stack}`
  try {
    obj.emit('error', err)
  } catch (e) {
    process.nextTick(rethrow, e)
  }
}

function dispatch (e) {
  const h = e[0]
  const obj = handles.get(h)
  switch (e[1]) {
    case MESSAGE:
      if (obj) obj._onMessage(e[2])
      break
    case ACKED:
      if (obj) obj._settle(e[2], undefined)
      break
    case SET:
      if (obj) obj._onRemoteSet(e[2])
      break
    case CONNECTED:
      if (obj) obj._onConnected(e[2])
      else if (e[2].server != null) {
        const server = handles.get(e[2].server)
        if (server) server._onConnection(h, e[2])
      }
      break
    case DISCONNECTED:
      if (obj) obj._onDisconnected(e[2])
      else if (acceptedBy.has(h)) acceptedBy.get(h)._onAcceptedClosed(h)
      break
    case ERROR:
      if (obj) obj._onError(e[2])
      else if (e[2].server != null) {
        const server = handles.get(e[2].server)
        if (server) server._onClientError(h, e[2])
      }
      break
    case ACCEPTED:
      if (obj) obj._onAccepted(e[2], e[3])
      break
    case REFUSED:
      if (obj) obj.emit('drop', e[2])
      break
    case LISTENING:
      if (obj) obj._onListening(e[2])
      break
    case CLOSED:
      if (obj) obj._onClose()
      break
    case DROPPED:
      if (obj) obj._onDropped(e[2], e[3])
      break
    case ACK_TIMEOUT:
      if (obj) obj._onAckTimeout(e[2])
      break
    case STOPPED:
      if (obj) obj._onStopped()
      break
    case WATCH:
      try {
        native.watch(h, e[2])
      } catch (err) {
        // Not fatal: the socket is then read on a tokio thread as before.
        if (obj && obj.logErrors) console.error(err.stack)
      }
      break
    case UNWATCH:
      native.unwatch(e[2])
      break
    case RECONNECTING:
      if (obj) obj.emit('reconnecting', e[2])
      break
    case OUTPUT:
      pumpOutput(h)
      break
    case TRANSPORT_CLOSED: {
      const stream = streams.get(h)
      if (stream) closeStream(h, stream)
      break
    }
    case RESUME_INPUT: {
      const stream = streams.get(h)
      if (stream && typeof stream.resume === 'function') stream.resume()
      break
    }
    case OPEN_TRANSPORT:
      if (obj) obj._openTransport()
      break
    case STORE_OP:
      if (obj) obj._storeOp(e[2], e[3], e[4], e[5])
      break
    case LOG:
      debugLog.log(e)
      break
  }
}

const releaseOnCollect = new FinalizationRegistry((h) => native.clientRelease(h))

// Node exits when nothing ref'd is pending. Tokio tasks are invisible to it,
// so one ref'd timer stands in for every live server, connection and ref'd client.
let liveCount = 0
let liveTimer = null
function keepAlive (obj, on) {
  on = !!on
  if (!!obj._keepingAlive === on) return
  obj._keepingAlive = on
  liveCount += on ? 1 : -1
  if (liveCount > 0 && liveTimer === null) liveTimer = setInterval(noop, 0x7fffffff)
  else if (liveCount === 0 && liveTimer !== null) {
    clearInterval(liveTimer)
    liveTimer = null
  }
}
function noop () {}

function makeError (info) {
  const err = new Error(info.message)
  if (info.code) err.code = info.code
  if (info.syscall) err.syscall = info.syscall
  return err
}

/** JSON text of `value`, or a TypeError naming the call (`what`) that cannot send it. */
function toJson (value, what) {
  let json
  try {
    json = JSON.stringify(value)
  } catch (e) {
    throw new TypeError(`uhura: ${what}: the arguments cannot be sent as JSON: ${e.message}`)
  }
  if (json === undefined) throw new TypeError(`uhura: ${what}: ${describe(value)} cannot be sent as JSON`)
  return json
}

function describe (v) {
  if (v === null) return 'null'
  if (typeof v === 'string') return JSON.stringify(v)
  if (typeof v === 'function') return 'a function'
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object'
  return `${typeof v} ${String(v)}`
}

function checkedPort (port) {
  const n = typeof port === 'string' && port.trim() !== '' ? Number(port) : port
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new RangeError(`uhura: port must be an integer >= 0 and <= 65535, got ${describe(port)}`)
  }
  return n
}

/**
 * A count or a time in ms: a TypeError for what is not a number, a
 * RangeError for NaN or a negative one. Huge values (Infinity included)
 * are kept; Rust saturates them.
 */
function nonNegative (v, name) {
  // Numeric strings ('5000', from an environment variable) count as numbers.
  const n = typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v)) ? Number(v) : v
  if (typeof n !== 'number') throw new TypeError(`uhura: ${name} must be a number, got ${describe(v)}`)
  if (Number.isNaN(n) || n < 0) throw new RangeError(`uhura: ${name} must be a non-negative number, got ${describe(v)}`)
  return n
}

// Defaults of the limits on incoming messages (src/protocol/framing.rs and
// message.rs); send() and set() refuse what a peer with these would refuse.
const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
const DEFAULT_MAX_ARGS = 4096
const DEFAULT_MAX_DEPTH = 1000
// The highest maxDepth Rust accepts (framing::MAX_DEPTH_LIMIT).
const MAX_DEPTH_LIMIT = 2000

/** The limits of `options` that send() and set() check, with their defaults. */
function limitsOf (o) {
  const n = (v, d) => (v == null || Number.isNaN(Number(v)) ? d : Number(v))
  return {
    maxArgs: n(o.maxArgs, DEFAULT_MAX_ARGS),
    maxDepth: Math.min(Math.max(1, n(o.maxDepth, DEFAULT_MAX_DEPTH)), MAX_DEPTH_LIMIT),
    maxMessageSize: Math.max(1, n(o.maxMessageSize, DEFAULT_MAX_MESSAGE_SIZE))
  }
}

/** Whether JSON text nests deeper than `limit` (the outermost array is level 1). */
function deeperThan (json, limit) {
  // Each level takes two characters at least.
  if (json.length <= 2 * limit) return false
  let depth = 0
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (c === 34) {
      // A string: skip it (JSON.stringify output, so escapes are well formed).
      for (i++; i < json.length; i++) {
        const d = json.charCodeAt(i)
        if (d === 92) i++
        else if (d === 34) break
      }
    } else if (c === 91 || c === 123) {
      if (++depth > limit) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

/**
 * Throws a TypeError when the message `json` (an argument array, event
 * name first) is beyond what our own reader accepts: a peer with the same
 * limits would refuse it, so it must never enter the resend queue.
 */
function checkLimits (limits, json, nargs, what) {
  if (nargs > limits.maxArgs) {
    throw new TypeError(`uhura: ${what}: ${nargs} arguments are more than maxArgs (${limits.maxArgs})`)
  }
  if (deeperThan(json, limits.maxDepth)) {
    throw new TypeError(`uhura: ${what}: the arguments are nested deeper than maxDepth (${limits.maxDepth})`)
  }
  // The wire form adds at most this much: {"args":…,"id":"<prefix>-<seq>"}.
  const overhead = 64
  if (json.length * 3 + overhead > limits.maxMessageSize && Buffer.byteLength(json) + overhead > limits.maxMessageSize) {
    throw new TypeError(`uhura: ${what}: the message is larger than maxMessageSize (${limits.maxMessageSize} bytes)`)
  }
}

/** Sets `obj[key]` as plain data, whatever the key (`__proto__` included). */
function setData (obj, key, value) {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true })
  } else obj[key] = value
}

/** Options of the protocol state machine, as the addon takes them. */
function peerOptions (o) {
  const out = {}
  for (const k of ['maxMessageSize', 'maxArgs', 'maxDepth', 'maxQueueLength', 'maxQueueBytes', 'ackTimeout', 'heartbeatInterval', 'heartbeatTimeout', 'handshakeTimeout', 'maxHandshakeBytes', 'maxSessionBytes']) {
    if (o[k] != null) out[k] = nonNegative(o[k], `options.${k}`)
  }
  if (o.extensions != null) out.extensions = !!o.extensions
  if (o.resumeSecret != null) {
    if (typeof o.resumeSecret !== 'string') throw new TypeError(`uhura: options.resumeSecret must be a string, got ${describe(o.resumeSecret)}`)
    out.resumeSecret = o.resumeSecret
  }
  return out
}

function addressesOf (stream) {
  return {
    remoteAddress: stream.remoteAddress,
    remotePort: stream.remotePort,
    localAddress: stream.localAddress,
    localPort: stream.localPort
  }
}

/**
 * Pumps a JavaScript duplex stream's bytes through the Rust link `h`:
 * what it reads goes to `feed`, what Rust writes arrives as OUTPUT events.
 */
function bindStream (h, stream, onError) {
  streams.set(h, stream)
  // Each message and ack is a small write; with Nagle's algorithm a
  // request/response exchange waits out delayed ACKs (~40 ms per message).
  if (typeof stream.setNoDelay === 'function') stream.setNoDelay(true)
  stream.on('data', (chunk) => {
    if (!Buffer.isBuffer(chunk)) chunk = Buffer.from(chunk)
    if (!native.feed(h, chunk) && typeof stream.pause === 'function') stream.pause()
  })
  const ended = () => native.feedEnd(h)
  stream.on('end', ended)
  stream.on('close', () => {
    ended()
    if (streams.get(h) === stream) streams.delete(h)
  })
  stream.on('error', onError)
}

/**
 * Moves Rust's output for `h` into its JavaScript stream, honouring the
 * stream's back-pressure: while it waits for 'drain', Rust's output stays in
 * Rust, where it is bounded.
 */
function pumpOutput (h) {
  const stream = streams.get(h)
  if (!stream) {
    native.takeOutput(h)
    return
  }
  if (stream._uhuraAwaitingDrain || stream.destroyed) return
  const buf = native.takeOutput(h)
  if (buf.length === 0) return
  if (!stream.write(buf)) {
    stream._uhuraAwaitingDrain = true
    stream.once('drain', () => {
      stream._uhuraAwaitingDrain = false
      pumpOutput(h)
    })
  }
}

function closeStream (h, stream) {
  if (streams.get(h) === stream) streams.delete(h)
  if (stream.destroyed) return
  stream.end()
  // A peer that never closes its side does not hold the stream open for good.
  const t = setTimeout(() => stream.destroy(), 5000)
  if (t.unref) t.unref()
  stream.once('close', () => clearTimeout(t))
}

function toBuffer (v) {
  return Buffer.isBuffer(v) ? v : Buffer.from(typeof v === 'string' ? v : String(v))
}

/** Node-style tls options -> what the addon takes (PEM as Buffers). */
function tlsOptions (o) {
  if (o === true) o = {}
  if (o === null || typeof o !== 'object') throw new TypeError('uhura: options.tls must be an object')
  const out = {}
  if (o.key != null) out.key = toBuffer(Array.isArray(o.key) ? o.key[0] : o.key)
  if (o.cert != null) out.cert = toBuffer(Array.isArray(o.cert) ? o.cert.map(toBuffer).join('\n') : o.cert)
  if (o.ca != null) out.ca = (Array.isArray(o.ca) ? o.ca : [o.ca]).map(toBuffer)
  if (o.requestCert != null) out.requestCert = !!o.requestCert
  if (o.rejectUnauthorized != null) out.rejectUnauthorized = !!o.rejectUnauthorized
  if (o.servername != null) out.servername = String(o.servername)
  return out
}

/** Server options that choose and tune the session store. */
function storeOptions (options) {
  const out = {}
  const store = options.store
  if (store instanceof sessions.RedisStore) {
    out.store = 'redis'
    out.redisUrl = store.url
    out.redisPrefix = store.prefix
    out.redisAuxPrefix = store.auxPrefix
    out.redisTtl = store.ttl
  } else if (store != null) {
    for (const m of ['get', 'set', 'destroy']) {
      if (typeof store[m] !== 'function') {
        throw new TypeError(`uhura: options.store must have get, set and destroy methods (connect-style); ${m} is ${describe(store[m])}`)
      }
    }
    out.store = 'js'
    if (options.storeTimeout != null) out.storeTimeout = nonNegative(options.storeTimeout, 'options.storeTimeout')
  }
  if (options.sessionTTL != null) out.sessionTtl = nonNegative(options.sessionTTL, 'options.sessionTTL')
  if (options.maxSessions != null) out.maxSessions = nonNegative(options.maxSessions, 'options.maxSessions')
  if (options.maxStoreBytes != null) out.maxStoreBytes = nonNegative(options.maxStoreBytes, 'options.maxStoreBytes')
  return out
}

// Every exported constructor is an ES5 function, not a class: code written
// for uhura 0.1.x subclasses with `Ctor.call(this)` plus `util.inherits`,
// which a class constructor refuses. `class X extends Ctor` works as well.

/**
 * The `.socket` of a client or connection, and the socket a server's
 * `connection` event gives before the handshake: the parts of net.Socket
 * that make sense here. `owner` is the client or connection it belongs to
 * (none yet for a connection still in its handshake).
 */
function Socket (owner, h) {
  if (!(this instanceof Socket)) return new Socket(owner, h)
  EventEmitter.call(this)
  this._owner = owner || null
  this._handle = h || 0
  this.remoteAddress = undefined
  this.remotePort = undefined
  this.remoteFamily = undefined
  this.localAddress = undefined
  this.localPort = undefined
  this.destroyed = false
  // socket.emit('error', err) reaches the owner, as `socket.on('error')` did in the original.
  this.on('error', (err) => {
    if (this._owner) this._owner.emit('error', err)
  })
}
util.inherits(Socket, EventEmitter)

Object.defineProperty(Socket.prototype, '_h', {
  get () {
    return this._owner ? this._owner._h : this._handle
  }
})

Socket.prototype._update = function (info) {
  this.remoteAddress = info.remoteAddress
  this.remotePort = info.remotePort
  this.remoteFamily = info.remoteFamily
  this.localAddress = info.localAddress
  this.localPort = info.localPort
  this.destroyed = false
}

Socket.prototype._onClosed = function () {
  this.destroyed = true
  this.emit('close')
}

Socket.prototype.write = function (data, encoding, cb) {
  if (typeof encoding === 'function') {
    cb = encoding
    encoding = undefined
  }
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(String(data), encoding)
  flushOutbox()
  native.writeRaw(this._h, buf)
  if (typeof cb === 'function') setImmediate(cb)
  return true
}

Socket.prototype.end = function (data, encoding, cb) {
  if (typeof data === 'function') {
    cb = data
    data = undefined
  }
  if (data != null) this.write(data, encoding)
  flushOutbox()
  const h = this._h
  whenBatchHandled(() => native.end(h))
  if (typeof cb === 'function') this.once('close', cb)
  return this
}

Socket.prototype.destroy = function (err) {
  flushOutbox()
  native.destroy(this._h)
  this.destroyed = true
  if (err) process.nextTick(() => this.emit('error', err))
  return this
}

Socket.prototype.destroySoon = function () {
  return this.end()
}

Socket.prototype.setNoDelay = function () {
  // Always on: writes are coalesced per wake-up instead.
  return this
}

Socket.prototype.setKeepAlive = function () {
  return this
}

Socket.prototype.ref = function () {
  if (this._owner) this._owner.ref()
  return this
}

Socket.prototype.unref = function () {
  if (this._owner) this._owner.unref()
  return this
}

Socket.prototype.address = function () {
  return this.localAddress === undefined
    ? {}
    : { address: this.localAddress, port: this.localPort, family: this.remoteFamily }
}

/** What clients and server-side connections share: send, set, get and the ack bookkeeping. */
function SendEmitter () {
  if (!(this instanceof SendEmitter)) return new SendEmitter()
  EventEmitter.call(this)
  this._h = 0
  this.session = {}
  this.ready = false
  this.objectMode = false
  this.enableAcks = false
  this.logErrors = false
  this._maxQueueLength = Infinity
  this._maxSessionBytes = DEFAULT_MAX_SESSION_BYTES
  this._seq = 0
  this._acks = new Map()
  this._ackTimeout = undefined
  this._limits = limitsOf({})
  this.socket = new Socket(this)
  // The original always listens for 'error', so errors never throw.
  this.on('error', (err) => {
    if (this.logErrors) console.error(err instanceof Error ? err.stack : err)
  })
}
util.inherits(SendEmitter, EventEmitter)

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

SendEmitter.prototype.send = function (...args) {
  const cb = typeof args[args.length - 1] === 'function' ? args.pop() : null
  if (typeof args[0] !== 'string') {
    throw new TypeError(`uhura: send(event, ...args): the event name must be a string, got ${describe(args[0])}`)
  }
  const json = toJson(args, `send(${JSON.stringify(args[0])})`)
  checkLimits(this._limits, json, args.length - 1, `send(${JSON.stringify(args[0])})`)
  if (cb) {
    const seq = this._seq++
    this._acks.set(seq, cb)
    // A server-side connection object outlives its socket (sends still reach
    // the resumed session), so it must stay addressable for this ack.
    if (this._disconnected) handles.set(this._h, this)
    this._push('a' + seq + json)
  } else {
    this._push('e' + json)
  }
}

/** Promise form of send with an ack: resolves when the peer acknowledges. */
SendEmitter.prototype.sendWithAck = function (...args) {
  return new Promise((resolve, reject) => {
    this.send(...args, (err) => (err ? reject(err) : resolve()))
  })
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
  this._push('s' + json)
}

SendEmitter.prototype.get = function (key) {
  return key ? this.session[key] : this.session
}

/**
 * Sends the whole local session to the peer, which merges it (the
 * original's syncSession). Useful after changing `session` directly.
 */
SendEmitter.prototype.syncSession = function () {
  this._push('s' + toJson([this.session], 'syncSession()'))
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
  this._push('r' + toJson(data, '_send(data)'))
}

SendEmitter.prototype._push = function (line) {
  const last = outbox[outbox.length - 1]
  if (last !== undefined && last.emitter === this) last.lines.push(line)
  else outbox.push({ emitter: this, lines: [line] })
  if (!outboxScheduled) {
    outboxScheduled = true
    queueMicrotask(flushOutbox)
  }
}

/** Hands every pending send (of every emitter, in order) to Rust now. */
SendEmitter.prototype._flush = function () {
  flushOutbox()
}

SendEmitter.prototype._write = function (lines) {
  try {
    native.write(this._h, lines.join('\n'))
  } catch (e) {
    if (!/connection is closed/.test(e.message)) {
      // Not a closed connection (the other lines were applied): report it,
      // and leave every ack callback to its event's real fate.
      this.emit('error', new Error(`uhura: cannot send: ${e.message}`))
      return
    }
    // The connection is gone for good (a server-side connection after its
    // disconnect): fail the ack callbacks of the events of these lines,
    // which never reached it. Earlier events have their own fate.
    const err = new Error(`uhura: cannot send: ${e.message}`)
    err.code = 'ERR_UHURA_CLOSED'
    for (const line of lines) {
      if (line.charCodeAt(0) !== 97) continue // 'a<seq>…': a send with a callback
      const seq = parseInt(line.slice(1), 10)
      const cb = this._acks.get(seq)
      if (cb === undefined) continue
      this._acks.delete(seq)
      process.nextTick(cb, err)
    }
  }
}

SendEmitter.prototype._settle = function (seq, err) {
  const cb = this._acks.get(seq)
  if (cb === undefined) return
  this._acks.delete(seq)
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
  if (this.socket instanceof Socket) this.socket._update(info)
  this.ready = true
}

/** The transport closed: shared by clients and connections. */
SendEmitter.prototype._onClosed = function () {
  this.ready = false
  if (this.socket instanceof Socket) this.socket._onClosed()
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

function Client () {
  if (!(this instanceof Client)) return new Client()
  SendEmitter.call(this)
  this._ref = true
  this._active = false
  this._stopped = false
  this.options = null
  this.resumeSecret = undefined
}
util.inherits(Client, SendEmitter)

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
  this._limits = limitsOf(options)
  this.options = options
  if (cb) this.once('connect', cb)
  if (this._h) throw new Error('uhura: this client is already connected; use reconnect()')
  this._ackTimeout = options.ackTimeout
  const native_ = {
    servers: [],
    peer: peerOptions({ ...options, maxQueueLength: this._maxQueueLength })
  }
  if (typeof options.createConnection === 'function') {
    // The original's factory hook: each (re)connection asks it for a stream.
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
  const h = this._h
  process.nextTick(() => native.clientStart(h))
  return this
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
  // 0 or nothing means the default, as in the original.
  min = min ? nonNegative(min, 'autoReconnect(min)') : 100
  max = max ? nonNegative(max, 'autoReconnect(max)') : 60000
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

Client.prototype.ref = function () {
  this._ref = true
  keepAlive(this, this._active)
  return this
}

Client.prototype.unref = function () {
  this._ref = false
  keepAlive(this, false)
  return this
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
  this.socket.emit('connect')
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

/** A server-side connection: made by the server when a handshake completes. */
function Connection (server, h, info) {
  if (!(this instanceof Connection)) return new Connection(server, h, info)
  SendEmitter.call(this)
  this._h = h
  this.server = server
  this.sessionStore = server.sessionStore
  this.logErrors = !!server.logErrors
  this._ackTimeout = server.options.ackTimeout
  this._limits = limitsOf(server.options)
  this.session = info.session
  this.sessionID = info.session.sessionID
  if (server._maxQueueLength != null) this.maxQueueLength = server._maxQueueLength
  if (server.options.maxSessionBytes != null) this._maxSessionBytes = server.options.maxSessionBytes
  handles.set(h, this)
  keepAlive(this, true)
}
util.inherits(Connection, SendEmitter)

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

Connection.prototype.ref = function () {
  keepAlive(this, true)
  return this
}

Connection.prototype.unref = function () {
  keepAlive(this, false)
  return this
}

Connection.prototype._onDisconnected = function () {
  this._disconnected = true
  // Sends on this object still reach the session (kept by the server for
  // resumeWindow); it stays addressable until its ack callbacks have run.
  if (this._acks.size === 0) handles.delete(this._h)
  keepAlive(this, false)
  this._onClosed()
}

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
  // Sockets of accepted connections still in their handshake, by handle.
  this._accepted = new Map()
  // net.Server's fields, as this server behaves.
  this.allowHalfOpen = false
  this.pauseOnConnect = false
  this.noDelay = true
  this.keepAlive = true
  this.keepAliveInitialDelay = 30000
  this.highWaterMark = 65536
  this._h = native.createServer({
    peer: { ...peerOptions(options), cookie: JSON.stringify(new sessions.Cookie(options.cookie)) },
    resumeWindow: options.resumeWindow == null ? undefined : nonNegative(options.resumeWindow, 'options.resumeWindow'),
    tls: options.tls ? tlsOptions(options.tls) : undefined,
    ...storeOptions(options)
  })
  this.store = options.store || null
  // The original's name for it, also on each connection.
  this.sessionStore = this.store
  handles.set(this._h, this)
  if (typeof onConnection === 'function') this.on('handshake', onConnection)
  if (options.createServer != null) {
    if (typeof options.createServer !== 'function') throw new TypeError('uhura: options.createServer must be a function')
    // The original's factory hook (e.g. tls.createServer): it owns the
    // listening socket; each stream it accepts is pumped through Rust.
    this._factoryServer = options.createServer(options, (stream) => this._adoptStream(stream))
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
  native.listen(this._h, at, backlog == null ? undefined : Number(backlog))
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
  native.closeServer(this._h)
  return this
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

Server.prototype._onListening = function (info) {
  this._address = info
  this._listening = true
  this.emit('listening')
}

Server.prototype._onClose = function () {
  // listen() again since: that close is moot, as with net.Server.
  if (this._bound) return
  this._listening = false
  keepAlive(this, false)
  if (!this._factoryServer) handles.delete(this._h)
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

exports.createClient = function createClient (...args) {
  const client = new Client()
  client.connect(...args)
  return client
}

exports.createServer = function createServer (options, cb) {
  return new Server(options, cb)
}
