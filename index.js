'use strict'
// The JavaScript surface of uhura: EventEmitter classes with the method
// names, argument forms and events of uhura 0.1.2. The protocol, sockets and
// sessions live in Rust (uhura.node); this file converts arguments, keeps a
// mirror of the session for synchronous get(), and dispatches event batches.

const { EventEmitter } = require('events')
const path = require('path')
const sessions = require('./lib/session')

const addonPath = path.join(__dirname, 'uhura.node')
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

const handles = new Map()
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
        // A throwing listener surfaces as an uncaughtException, as it would
        // from a net socket; the rest of the batch is still delivered.
        process.nextTick(rethrow, err)
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
  for (const fn of later) fn()
}

function rethrow (err) {
  throw err
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
      break
    case ERROR:
      if (obj) obj._onError(e[2])
      else if (e[2].server != null) {
        const server = handles.get(e[2].server)
        if (server) server._onClientError(e[2])
      }
      break
    case LISTENING:
      if (obj) obj._onListening(e[2])
      break
    case CLOSED:
      if (obj) obj._onClose()
      break
    case DROPPED:
      if (obj) obj._onDropped(e[2])
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

/** Options of the protocol state machine, as the addon takes them. */
function peerOptions (o) {
  const out = {}
  for (const k of ['maxMessageSize', 'maxQueueLength', 'maxQueueBytes', 'ackTimeout', 'heartbeatInterval', 'heartbeatTimeout', 'handshakeTimeout']) {
    if (o[k] == null) continue
    const n = Number(o[k])
    if (Number.isNaN(n) || n < 0) throw new TypeError(`uhura: options.${k} must be a non-negative number, got ${describe(o[k])}`)
    out[k] = n
  }
  if (o.extensions != null) out.extensions = !!o.extensions
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
    out.redisTtl = store.ttl
  } else if (store != null) {
    for (const m of ['get', 'set', 'destroy']) {
      if (typeof store[m] !== 'function') {
        throw new TypeError(`uhura: options.store must have get, set and destroy methods (connect-style); ${m} is ${describe(store[m])}`)
      }
    }
    out.store = 'js'
    if (options.storeTimeout != null) out.storeTimeout = Number(options.storeTimeout)
  }
  if (options.sessionTTL != null) out.sessionTtl = Number(options.sessionTTL)
  if (options.maxSessions != null) out.maxSessions = Number(options.maxSessions)
  return out
}

/** The `.socket` of a client or connection: the parts of net.Socket that make sense here. */
class Socket extends EventEmitter {
  constructor (owner) {
    super()
    this._owner = owner
    this.remoteAddress = undefined
    this.remotePort = undefined
    this.remoteFamily = undefined
    this.localAddress = undefined
    this.localPort = undefined
    this.destroyed = false
    // socket.emit('error', err) reaches the owner, as `socket.on('error')` did in the original.
    this.on('error', (err) => owner.emit('error', err))
  }

  _update (info) {
    this.remoteAddress = info.remoteAddress
    this.remotePort = info.remotePort
    this.remoteFamily = info.remoteFamily
    this.localAddress = info.localAddress
    this.localPort = info.localPort
    this.destroyed = false
  }

  write (data, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding
      encoding = undefined
    }
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(String(data), encoding)
    this._owner._flush()
    native.writeRaw(this._owner._h, buf)
    if (typeof cb === 'function') setImmediate(cb)
    return true
  }

  end (data, encoding, cb) {
    if (typeof data === 'function') {
      cb = data
      data = undefined
    }
    if (data != null) this.write(data, encoding)
    this._owner._flush()
    const h = this._owner._h
    whenBatchHandled(() => native.end(h))
    if (typeof cb === 'function') this.once('close', cb)
    return this
  }

  destroy (err) {
    this._owner._flush()
    native.destroy(this._owner._h)
    this.destroyed = true
    if (err) process.nextTick(() => this.emit('error', err))
    return this
  }

  destroySoon () {
    return this.end()
  }

  setNoDelay () {
    // Always on: writes are coalesced per wake-up instead.
    return this
  }

  setKeepAlive () {
    return this
  }

  ref () {
    this._owner.ref()
    return this
  }

  unref () {
    this._owner.unref()
    return this
  }

  address () {
    return this.localAddress === undefined
      ? {}
      : { address: this.localAddress, port: this.localPort, family: this.remoteFamily }
  }
}

