'use strict'
// The `Uhura.session` export of the original: connect 2.x's session store
// classes, so stores written for connect keep working. A store factory in
// the `require('connect-redis')(Uhura)` style reads `Uhura.session.Store`
// and subclasses it with `Store.call(this, options)`, so Store is an
// ES5-style constructor, not a class.

const { EventEmitter } = require('events')
const util = require('util')
const defaults = require('./defaults')

/** connect's Cookie: the `cookie` field the 0.1.x server stores in every session. */
function Cookie (options) {
  this.path = '/'
  this.maxAge = null
  this.httpOnly = true
  if (options) {
    for (const key in options) this[key] = options[key]
  }
  if (this.originalMaxAge === undefined) {
    // connect reads its maxAge getter back, which is a ms short when the
    // clock ticks in between; the option itself is what was asked for.
    this.originalMaxAge = options && typeof options.maxAge === 'number' ? options.maxAge : this.maxAge
  }
}

Object.defineProperty(Cookie.prototype, 'maxAge', {
  get () {
    return this._expires instanceof Date ? this._expires.valueOf() - Date.now() : this._expires
  },
  set (ms) {
    this._expires = typeof ms === 'number' ? new Date(Date.now() + ms) : ms
  },
  enumerable: false,
  configurable: true
})

Object.defineProperty(Cookie.prototype, 'expires', {
  get () {
    return this._expires
  },
  set (date) {
    this._expires = date
  },
  enumerable: false,
  configurable: true
})

Cookie.prototype.toJSON = function () {
  const out = { originalMaxAge: this.originalMaxAge, expires: this._expires === undefined ? null : this._expires }
  if (this.secure !== undefined) out.secure = this.secure
  out.httpOnly = this.httpOnly
  if (this.domain !== undefined) out.domain = this.domain
  out.path = this.path
  return out
}

/** connect's Session: the session data plus a few methods, bound to a request-like object. */
function Session (req, data) {
  Object.defineProperty(this, 'req', { value: req, enumerable: false, writable: true })
  Object.defineProperty(this, 'id', { value: req.sessionID, enumerable: false, writable: true })
  if (data && typeof data === 'object') {
    // Plain data whatever the key: a stored `__proto__` never replaces the prototype.
    for (const key in data) {
      if (key === '__proto__') Object.defineProperty(this, key, { value: data[key], writable: true, enumerable: true, configurable: true })
      else this[key] = data[key]
    }
  }
}

Object.defineProperty(Session.prototype, 'touch', {
  value () {
    return this.resetMaxAge()
  }
})
Object.defineProperty(Session.prototype, 'resetMaxAge', {
  value () {
    if (this.cookie) this.cookie.maxAge = this.cookie.originalMaxAge
    return this
  }
})
Object.defineProperty(Session.prototype, 'save', {
  value (fn) {
    this.req.sessionStore.set(this.id, this, fn || function () {})
    return this
  }
})
Object.defineProperty(Session.prototype, 'reload', {
  value (fn) {
    const req = this.req
    const store = this.req.sessionStore
    store.get(this.id, (err, sess) => {
      if (err) return fn(err)
      if (!sess) return fn(new Error('failed to load session'))
      store.createSession(req, sess)
      fn()
    })
    return this
  }
})
Object.defineProperty(Session.prototype, 'destroy', {
  value (fn) {
    delete this.req.session
    this.req.sessionStore.destroy(this.id, fn || function () {})
    return this
  }
})
Object.defineProperty(Session.prototype, 'regenerate', {
  value (fn) {
    this.req.sessionStore.regenerate(this.req, fn)
    return this
  }
})

/** connect's abstract Store: subclasses provide get, set and destroy. */
function Store (options) {
  EventEmitter.call(this)
}
util.inherits(Store, EventEmitter)

Store.prototype.regenerate = function (req, fn) {
  this.destroy(req.sessionID, (err) => {
    if (typeof this.generate === 'function') this.generate(req)
    fn(err)
  })
}

Store.prototype.load = function (sid, fn) {
  this.get(sid, (err, sess) => {
    if (err) return fn(err)
    if (!sess) return fn()
    const req = { sessionID: sid, sessionStore: this }
    fn(null, this.createSession(req, sess))
  })
}

Store.prototype.createSession = function (req, sess) {
  const expires = sess.cookie && sess.cookie.expires
  const originalMaxAge = sess.cookie && sess.cookie.originalMaxAge
  sess.cookie = new Cookie(sess.cookie)
  if (typeof expires === 'string') sess.cookie.expires = new Date(expires)
  sess.cookie.originalMaxAge = originalMaxAge
  req.session = new Session(req, sess)
  return req.session
}

/** connect's MemoryStore: sessions as JSON text in a plain object. */
function MemoryStore () {
  Store.call(this)
  this.sessions = Object.create(null)
}
util.inherits(MemoryStore, Store)

MemoryStore.prototype.get = function (sid, fn) {
  setImmediate(() => {
    const text = this.sessions[sid]
    if (text === undefined) return fn()
    const sess = JSON.parse(text)
    const expires = sess.cookie && sess.cookie.expires
    if (!expires || new Date() < new Date(expires)) return fn(null, sess)
    this.destroy(sid, () => fn())
  })
}

MemoryStore.prototype.set = function (sid, sess, fn) {
  setImmediate(() => {
    this.sessions[sid] = JSON.stringify(sess)
    if (fn) fn()
  })
}

