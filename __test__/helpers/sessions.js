'use strict'
// Sessions and stores as the session tests look at them: a pair of ours, a
// recording connect-style store, comparisons of session objects, and the
// errors a test allows while servers come and go.

const assert = require('node:assert/strict')
const net = require('node:net')
const util = require('node:util')
const { delay, waitUntil, waitFor, withTimeout } = require('./wait')
const { HOST } = require('./net')
const { errorsOf, useResources } = require('./resources')
const { waitHandshake } = require('./legacy')
const { pingPong } = require('./exchange')

// connect's default Cookie, as the 0.1.x server stores it in every session.
const DEFAULT_COOKIE = { originalMaxAge: null, expires: null, httpOnly: true, path: '/' }

/** A deep copy of a JSON value (undefined stays undefined). */
const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)))

/** Our server (with `options`) and one of our clients, connected. */
async function ourPair (r, options, { reconnect = true } = {}) {
  const srv = await r.startServer('ours', { options, onConnection: pingPong })
  const client = await r.connectClient('ours', srv.port)
  if (reconnect) client.autoReconnect(20, 200)
  const sid = client.get('sessionID')
  const { conn } = await srv.waitConnection(0)
  return { srv, client, sid, conn }
}

/**
 * A plain-object connect-style store over a Map of JSON texts that records
 * every call. `mode`: 'callback' (answers through cb on a later tick) or
 * 'promise' (async methods that never touch the callback).
 */
function recordingStore (mode = 'callback') {
  const map = new Map()
  const calls = []
  const store = { map, calls }
  if (mode === 'callback') {
    store.get = function (sid, cb) {
      calls.push({ op: 'get', sid })
      setImmediate(() => cb(null, map.has(sid) ? JSON.parse(map.get(sid)) : undefined))
    }
    store.set = function (sid, sess, cb) {
      calls.push({ op: 'set', sid, sess: clone(sess) })
      map.set(sid, JSON.stringify(sess))
      setImmediate(() => { if (cb) cb() })
    }
    store.destroy = function (sid, cb) {
      calls.push({ op: 'destroy', sid })
      map.delete(sid)
      setImmediate(() => { if (cb) cb() })
    }
  } else {
    store.get = async function (sid) {
      calls.push({ op: 'get', sid })
      await delay(1)
      return map.has(sid) ? JSON.parse(map.get(sid)) : null
    }
    store.set = async function (sid, sess) {
      calls.push({ op: 'set', sid, sess: clone(sess) })
      await delay(1)
      map.set(sid, JSON.stringify(sess))
    }
    store.destroy = async function (sid) {
      calls.push({ op: 'destroy', sid })
      await delay(1)
      map.delete(sid)
    }
  }
  store.peek = (sid) => (map.has(sid) ? JSON.parse(map.get(sid)) : undefined)
  store.sets = (sid) => calls.filter((c) => c.op === 'set' && c.sid === sid)
  return store
}

/** Whether every [key, value] of `want` is in `obj` (deep equality). */
function hasAll (obj, want) {
  if (!obj) return false
  return Object.keys(want).every((k) => util.isDeepStrictEqual(obj[k], want[k]))
}

function assertHasAll (obj, want, what) {
  for (const k of Object.keys(want)) {
    assert.deepStrictEqual(obj && obj[k], want[k], `${what}: key ${JSON.stringify(k)} (whole: ${JSON.stringify(obj)})`)
  }
}

// Transport errors a client may report while the server it talks to goes
// away (as a net.Socket, and the 0.1.2 client, report them): ECONNREFUSED
// for each failed attempt, ECONNRESET/EPIPE when the server resets.
const TRANSPORT_ERROR = /ECONNREFUSED|ECONNRESET|EPIPE|Connection refused|Connection reset|Broken pipe/