/** What clients and server-side connections share: send, set, get and the ack bookkeeping. */
class SendEmitter extends EventEmitter {
  constructor () {
    super()
    this._h = 0
    this.session = {}
    this.ready = false
    this.objectMode = false
    this.enableAcks = false
    this.logErrors = false
    this._maxQueueLength = Infinity
    this._seq = 0
    this._acks = new Map()
    this._ackTimeout = undefined
    this.socket = new Socket(this)
    // The original always listens for 'error', so errors never throw.
    this.on('error', (err) => {
      if (this.logErrors) console.error(err.stack)
    })
  }

  get maxQueueLength () {
    return this._maxQueueLength
  }

  set maxQueueLength (n) {
    this._maxQueueLength = n
    if (this._h) native.setMaxQueueLength(this._h, Number(n))
  }

  send (...args) {
    const cb = typeof args[args.length - 1] === 'function' ? args.pop() : null
    if (typeof args[0] !== 'string') {
      throw new TypeError(`uhura: send(event, ...args): the event name must be a string, got ${describe(args[0])}`)
    }
    let json
    try {
      json = JSON.stringify(args)
    } catch (e) {
      throw new TypeError(`uhura: send(${JSON.stringify(args[0])}): the arguments cannot be sent as JSON: ${e.message}`)
    }
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
  sendWithAck (...args) {
    return new Promise((resolve, reject) => {
      this.send(...args, (err) => (err ? reject(err) : resolve()))
    })
  }

  set (key, val) {
    let json
    if (typeof key === 'string') json = JSON.stringify([key, val === undefined ? null : val])
    else if (key !== null && typeof key === 'object') json = JSON.stringify([key])
    else throw new TypeError(`uhura: set(key, value) takes a string key or an object, got ${describe(key)}`)
    this._merge(key, val)
    this.emit('_set', key, val)
    this._push('s' + json)
  }

  get (key) {
    return key ? this.session[key] : this.session
  }

  _merge (key, val) {
    if (typeof key === 'string') {
      this.session[key] = val
      return
    }
    for (const k in key) this.session[k] = key[k]
  }

  _push (line) {
    const last = outbox[outbox.length - 1]
    if (last !== undefined && last.emitter === this) last.lines.push(line)
    else outbox.push({ emitter: this, lines: [line] })
    if (!outboxScheduled) {
      outboxScheduled = true
      queueMicrotask(flushOutbox)
    }
  }

  /** Hands every pending send (of every emitter, in order) to Rust now. */
  _flush () {
    flushOutbox()
  }

  _write (lines) {
    try {
      native.write(this._h, lines.join('\n'))
    } catch (e) {
      // The connection is gone for good (a server-side connection after its
      // disconnect): fail the ack callbacks of what could not be sent.
      const err = new Error(`uhura: cannot send: ${e.message}`)
      err.code = 'ERR_UHURA_CLOSED'
      for (const [seq, cb] of this._acks) {
        this._acks.delete(seq)
        process.nextTick(cb, err)
      }
    }
  }

  _settle (seq, err) {
    const cb = this._acks.get(seq)
    if (cb === undefined) return
    this._acks.delete(seq)
    if (this._acks.size === 0) this._acksSettled()
    if (err) cb(err)
    else cb()
  }

  /** Called when the last pending ack callback has run. */
  _acksSettled () {}

  _onMessage (args) {
    this.emit.apply(this, args)
  }

  _onRemoteSet (args) {
    this._merge(args[1], args[2])
    this.emit.apply(this, args)
  }

  _onConnected (info) {
    this.objectMode = info.objectMode
    this.enableAcks = info.enableAcks
    if (this.socket instanceof Socket) this.socket._update(info)
    this.ready = true
  }

  _onError (info) {
    this.emit('error', makeError(info))
  }

  _onDropped (seq) {
    const err = new Error('uhura: the event was dropped: the send queue was over maxQueueLength or maxQueueBytes, or its session expired')
    err.code = 'ERR_UHURA_DROPPED'
    if (seq != null) this._settle(seq, err)
    this.emit('drop', err)
  }

  _onAckTimeout (seq) {
    const err = new Error(`uhura: no acknowledgement within ackTimeout (${this._ackTimeout} ms); the event stays queued for delivery`)
    err.code = 'ERR_UHURA_ACK_TIMEOUT'
    this._settle(seq, err)
  }
}

class Client extends SendEmitter {
  constructor () {
    super()
    this._ref = true
    this._active = false
    this._stopped = false
    this.options = null
  }