MemoryStore.prototype.destroy = function (sid, fn) {
  setImmediate(() => {
    delete this.sessions[sid]
    if (fn) fn()
  })
}

MemoryStore.prototype.all = function (fn) {
  setImmediate(() => fn(null, Object.keys(this.sessions).map((sid) => JSON.parse(this.sessions[sid]))))
}

MemoryStore.prototype.clear = function (fn) {
  this.sessions = Object.create(null)
  if (fn) setImmediate(fn)
}

MemoryStore.prototype.length = function (fn) {
  setImmediate(() => fn(null, Object.keys(this.sessions).length))
}

/**
 * The session a connect-style store is handed to `set`, as the original
 * hands it: a connect Session whose `cookie` is a live Cookie (`maxAge`,
 * `expires` as a Date, the rest as its JSON shows), its expiry reset to
 * `maxAge` from now (`resetMaxAge()`, done before every save). Stores take
 * their TTL from `cookie.maxAge` (connect-redis 1.x) or `cookie.expires`.
 */
function sessionForStore (store, sid, data) {
  const req = { sessionID: sid, sessionStore: store }
  if (data && data.cookie !== null && typeof data.cookie === 'object') {
    const sess = Store.prototype.createSession.call(store, req, data)
    sess.resetMaxAge()
    return sess
  }
  return new Session(req, data)
}

/**
 * Runs one operation of a connect-style store (callback or Promise style)
 * for the server; `done(err, json)` answers it once, `json` being the
 * session `get` found. An ENOENT error from `get` means no such session
 * (file stores answer so), as express-session takes it.
 */
function runStoreOp (store, op, sid, data, done) {
  let settled = false
  const reply = (err, value) => {
    if (settled) return
    settled = true
    if (err && op === 'get' && err.code === 'ENOENT') err = null
    if (err) return done(err)
    done(null, op === 'get' && value != null ? JSON.stringify(value) : undefined)
  }
  try {
    let r
    if (op === 'get') r = store.get(sid, reply)
    else if (op === 'set') r = store.set(sid, sessionForStore(store, sid, data), (err) => reply(err))
    else r = store.destroy(sid, (err) => reply(err))
    if (r && typeof r.then === 'function') {
      r.then((v) => reply(null, v), (e) => reply(e || new Error(`store.${op} rejected`)))
    }
  } catch (e) {
    reply(e)
  }
}

/**
 * The old `session(options)` export: returns the store a server would use.
 * Kept for code that called it directly.
 */
function session (options) {
  options = options || {}
  return options.store || new MemoryStore()
}

/**
 * A Redis-backed store, run natively: session reads and writes never cross
 * into JavaScript. Pass it as `createServer({ store: Uhura.redisStore({ url }) })`.
 */
function RedisStore (options) {
  if (!(this instanceof RedisStore)) return new RedisStore(options)
  options = options || {}
  if (options.url != null && typeof options.url !== 'string') throw new TypeError('uhura: redisStore({ url }) must be a string')
  this.url = options.url || defaults.redisUrl
  this.prefix = options.prefix == null ? defaults.redisPrefix : String(options.prefix)
  // Delivery state (not sessions) goes here, out of the session prefix
  // that connect-redis scans.
  this.auxPrefix = options.auxPrefix == null ? defaults.redisAuxPrefix : String(options.auxPrefix)
  if (this.prefix !== '' && this.auxPrefix.startsWith(this.prefix)) {
    throw new TypeError(`uhura: redisStore({ auxPrefix }) ${JSON.stringify(this.auxPrefix)} must not start with the session prefix ${JSON.stringify(this.prefix)}`)
  }
  this.ttl = options.ttl == null ? defaults.redisTtl : Number(options.ttl)
  if (!(this.ttl > 0)) throw new TypeError('uhura: redisStore({ ttl }) must be a positive number of seconds')
  // A Redis Cluster, reached through any of these nodes (instead of `url`).
  if (options.cluster != null) {
    if (!Array.isArray(options.cluster) || options.cluster.length === 0 || !options.cluster.every((u) => typeof u === 'string')) {
      throw new TypeError('uhura: redisStore({ cluster }) must be a non-empty array of node urls')
    }
    if (options.url != null) throw new TypeError('uhura: redisStore() takes either url or cluster, not both')
    this.cluster = options.cluster.slice()
  }
  // rediss:// options: ca, cert, key (PEM strings or Buffers), as Node's tls.
  if (options.tls != null) {
    if (typeof options.tls !== 'object') throw new TypeError('uhura: redisStore({ tls }) must be an object ({ ca, cert, key })')
    const { ca, cert, key } = options.tls
    this.tls = { ca, cert, key }
  }
  // Session saves queued while Redis is unavailable, in bytes.
  this.maxQueuedBytes = options.maxQueuedBytes == null ? defaults.redisMaxQueuedBytes : Number(options.maxQueuedBytes)
  if (!(this.maxQueuedBytes >= 0)) throw new TypeError('uhura: redisStore({ maxQueuedBytes }) must be a number of bytes >= 0')
}

session.Store = Store
session.Cookie = Cookie
session.Session = Session
session.MemoryStore = MemoryStore

module.exports = { session, Store, Cookie, Session, MemoryStore, RedisStore, sessionForStore, runStoreOp }