/** No server or server-connection errors; clients only transport errors. */
function assertNoStoreOrProtocolErrors (r) {
  const found = []
  for (const { impl, client } of r.clients) {
    for (const e of errorsOf(client)) {
      if (!TRANSPORT_ERROR.test(`${e && e.code} ${e && e.message}`)) found.push(`${impl} client: ${e && e.stack}`)
    }
  }
  for (const srv of r.servers) {
    for (const e of srv.errors) found.push(`${srv.impl} server: ${e && e.stack}`)
    for (const { conn } of srv.connections) {
      for (const e of errorsOf(conn)) found.push(`${srv.impl} server connection: ${e && e.stack}`)
    }
  }
  if (found.length) throw new Error(`unexpected 'error' events:\n${found.join('\n')}`)
}

/** The errors of `emitter` that are not transport errors. */
function nonTransportErrors (emitter) {
  return errorsOf(emitter).filter((e) => !TRANSPORT_ERROR.test(`${e && e.code} ${e && e.message}`))
}

/** The newest server connection (entry) of session `sid`. */
async function entryOf (srv, sid, ms = 5000) {
  const find = () => {
    for (let i = srv.connections.length - 1; i >= 0; i--) {
      if (srv.connections[i].conn.sessionID === sid) return srv.connections[i]
    }
    return null
  }
  return waitUntil(find, ms, `the server connection of session ${sid}`)
}

/** Resolves with the connect error (or null if it connected). */
function tryConnect (port) {
  return withTimeout(new Promise((resolve) => {
    const s = net.connect(port, HOST)
    s.on('connect', () => { s.destroy(); resolve(null) })
    s.on('error', resolve)
  }), 5000, `a probe connection to ${port}`)
}

/**
 * Takes server `srv` (a helpers handle, ours) down the way a dying host
 * would: stops listening, waits until its port refuses connections, then
 * destroys its live connections. Its clients can only fail over elsewhere.
 */
async function killServer (srv) {
  const closed = waitFor(srv.server, 'close', 5000, { label: `server on ${srv.port} (close)` })
  srv.server.close()
  await waitUntil(async () => (await tryConnect(srv.port)) !== null, 5000, `port ${srv.port} to refuse connections`)
  for (const { conn } of srv.connections) conn.socket.destroy()
  await closed
  srv.closed = true
}

/**
 * Our servers A and B sharing a store (`makeStore()` per server: the same
 * object, or two handles on one Redis) and one of our clients with both
 * addresses, connected to A. Resolves once `peek(sid)`, which reads the
 * store, finds the new session.
 */
async function fleetOfTwo (t, makeStore, peek) {
  const r = useResources(t)
  const A = await r.startServer('ours', { options: { store: makeStore() }, onConnection: pingPong })
  const B = await r.startServer('ours', { options: { store: makeStore() }, onConnection: pingPong })
  const client = r.createClient('ours', { servers: [{ host: HOST, port: A.port }, { host: HOST, port: B.port }] })
  client.autoReconnect(20, 200)
  await waitHandshake('ours', client)
  const { conn } = await A.waitConnection(0)
  assert.equal(B.connections.length, 0, 'the client went to the first address')
  const sid = client.get('sessionID')
  await waitUntil(async () => (await peek(sid)) != null, 5000, 'the shared store to hold the new session')
  return { r, A, B, client, conn, sid }
}

/** Kills A of `fleetOfTwo`; resolves to B's connection once the client resumed its session there. */
async function failOver ({ A, B, client }) {
  const hs = waitHandshake('ours', client, 8000)
  await killServer(A)
  const { conn, reconnect } = await B.waitConnection(0, 8000)
  await hs
  assert.equal(reconnect, true, 'B resumed the session from the store (reconnect === true)')
  return conn
}

module.exports = {
  tryConnect,
  killServer,
  fleetOfTwo,
  failOver,
  DEFAULT_COOKIE,
  clone,
  ourPair,
  recordingStore,
  hasAll,
  assertHasAll,
  assertNoStoreOrProtocolErrors,
  nonTransportErrors,
  entryOf,
}