  /**
   * connect(port[, host][, cb]) or connect(options[, cb]).
   */
  connect (a, b, c) {
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
    this._active = true
    keepAlive(this, this._ref)
    // Start on the next tick, so autoReconnect() and friends called right
    // after createClient() apply to the first attempt, as in the original.
    const h = this._h
    process.nextTick(() => native.clientStart(h))
    return this
  }

  reconnect (cb) {
    if (typeof cb === 'function') this.once('connect', cb)
    this.ready = false
    this._stopped = false
    this._flush()
    native.clientReconnect(this._h)
    this._active = true
    keepAlive(this, this._ref)
  }

  autoReconnect (min, max) {
    native.clientAutoReconnect(this._h, Number(min) || 100, Number(max) || 60000)
    this._auto = true
  }

  disconnect () {
    this._auto = false
    this._stopped = true
    this._flush()
    const h = this._h
    whenBatchHandled(() => native.clientDisconnect(h))
  }

  ref () {
    this._ref = true
    keepAlive(this, this._active)
    return this
  }

  unref () {
    this._ref = false
    keepAlive(this, false)
    return this
  }

  /** Rust asks for a stream: call the user's createConnection factory. */
  _openTransport () {
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

  _onConnected (info) {
    super._onConnected(info)
    this.socket.emit('connect')
    this.emit('connect', { objectMode: info.objectMode, enableAcks: info.enableAcks })
  }

  _onMessage (args) {
    if (args[0] === 'invalidateSession') this.session = {}
    super._onMessage(args)
  }

  _onStopped () {
    this.ready = false
    this._active = false
    keepAlive(this, false)
    if (this._acks.size === 0) handles.delete(this._h)
  }

  _acksSettled () {
    if (!this._active && this._stopped) handles.delete(this._h)
  }

  _onDisconnected (willReconnect) {
    this.ready = false
    if (!willReconnect) {
      this._active = false
      keepAlive(this, false)
    }
    if (this.socket instanceof Socket) {
      this.socket.destroyed = true
      this.socket.emit('close')
    }
    this.emit('disconnect')
  }
}

class Connection extends SendEmitter {
  constructor (server, h, info) {
    super()
    this._h = h
    this.server = server
    this.logErrors = !!server.logErrors
    this._ackTimeout = server.options.ackTimeout
    this.session = info.session
    this.sessionID = info.session.sessionID
    if (server._maxQueueLength != null) this.maxQueueLength = server._maxQueueLength
    handles.set(h, this)
    keepAlive(this, true)
  }

  invalidateSession () {
    this._flush()
    native.invalidateSession(this._h)
  }

  _acksSettled () {
    if (this._disconnected) handles.delete(this._h)
  }

  ref () {
    keepAlive(this, true)
    return this
  }

  unref () {
    keepAlive(this, false)
    return this
  }

  _onConnected (info) {
    super._onConnected(info)
  }

  _onMessage (args) {
    super._onMessage(args)
  }

  _onDisconnected () {
    this.ready = false
    this._disconnected = true
    // Sends on this object still reach the session (kept by the server for
    // resumeWindow); it stays addressable until its ack callbacks have run.
    if (this._acks.size === 0) handles.delete(this._h)
    keepAlive(this, false)
    if (this.socket instanceof Socket) {
      this.socket.destroyed = true
      this.socket.emit('close')
    }
    this.emit('disconnect')
  }
}

class Server extends EventEmitter {
  constructor (options, onConnection) {
    super()
    if (typeof options === 'function') {
      onConnection = options
      options = {}
    }
    options = options || {}
    this.options = options
    this.logErrors = !!options.logErrors
    this._maxQueueLength = options.maxQueueLength
    this._address = null
    this._listening = false
    this._factoryServer = null
    this._h = native.createServer({
      peer: { ...peerOptions(options), cookie: JSON.stringify(new sessions.Cookie(options.cookie)) },
      resumeWindow: options.resumeWindow == null ? undefined : Number(options.resumeWindow),
      tls: options.tls ? tlsOptions(options.tls) : undefined,
      ...storeOptions(options)
    })
    this.store = options.store || null
    handles.set(this._h, this)
    if (typeof onConnection === 'function') this.on('connection', onConnection)
    if (options.createServer != null) {
      if (typeof options.createServer !== 'function') throw new TypeError('uhura: options.createServer must be a function')
      // The original's factory hook (e.g. tls.createServer): it owns the
      // listening socket; each stream it accepts is pumped through Rust.
      this._factoryServer = options.createServer(options, (stream) => this._adoptStream(stream))
      for (const ev of ['listening', 'close', 'error']) {
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

  get listening () {
    return this._listening
  }

  /**
   * listen(port[, host][, backlog][, cb]), listen(path[, cb]),
   * listen(options[, cb]) or listen([cb]).
   */
  listen (...args) {
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
    keepAlive(this, true)
    return this
  }

  address () {
    return this._factoryServer ? this._factoryServer.address() : this._address
  }

  close (cb) {
    if (this._factoryServer) {
      this._factoryServer.close(cb)
      return this
    }
    if (typeof cb === 'function') this.once('close', cb)
    native.closeServer(this._h)
    return this
  }

  ref () {
    if (this._factoryServer && this._factoryServer.ref) this._factoryServer.ref()
    keepAlive(this, this._listening)
    return this
  }

  unref () {
    if (this._factoryServer && this._factoryServer.unref) this._factoryServer.unref()
    keepAlive(this, false)
    return this
  }

  /** Runs one operation of a connect-style JavaScript store for Rust. */
  _storeOp (req, op, sid, sess) {
    const store = this.store
    let settled = false
    const h = this._h
    const done = (err, value) => {
      if (settled) return
      settled = true
      const message = err ? String(err.message || err) : undefined
      const json = !err && op === 'get' && value != null ? JSON.stringify(value) : undefined
      native.storeReply(h, req, message, json)
    }
    try {
      let r
      if (op === 'get') r = store.get(sid, done)
      else if (op === 'set') r = store.set(sid, sess, (err) => done(err))
      else r = store.destroy(sid, (err) => done(err))
      if (r && typeof r.then === 'function') {
        r.then((v) => done(null, v), (e) => done(e || new Error(`store.${op} rejected`)))
      }
    } catch (e) {
      done(e)
    }
  }

  _adoptStream (stream) {
    const h = native.adoptStream(this._h, addressesOf(stream))
    bindStream(h, stream, (err) => {
      const conn = handles.get(h)
      if (conn) conn.emit('error', err)
      else this._onClientError({ message: err.message, code: err.code })
    })
  }

  _onListening (info) {
    this._address = info
    this._listening = true
    this.emit('listening')
  }

  _onClose () {
    this._listening = false
    keepAlive(this, false)
    if (!this._factoryServer) handles.delete(this._h)
    this.emit('close')
  }

  _onError (info) {
    // listen() failed (EADDRINUSE and the like): as net.Server, an 'error' event.
    this._listening = false
    keepAlive(this, false)
    this.emit('error', makeError(info))
  }

  _onClientError (info) {
    // An error on a connection that never finished its handshake: there is no
    // connection object yet, so it is reported here (as http.Server does).
    const err = makeError(info)
    if (this.logErrors) console.error(err.stack)
    if (this.listenerCount('clientError') > 0) this.emit('clientError', err)
  }

  _onConnection (h, info) {
    const conn = new Connection(this, h, info)
    const stream = streams.get(h)
    if (stream) conn.socket = stream
    conn._onConnected(info)
    // The original passes `true` on a resume and nothing on a new session.
    const reconnect = info.resumed ? true : undefined
    this.emit('connection', conn, reconnect)
    conn.emit('connect', reconnect)
  }
}

exports.session = sessions.session
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
