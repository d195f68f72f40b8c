'use strict'
// Sessions and stores (docs/PROTOCOL.md §3, §5; README "Sessions and stores"):
//
//   1. semantics, ours x ours: id format, resume after a drop, unknown ids,
//      `_set` merging and saving, unknown fields carried by the client;
//   2. stores: connect-style (callback, Promise, Store subclass, MemoryStore),
//      failing / throwing / silent stores, the default store's TTL and cap;
//   3. interop with uhura@0.1.2: resume and invalidateSession both ways;
//   4. a fleet of two servers sharing a store (one JS object; Redis), with
//      fail-over, and the loss and return of Redis under a live server.
//
// The Redis tests start /usr/bin/redis-server (or the one on PATH, or
// $UHURA_REDIS_SERVER) on a random port; without it they FAIL unless
// UHURA_SKIP_REDIS=1.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const util = require('node:util')
const {
  HOST, SESSION_ID_RE, useResources, waitFor, waitUntil, waitHandshake, delay, collect,
  withTimeout, parseFrames, errorsOf, installExitWatchdog, needRedis, redisCommand, redisGetJSON, startRedis,
} = require('./helpers')

installExitWatchdog(15000)

const U = require('..')

const T = { timeout: 20000 }
// connect's default Cookie, as the 0.1.x server stores it in every session.
const DEFAULT_COOKIE = { originalMaxAge: null, expires: null, httpOnly: true, path: '/' }

// ---------------------------------------------------------------- helpers

const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)))

function pingPong (conn) {
  conn.on('ping', (n) => conn.send('pong', n))
}

/** Our server (with `options`) and one of our clients, connected. */
async function ourPair (r, options, { reconnect = true } = {}) {
  const srv = await r.startServer('ours', { options, onConnection: pingPong })
  const client = await r.connectClient('ours', srv.port)
  if (reconnect) client.autoReconnect(20, 200)
  const sid = client.get('sessionID')
  const { conn } = await srv.waitConnection(0)
  return { srv, client, sid, conn }
}

async function roundTrip (client, n, label = 'client') {
  const pong = waitFor(client, 'pong', 5000, { label: `${label} (pong)`, filter: (m) => m === n })
  client.send('ping', n)
  assert.deepStrictEqual(await pong, [n], `${label} must round-trip an event`)
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
 * destroys its live connections. The client can only fail over elsewhere.
 */
async function killServer (srv) {
  const closed = waitFor(srv.server, 'close', 5000, { label: 'server A (close)' })
  srv.server.close()
  await waitUntil(async () => (await tryConnect(srv.port)) !== null, 5000, `server A's port ${srv.port} to refuse connections`)
  for (const { conn } of srv.connections) conn.socket.destroy()
  await closed
  srv.closed = true
}

// =========================================================== 1. semantics

describe('1. session semantics (ours x ours)', () => {
  it('a new session gets a 24-character [A-Za-z0-9] id, the same on both sides, reconnect not true', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: pingPong })
    const ids = new Set()
    for (let i = 0; i < 3; i++) {
      const client = await r.connectClient('ours', srv.port)
      const sid = client.get('sessionID')
      assert.match(String(sid), SESSION_ID_RE)
      const { conn, reconnect } = await srv.waitConnection(i)
      assert.notEqual(reconnect, true, 'a new session is not a reconnect')
      assert.equal(conn.get('sessionID'), sid)
      assert.equal(conn.sessionID, sid, 'conn.sessionID')
      assert.equal(client.get().sessionID, sid)
      ids.add(sid)
    }
    assert.equal(ids.size, 3, 'every new session gets a distinct id')
    assertNoStoreOrProtocolErrors(r)
  })

  it('resume after conn.socket.destroy(): same sessionID, reconnect === true, every key on both sides', T, async (t) => {
    const r = useResources(t)
    const { srv, client, sid, conn } = await ourPair(r)
    const fromClient = { c1: 'one', c2: { nested: [1, 'two', null] }, 'ключ 😀': 'ü' }
    const fromServer = { s1: 1.5, s2: [true, { x: 'y' }] }
    // One side after the other (saves that cross are tested below).
    await delay(30)
    client.set('c1', fromClient.c1)
    client.set({ c2: fromClient.c2, 'ключ 😀': fromClient['ключ 😀'] })
    await waitUntil(() => hasAll(conn.get(), fromClient), 5000, "the server to have the client's keys")
    await delay(30)
    conn.set('s1', fromServer.s1)
    conn.set({ s2: fromServer.s2 })
    const all = { ...fromClient, ...fromServer, sessionID: sid }
    await waitUntil(() => hasAll(client.get(), all) && hasAll(conn.get(), all), 5000, 'both sides to have every key')
    await delay(50) // let the last save reach the store

    const disc = waitFor(client, 'disconnect', 5000, { label: 'client (disconnect)' })
    const hs = waitHandshake('ours', client)
    conn.socket.destroy()
    await disc
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    await hs
    assert.equal(reconnect, true, 'the connection callback gets reconnect === true')
    assert.equal(client.get('sessionID'), sid, 'same sessionID on the client')
    assert.equal(conn2.get('sessionID'), sid, 'same sessionID on the server')
    assert.equal(conn2.sessionID, sid)
    assertHasAll(conn2.get(), all, 'resumed server session')
    assertHasAll(client.get(), all, 'client session after resume')
    await roundTrip(client, 7)
    assertNoStoreOrProtocolErrors(r)
  })

  it('an unknown sessionID from the client starts a new session with a fresh id', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: pingPong })
    const bogus = ['bogus-session-id', 'UnknownUnknownUnknown123'] // malformed; well-formed but unknown
    for (let i = 0; i < bogus.length; i++) {
      const client = r.createClient('ours', srv.port, HOST)
      client.set('sessionID', bogus[i]) // before the first connection
      client.set('pre', i)
      await waitHandshake('ours', client)
      const { conn, reconnect } = await srv.waitConnection(i)
      assert.notEqual(reconnect, true, `${bogus[i]}: not a resume`)
      const sid = client.get('sessionID')
      assert.match(String(sid), SESSION_ID_RE, `${bogus[i]}: the client gets a well-formed id`)
      assert.notEqual(sid, bogus[i], 'a fresh id, not the unknown one')
      assert.equal(conn.get('sessionID'), sid)
      assert.equal(conn.sessionID, sid)
      assert.equal(conn.get('pre'), i, "the client's other fields are kept in the new session")
      await roundTrip(client, i)
    }
    assertNoStoreOrProtocolErrors(r)
  })

  it('_set merges both ways (key and object forms) and every change is saved to the store', T, async (t) => {
    const r = useResources(t)
    const store = recordingStore()
    const { client, sid, conn } = await ourPair(r, { store }, { reconnect: false })
    const connSets = collect(conn, '_set')
    const clientSets = collect(client, '_set')
    await waitUntil(() => store.sets(sid).length >= 1, 5000, 'the new session to be saved')
    assert.equal(store.sets(sid)[0].sess.sessionID, sid, 'the new session is saved under its id')
    assert.equal(store.calls.filter((c) => c.op === 'get').length, 0, 'a new session does not read the store')

    // Each step, one at a time: the change arrives on the other side (with a
    // `_set` event), merges into what is there, and the store gets a save
    // that holds it.
    const steps = [
      { who: 'client', args: ['a', 1], want: { a: 1 } },
      { who: 'server', args: ['b', { deep: [1, 2] }], want: { b: { deep: [1, 2] } } },
      { who: 'client', args: [{ c: 'x', d: null }], want: { c: 'x', d: null } },
      { who: 'server', args: [{ e: 'é😀', a: 2 }], want: { e: 'é😀', a: 2 } },
      { who: 'client', args: ['b', 'replaced'], want: { b: 'replaced' } },
    ]
    const expected = { sessionID: sid }
    for (const [i, step] of steps.entries()) {
      const [from, to, toSets] = step.who === 'client' ? [client, conn, connSets] : [conn, client, clientSets]
      const before = toSets.length
      from.set(...step.args)
      Object.assign(expected, step.want)
      await waitUntil(() => toSets.length > before, 5000, `step ${i}: the '_set' event on the ${step.who === 'client' ? 'server' : 'client'}`)
      const ev = toSets[toSets.length - 1]
      assert.deepStrictEqual(ev[0], step.args[0], `step ${i}: '_set' event key/object`)
      if (step.args.length > 1) assert.deepStrictEqual(ev[1], step.args[1], `step ${i}: '_set' event value`)
      assertHasAll(to.get(), expected, `step ${i}: receiver's session (merged)`)
      assertHasAll(from.get(), expected, `step ${i}: sender's session`)
      await waitUntil(() => store.sets(sid).some((c) => hasAll(c.sess, expected)), 5000,
        `step ${i} (${step.who} set ${JSON.stringify(step.args)}) to be saved to the store`)
    }
    const saves = store.sets(sid).length
    assert.ok(saves >= 1 + steps.length, `one save per change at least (got ${saves})`)
    await delay(100)
    assertHasAll(store.peek(sid), expected, 'the stored session once the saves settled')
    assert.deepStrictEqual(store.peek(sid).cookie, DEFAULT_COOKIE, 'the stored session carries the connect cookie, as 0.1.x stores it')
    assertNoStoreOrProtocolErrors(r)
  })

  it('a burst of interleaved sets from both sides: the stored session ends with every key', T, async (t) => {
    const r = useResources(t)
    const store = recordingStore()
    const { client, sid, conn } = await ourPair(r, { store }, { reconnect: false })
    await waitUntil(() => store.peek(sid), 5000, 'the new session to be saved')
    const expected = { sessionID: sid }
    // 40 quick sets from each side. The stored session must end up with all
    // of them (saves must not overtake each other).
    for (let i = 0; i < 40; i++) {
      client.set(`cb${i}`, i)
      conn.set({ [`sb${i}`]: i })
      expected[`cb${i}`] = i
      expected[`sb${i}`] = i
    }
    await waitUntil(() => hasAll(client.get(), expected) && hasAll(conn.get(), expected), 5000, 'both sides to have the burst')
    await waitUntil(() => hasAll(store.peek(sid), expected), 3000, 'the stored session to hold every key of the burst')
    await delay(200) // and no older snapshot lands after the newest
    assertHasAll(store.peek(sid), expected, 'the stored session after the burst settled')
    assertNoStoreOrProtocolErrors(r)
  })

  // Saves of one session must reach the store in the order of the changes:
  // when a client set and a server set cross, the last save must be the
  // session holding both, never an older snapshot.
  const CROSSING = [
    { kind: 'default in-memory store', setup: async () => ({ options: {} }) },
    {
      kind: 'connect-style JS store',
      setup: async () => {
        const store = recordingStore()
        return { options: { store }, peek: async (sid) => store.peek(sid) }
      },
    },
    {
      kind: 'Redis store',
      redis: true,
      setup: async (t) => {
        const redis = await startRedis(t)
        return { options: { store: U.redisStore({ url: redis.url }) }, peek: (sid) => redisGetJSON(redis.port, 'sess:' + sid) }
      },
    },
  ]
  for (const variant of CROSSING) {
    it(`crossing sets from both sides are all kept by the ${variant.kind} (no older save lands last)`, T, async (t) => {
      if (variant.redis && !needRedis(t)) return
      const { options, peek } = await variant.setup(t)
      const r = useResources(t)
      const srv = await r.startServer('ours', { options, onConnection: pingPong })
      const ROUNDS = 30
      const lost = []
      for (let i = 0; i < ROUNDS; i++) {
        const client = await r.connectClient('ours', srv.port)
        client.autoReconnect(20, 200)
        const sid = client.get('sessionID')
        const { conn } = await entryOf(srv, sid)
        client.set('c1', i)
        client.set({ c2: i })
        conn.set('s1', i)
        conn.set({ s2: i })
        const want = { c1: i, c2: i, s1: i, s2: i }
        await waitUntil(() => hasAll(client.get(), want) && hasAll(conn.get(), want), 5000, 'both sides to have the four keys')
        await delay(50)
        if (peek) {
          const stored = await peek(sid)
          if (!hasAll(stored, want)) lost.push(`round ${i}: stored ${JSON.stringify(stored)}`)
        } else {
          // The default store can only be read by resuming.
          const n = srv.connections.length
          const hs = waitHandshake('ours', client)
          conn.socket.destroy()
          const { conn: conn2, reconnect } = await srv.waitConnection(n)
          await hs
          assert.equal(reconnect, true)
          if (!hasAll(conn2.get(), want)) lost.push(`round ${i}: resumed ${JSON.stringify(conn2.get())}`)
        }
        client.disconnect()
      }
      assert.deepStrictEqual(lost, [], `rounds whose stored session lost keys (${lost.length} of ${ROUNDS})`)
      assertNoStoreOrProtocolErrors(r)
    })
  }

  it('our client carries unknown fields (an old server\'s cookie, arbitrary keys) unchanged', T, async (t) => {
    const r = useResources(t)
    // A fake old server: hands out a session with extra fields, then on the
    // reconnection records what the client sends back.
    const FIELDS = {
      sessionID: 'AbCdEfGhIjKlMnOpQrStUv12',
      cookie: { originalMaxAge: 3600000, expires: '2031-01-01T00:00:00.000Z', httpOnly: true, path: '/' },
      weird: { nested: [1, 'two', null, { deep: true }], ключ: '😀', empty: {} },
      n: -1.5e-7,
      flag: false,
    }
    const texts = []
    const rs = await r.rawServer((s) => {
      const idx = texts.length
      texts.push('')
      s.setEncoding('utf8')
      s.on('data', (d) => { texts[idx] += d })
      s.write('[\n' + JSON.stringify(['_set', FIELDS]) + '\n,\n' + JSON.stringify(['connect', { objectMode: false, enableAcks: false }]))
    })
    const client = r.createClient('ours', rs.port, HOST)
    client.autoReconnect(20, 200)
    await waitHandshake('ours', client)
    assert.deepStrictEqual(client.get(), FIELDS, 'the client takes every field')
    client.set('mine', 1)
    await waitUntil(() => parseFrames(texts[0]).length >= 3, 5000, "the client's set on the first connection")
    const hs = waitHandshake('ours', client)
    for (const s of rs.sockets) s.destroy()
    await hs
    await waitUntil(() => parseFrames(texts[1] || '').length >= 2, 5000, 'the handshake of the reconnection')
    const frames = parseFrames(texts[1])
    assert.deepStrictEqual(frames[0], ['_set', { ...FIELDS, mine: 1 }], 'the client sends back every field unchanged (plus its own)')
    assert.equal(frames[1][0], 'start')
    assertNoStoreOrProtocolErrors(r)
  })

  it('our client keeps the cookie field our server stores and sends on resume', T, async (t) => {
    const r = useResources(t)
    const { srv, client, sid, conn } = await ourPair(r)
    assert.deepStrictEqual(conn.get('cookie'), DEFAULT_COOKIE, 'the server session has the connect cookie')
    const hs = waitHandshake('ours', client)
    conn.socket.destroy()
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    await hs
    assert.equal(reconnect, true)
    assert.equal(client.get('sessionID'), sid)
    assert.deepStrictEqual(client.get('cookie'), DEFAULT_COOKIE, 'the resumed session sent to the client includes the cookie')
    assert.deepStrictEqual(conn2.get('cookie'), DEFAULT_COOKIE)
    assertNoStoreOrProtocolErrors(r)
  })
})

// ============================================================== 2. stores

/**
 * Runs a session's life against `store` on our server: new session saved,
 * keys from both sides stored, resume from the store, invalidateSession
 * destroys it. `peek(sid)` reads the store's own data (sync or async).
 */
async function storeLifecycle (t, store, peek) {
  const r = useResources(t)
  const srv = await r.startServer('ours', { options: { store }, onConnection: pingPong })
  const client = await r.connectClient('ours', srv.port)
  client.autoReconnect(20, 200)
  const sid = client.get('sessionID')
  assert.match(String(sid), SESSION_ID_RE)
  const { conn, reconnect } = await srv.waitConnection(0)
  assert.notEqual(reconnect, true)
  const want = { fromClient: { a: [1, 'b'] }, fromServer: 'ü😀', sessionID: sid }
  // One side after the other, each once the previous save is in the store
  // (saves that cross are tested in section 1).
  await waitUntil(async () => (await peek(sid)) != null, 5000, 'the store to hold the new session')
  client.set('fromClient', want.fromClient)
  await waitUntil(async () => hasAll(await peek(sid), { fromClient: want.fromClient }), 5000, "the store to hold the client's key")
  conn.set({ fromServer: want.fromServer })
  await waitUntil(() => hasAll(client.get(), want) && hasAll(conn.get(), want), 5000, 'both sides to have both keys')
  await waitUntil(async () => hasAll(await peek(sid), want), 5000, 'the store to hold both keys')

  const hs = waitHandshake('ours', client)
  conn.socket.destroy()
  const { conn: conn2, reconnect: resumed } = await srv.waitConnection(1)
  await hs
  assert.equal(resumed, true, 'resumed from the store: reconnect === true')
  assert.equal(client.get('sessionID'), sid)
  assertHasAll(conn2.get(), want, 'the resumed server session')
  assertHasAll(client.get(), want, 'the client session')
  await roundTrip(client, 1)

  // invalidateSession: destroyed in the store; the client comes back new.
  const hs2 = waitHandshake('ours', client)
  conn2.invalidateSession()
  const { conn: conn3, reconnect: again } = await srv.waitConnection(2)
  await hs2
  assert.notEqual(again, true, 'an invalidated session is not resumed')
  const sid2 = client.get('sessionID')
  assert.match(String(sid2), SESSION_ID_RE)
  assert.notEqual(sid2, sid, 'a new session id after invalidateSession')
  assert.equal(conn3.get('fromClient'), undefined, 'the new session starts empty')
  await waitUntil(async () => (await peek(sid)) == null, 5000, 'the store to forget the invalidated session')
  await waitUntil(async () => (await peek(sid2)) != null, 5000, 'the store to hold the new session')
  await roundTrip(client, 2)
  assertNoStoreOrProtocolErrors(r)
  return { r, srv, client }
}

/** A store whose `op` fails in the way `how` says; the rest works (callback style). */
function failingStore (op, how) {
  const store = recordingStore()
  const inner = store[op]
  store[op] = function (sid, ...rest) {
    store.calls.push({ op: `${op}-failed`, sid })
    const err = new Error(`${op} boom (${how})`)
    if (how === 'callback error') {
      const cb = rest[rest.length - 1]
      setImmediate(() => cb(err))
      return undefined
    }
    if (how === 'rejected promise') return Promise.reject(err)
    if (how === 'throws synchronously') throw err
    return inner.call(this, sid, ...rest)
  }
  return store
}

describe('2. session stores', () => {
  it('a plain-object connect-style store (callbacks)', T, async (t) => {
    const store = recordingStore('callback')
    await storeLifecycle(t, store, (sid) => store.peek(sid))
    assert.ok(store.calls.some((c) => c.op === 'get'), 'the resume read the store')
    assert.ok(store.calls.some((c) => c.op === 'destroy'), 'invalidateSession destroyed the stored session')
  })

  it('a Promise-returning store (async methods, callbacks unused)', T, async (t) => {
    const store = recordingStore('promise')
    await storeLifecycle(t, store, (sid) => store.peek(sid))
    assert.ok(store.calls.some((c) => c.op === 'get'))
    assert.ok(store.calls.some((c) => c.op === 'destroy'))
  })

  it('a Uhura.session.Store subclass written connect-redis style (factory(Uhura), Store.call + util.inherits)', T, async (t) => {
    assert.equal(typeof U.session, 'function', 'Uhura.session is a function, as in 0.1.2')
    for (const k of ['Store', 'MemoryStore', 'Cookie', 'Session']) assert.equal(typeof U.session[k], 'function', `Uhura.session.${k}`)
    const calls = []
    // As connect-redis 1.x is written: module.exports = function (connect) { ... }
    function mapStoreFactory (connect) {
      const Store = connect.session.Store
      function MapStore (options) {
        if (!(this instanceof MapStore)) return new MapStore(options)
        Store.call(this, options)
        this.data = new Map()
        this.prefix = (options && options.prefix) || 'sess:'
      }
      util.inherits(MapStore, Store)
      MapStore.prototype.get = function (sid, fn) {
        calls.push('get')
        const text = this.data.get(this.prefix + sid)
        process.nextTick(() => fn(null, text ? JSON.parse(text) : null))
      }
      MapStore.prototype.set = function (sid, sess, fn) {
        calls.push('set')
        this.data.set(this.prefix + sid, JSON.stringify(sess))
        if (fn) process.nextTick(fn)
      }
      MapStore.prototype.destroy = function (sid, fn) {
        calls.push('destroy')
        this.data.delete(this.prefix + sid)
        if (fn) process.nextTick(fn)
      }
      return MapStore
    }
    const MapStore = mapStoreFactory(U)
    const store = new MapStore({ prefix: 'uh:' })
    assert.ok(store instanceof U.session.Store)
    assert.ok(store instanceof require('node:events').EventEmitter, 'Store inherits EventEmitter (connect-redis emits connect/disconnect on it)')
    await storeLifecycle(t, store, (sid) => {
      const text = store.data.get('uh:' + sid)
      return text ? JSON.parse(text) : null
    })
    assert.ok(calls.includes('get') && calls.includes('set') && calls.includes('destroy'), `calls: ${calls.join(',')}`)
    store.emit('disconnect') // connect-redis does this; nothing listens, nothing breaks
  })

  it('Uhura.session.MemoryStore', T, async (t) => {
    const store = new U.session.MemoryStore()
    assert.ok(store instanceof U.session.Store)
    await storeLifecycle(t, store, (sid) => {
      const text = store.sessions[sid]
      return text ? JSON.parse(text) : null
    })
  })

  for (const how of ['callback error', 'rejected promise', 'throws synchronously']) {
    it(`a store whose get fails (${how}): a resume gets 'error' and a new session; other connections are unaffected`, T, async (t) => {
      const r = useResources(t)
      const store = failingStore('get', how)
      const srv = await r.startServer('ours', { options: { store }, onConnection: pingPong })
      const other = await r.connectClient('ours', srv.port)
      const { conn: otherConn } = await srv.waitConnection(0)
      const client = await r.connectClient('ours', srv.port)
      client.autoReconnect(20, 200)
      const sid = client.get('sessionID')
      const { conn } = await srv.waitConnection(1)
      client.set('k', 'v')
      await waitUntil(() => hasAll(store.peek(sid), { k: 'v' }), 5000, 'the store to hold k')

      const hs = waitHandshake('ours', client)
      conn.socket.destroy()
      const { conn: conn2, reconnect } = await srv.waitConnection(2)
      await hs
      await waitUntil(() => errorsOf(conn2).length > 0, 5000, "an 'error' event on the new connection")
      const err = errorsOf(conn2)[0]
      t.diagnostic(`error on the connection: ${err.code} ${err.message}`)
      assert.ok(err instanceof Error)
      assert.match(err.message, /get/, 'the error says which store operation failed')
      assert.ok(store.calls.some((c) => c.op === 'get-failed' && c.sid === sid), 'the store get was tried with the old id')
      assert.notEqual(reconnect, true, 'not a resume')
      const sid2 = client.get('sessionID')
      assert.match(String(sid2), SESSION_ID_RE)
      assert.notEqual(sid2, sid, 'a new session id')
      assert.equal(conn2.get('sessionID'), sid2)
      await roundTrip(client, 1)
      await roundTrip(other, 2, 'other client')
      assert.equal(errorsOf(otherConn).length, 0, 'the other connection saw no error')
      assert.equal(errorsOf(conn).length, 0, 'the first connection saw no error')
      assert.equal(srv.errors.length, 0, 'no server error')
      // And the server still takes new clients.
      const late = await r.connectClient('ours', srv.port)
      await roundTrip(late, 3, 'late client')
    })
  }

  for (const how of ['callback error', 'rejected promise', 'throws synchronously']) {
    it(`a store whose set fails (${how}): 'error' on the connection, which keeps working`, T, async (t) => {
      const r = useResources(t)
      const store = failingStore('set', how)
      const srv = await r.startServer('ours', { options: { store }, onConnection: pingPong })
      const client = await r.connectClient('ours', srv.port)
      const { conn } = await srv.waitConnection(0)
      // The new session's save already failed once.
      await waitUntil(() => errorsOf(conn).length >= 1, 5000, "an 'error' for the new session's save")
      const n = errorsOf(conn).length
      client.set('k', 1)
      await waitUntil(() => errorsOf(conn).length > n, 5000, "an 'error' for the set's save")
      const err = errorsOf(conn)[n]
      t.diagnostic(`error on the connection: ${err.code} ${err.message}`)
      assert.match(err.message, /set/)
      assert.equal(conn.get('k'), 1, 'the session itself still changed')
      await roundTrip(client, 1)
      const other = await r.connectClient('ours', srv.port)
      await roundTrip(other, 2, 'other client')
      assert.equal(errorsOf(client).length, 0, 'the client saw no error')
      assert.equal(srv.errors.length, 0)
    })
  }

  it('a store that never answers (storeTimeout: 300): error within bounded time; other clients are not blocked', T, async (t) => {
    const r = useResources(t)
    const pending = []
    const store = {
      get (sid, cb) { pending.push(['get', sid]) },
      set (sid, sess, cb) { pending.push(['set', sid]) },
      destroy (sid, cb) { pending.push(['destroy', sid]) },
    }
    const times = {}
    const srv = await r.startServer('ours', {
      options: { store, storeTimeout: 300 },
      onConnection: (conn) => {
        pingPong(conn)
        if (conn.get('who') === 'resumer') times.resumerConn = Date.now()
      },
    })
    // A client that asks to resume: its handshake waits on the silent get.
    const resumer = r.createClient('ours', srv.port, HOST)
    resumer.set('sessionID', 'NeverAnsweredNeverAnswer')
    resumer.set('who', 'resumer')
    const t0 = Date.now()
    const resumerHs = waitHandshake('ours', resumer, 5000)
    await waitUntil(() => pending.some((p) => p[0] === 'get'), 5000, 'the store get')
    // Meanwhile another client (a new session: no store read) works.
    const other = await r.connectClient('ours', srv.port)
    await roundTrip(other, 1, 'other client')
    await roundTrip(other, 2, 'other client')
    times.otherDone = Date.now()
    assert.equal(times.resumerConn, undefined, 'the resumer is still waiting for the store while the other client round-trips')

    await resumerHs
    const entry = srv.connections.find((e) => e.conn.get('who') === 'resumer')
    assert.ok(entry, 'the resumer got a connection')
    await waitUntil(() => errorsOf(entry.conn).some((e) => /get/.test(e.message)), 5000, "a store 'error' on the resumer's connection")
    const elapsed = Date.now() - t0
    t.diagnostic(`resumer connected ${times.resumerConn - t0} ms after start; other client done after ${times.otherDone - t0} ms; errors: ${errorsOf(entry.conn).map((e) => e.message).join(' | ')}`)
    assert.ok(times.resumerConn - t0 >= 250, `the handshake waited for the store timeout (${times.resumerConn - t0} ms)`)
    assert.ok(elapsed < 3000, `the store timeout is honoured (${elapsed} ms)`)
    assert.notEqual(entry.reconnect, true)
    const sid = resumer.get('sessionID')
    assert.match(String(sid), SESSION_ID_RE)
    assert.notEqual(sid, 'NeverAnsweredNeverAnswer')
    await roundTrip(resumer, 3, 'resumer')
    assert.equal(srv.errors.length, 0)
    // The silent sets time out too, as errors on their connections, never as crashes.
    const otherConn = srv.connections.find((e) => e.conn !== entry.conn).conn
    await waitUntil(() => errorsOf(otherConn).length > 0, 3000, "the other connection's timed-out save to be reported")
    assert.match(errorsOf(otherConn)[0].message, /set/)
  })

  it('the default store with sessionTTL: 200 forgets an idle session', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { sessionTTL: 200 }, onConnection: pingPong })
    const client = await r.connectClient('ours', srv.port)
    const sid = client.get('sessionID')
    const { conn } = await srv.waitConnection(0)

    // Control: back within the TTL, it resumes.
    let disc = waitFor(client, 'disconnect', 5000, { label: 'client (disconnect)' })
    conn.socket.destroy()
    await disc
    await delay(30)
    let hs = waitHandshake('ours', client)
    client.reconnect()
    await hs
    const { conn: conn2, reconnect: quick } = await srv.waitConnection(1)
    assert.equal(quick, true, 'resumed within the TTL')
    assert.equal(client.get('sessionID'), sid)

    // Idle for 400 ms: gone.
    disc = waitFor(client, 'disconnect', 5000, { label: 'client (disconnect)' })
    conn2.socket.destroy()
    await disc
    await delay(400)
    hs = waitHandshake('ours', client)
    client.reconnect()
    await hs
    const { conn: conn3, reconnect: late } = await srv.waitConnection(2)
    assert.notEqual(late, true, 'not resumed after 400 ms idle with sessionTTL 200')
    const sid2 = client.get('sessionID')
    assert.match(String(sid2), SESSION_ID_RE)
    assert.notEqual(sid2, sid, 'a new session id')
    assert.equal(conn3.get('sessionID'), sid2)
    await roundTrip(client, 1)
    assertNoStoreOrProtocolErrors(r)
  })

  it('the default store with maxSessions caps the number of sessions: the earliest can no longer resume', T, async (t) => {
    const r = useResources(t)
    const CAP = 5
    const srv = await r.startServer('ours', { options: { maxSessions: CAP }, onConnection: pingPong })
    const sids = []
    const secrets = new Map()
    for (let i = 0; i < CAP + 5; i++) {
      const c = await r.connectClient('ours', srv.port)
      sids.push(c.get('sessionID'))
      secrets.set(c.get('sessionID'), c.resumeSecret)
      await entryOf(srv, c.get('sessionID')) // counted before the next step
      c.disconnect()
    }
    assert.equal(new Set(sids).size, sids.length)
    // A new client object for each, as a restarted process: id and secret.
    const resume = async (sid) => {
      const c = r.createClient('ours', { port: srv.port, host: HOST, resumeSecret: secrets.get(sid) })
      c.set('sessionID', sid)
      const n = srv.connections.length
      await waitHandshake('ours', c)
      const entry = await srv.waitConnection(n)
      const got = c.get('sessionID')
      c.disconnect()
      return { reconnect: entry.reconnect, sid: got }
    }
    const last = await resume(sids[sids.length - 1])
    assert.equal(last.reconnect, true, 'the most recent session still resumes')
    assert.equal(last.sid, sids[sids.length - 1])
    const first = await resume(sids[0])
    assert.notEqual(first.reconnect, true, `the earliest of ${sids.length} sessions (cap ${CAP}) was evicted`)
    assert.notEqual(first.sid, sids[0], 'it gets a new id')
    assertNoStoreOrProtocolErrors(r)
  })
})

// ============================================================= 3. interop

describe('3. sessions with uhura@0.1.2', () => {
  it('a 0.1.2 client resumes its session on our server (autoReconnect)', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: pingPong })
    const client = await r.connectClient('v0.1.2', srv.port)
    client.autoReconnect()
    const sid = client.get('sessionID')
    assert.match(String(sid), SESSION_ID_RE)
    const { conn } = await srv.waitConnection(0)
    // One side after the other (saves that cross are tested in section 1).
    await delay(30)
    client.set('fromOld', { a: 1 })
    await waitUntil(() => conn.get('fromOld'), 5000, "the server to have the client's key")
    await delay(30)
    conn.set('fromOurs', [1, 2])
    const all = { fromOld: { a: 1 }, fromOurs: [1, 2], sessionID: sid }
    await waitUntil(() => hasAll(client.get(), all) && hasAll(conn.get(), all), 5000, 'both sides to have both keys')
    await delay(50)
    const hs = waitHandshake('v0.1.2', client)
    conn.socket.destroy()
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    await hs
    assert.equal(reconnect, true, 'our callback gets reconnect === true')
    assert.equal(client.get('sessionID'), sid, 'the 0.1.2 client keeps its sessionID')
    assert.equal(conn2.get('sessionID'), sid)
    assertHasAll(conn2.get(), all, 'resumed session on our server')
    assertHasAll(client.get(), all, '0.1.2 client session')
    assert.deepStrictEqual(client.get('cookie'), DEFAULT_COOKIE, 'the 0.1.2 client got the cookie field, as from a 0.1.2 server')
    await roundTrip(client, 1, '0.1.2 client')
    assertNoStoreOrProtocolErrors(r)
  })

  it('our client resumes its session on a 0.1.2 server', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('v0.1.2', { onConnection: pingPong })
    const client = await r.connectClient('ours', srv.port)
    client.autoReconnect(20, 200)
    const sid = client.get('sessionID')
    assert.match(String(sid), SESSION_ID_RE)
    const { conn } = await srv.waitConnection(0)
    client.set('fromOurs', { a: 1 })
    conn.set('fromOld', 'x')
    const all = { fromOurs: { a: 1 }, fromOld: 'x', sessionID: sid }
    await waitUntil(() => hasAll(client.get(), all) && hasAll(conn.get(), all), 5000, 'both sides to have both keys')
    await delay(50)
    const hs = waitHandshake('ours', client)
    conn.socket.destroy()
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    await hs
    assert.equal(reconnect, true, 'the 0.1.2 server resumed the session')
    assert.equal(client.get('sessionID'), sid)
    assertHasAll(conn2.get(), all, 'resumed session on the 0.1.2 server')
    assertHasAll(client.get(), all, 'our client session')
    assert.ok(client.get('cookie') && client.get('cookie').path === '/', 'the 0.1.2 cookie field reached our client')
    await roundTrip(client, 1)
    assertNoStoreOrProtocolErrors(r)
  })

  // The server invalidates; the client empties its session, drops, and
  // comes back (autoReconnect) with a new session id and none of the old values.
  async function invalidateAcross (t, { serverImpl, clientImpl, label, reconnectArgs, store }) {
    const r = useResources(t)
    const srv = await r.startServer(serverImpl, { options: store ? { store } : undefined, onConnection: pingPong })
    const client = await r.connectClient(clientImpl, srv.port)
    client.autoReconnect(...reconnectArgs)
    const sid = client.get('sessionID')
    const { conn } = await srv.waitConnection(0)
    client.set('k', 'v')
    await waitUntil(() => conn.get('k') === 'v', 5000, 'the server to see k')
    let sessionAtEvent
    client.on('invalidateSession', () => { sessionAtEvent = clone(client.get()) })
    const got = waitFor(client, 'invalidateSession', 5000, { label: `${label} (invalidateSession)` })
    conn.invalidateSession()
    await got
    assert.deepStrictEqual(sessionAtEvent, {}, `the ${label} emptied its session`)
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    await waitUntil(() => client.get('sessionID') && client.get('sessionID') !== sid, 5000, `the ${label} to get a new sessionID`)
    assert.notEqual(reconnect, true)
    const sid2 = client.get('sessionID')
    assert.match(String(sid2), SESSION_ID_RE)
    assert.equal(conn2.get('sessionID'), sid2)
    assert.equal(conn2.get('k'), undefined, 'the old values are gone on the server')
    assert.equal(client.get('k'), undefined, 'the old values are gone on the client')
    if (store) assert.ok(store.calls.some((c) => c.op === 'destroy' && c.sid === sid), 'the stored session was destroyed')
    await roundTrip(client, 1, label)
    assertNoStoreOrProtocolErrors(r)
  }

  it('invalidateSession: our server -> 0.1.2 client (emptied, back with a new id)', T, (t) =>
    invalidateAcross(t, { serverImpl: 'ours', clientImpl: 'v0.1.2', label: '0.1.2 client', reconnectArgs: [], store: recordingStore() }))

  it('invalidateSession: 0.1.2 server -> our client (emptied, back with a new id)', T, (t) =>
    invalidateAcross(t, { serverImpl: 'v0.1.2', clientImpl: 'ours', label: 'our client', reconnectArgs: [20, 200] }))
})

// =============================================================== 4. fleet

/**
 * Two of our servers sharing a store (`makeStore()` per server: the same
 * object, or two handles on one Redis); a client with both addresses fails
 * over from A to B and resumes with every key. `peek(sid)` reads the store.
 */
async function fleetFailover (t, makeStore, peek) {
  const r = useResources(t)
  const A = await r.startServer('ours', { options: { store: makeStore() }, onConnection: pingPong })
  const B = await r.startServer('ours', { options: { store: makeStore() }, onConnection: pingPong })
  const client = r.createClient('ours', { servers: [{ host: HOST, port: A.port }, { host: HOST, port: B.port }] })
  client.autoReconnect(20, 200)
  await waitHandshake('ours', client)
  const { conn } = await A.waitConnection(0)
  assert.equal(B.connections.length, 0, 'the client went to the first address')
  const sid = client.get('sessionID')
  const want = { sessionID: sid, c1: 'client', c2: { nested: [1, null] }, s1: 'server', s2: { a: 'é😀' } }
  // The new session, then the client's keys, then the server's, each once
  // the previous save is in the store (saves that cross are tested in section 1).
  await waitUntil(async () => (await peek(sid)) != null, 5000, 'the shared store to hold the new session')
  client.set('c1', want.c1)
  client.set({ c2: want.c2 })
  for (let i = 0; i < 20; i++) {
    client.set(`cb${i}`, i)
    want[`cb${i}`] = i
  }
  const clientWant = Object.fromEntries(Object.entries(want).filter(([k]) => k !== 's1' && k !== 's2'))
  await waitUntil(async () => hasAll(await peek(sid), clientWant), 5000, "the shared store to hold the client's keys")
  conn.set('s1', want.s1)
  conn.set({ s2: want.s2 })
  for (let i = 0; i < 20; i++) {
    conn.set(`sb${i}`, i)
    want[`sb${i}`] = i
  }
  await waitUntil(() => hasAll(client.get(), want) && hasAll(conn.get(), want), 5000, 'both sides to have every key')
  await waitUntil(async () => hasAll(await peek(sid), want), 5000, 'the shared store to hold every key')
  await delay(100)
  assertHasAll(await peek(sid), want, 'the shared store, settled')

  const hs = waitHandshake('ours', client, 8000)
  await killServer(A)
  const { conn: connB, reconnect } = await B.waitConnection(0, 8000)
  await hs
  assert.equal(reconnect, true, 'B resumed the session (reconnect === true)')
  assert.equal(client.get('sessionID'), sid, 'same sessionID on B')
  assert.equal(connB.get('sessionID'), sid)
  assertHasAll(connB.get(), want, "B's session")
  assertHasAll(client.get(), want, 'client session after fail-over')
  assert.equal(A.connections.length, 1, 'nothing more reached A')
  await roundTrip(client, 1)
  connB.set('afterFailover', true)
  await waitUntil(() => client.get('afterFailover') === true, 5000, 'a set on B to reach the client')
  assertNoStoreOrProtocolErrors(r)
}

describe('4. a fleet sharing a store', () => {
  it('two servers, one connect-style JS store object: the client fails over and resumes with every key', T, async (t) => {
    const store = recordingStore()
    await fleetFailover(t, () => store, (sid) => store.peek(sid))
  })

  it('two servers, one Redis (native store): the client fails over and resumes with every key', { timeout: 30000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startRedis(t)
    await fleetFailover(t, () => U.redisStore({ url: redis.url }), (sid) => redisGetJSON(redis.port, 'sess:' + sid))
  })

  it('Redis lost mid-run: store errors on the server connections, nothing crashes; back after a restart', { timeout: 45000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startRedis(t)
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { store: U.redisStore({ url: redis.url, prefix: 'uht:', ttl: 600 }) }, onConnection: pingPong })
    const c1 = await r.connectClient('ours', srv.port)
    const sid1 = c1.get('sessionID')
    const { conn: conn1 } = await srv.waitConnection(0)
    c1.set('before', 1)
    await waitUntil(async () => hasAll(await redisGetJSON(redis.port, 'uht:' + sid1), { before: 1, sessionID: sid1 }), 5000,
      'the session in Redis under prefix + sid')
    const ttl = await redisCommand(redis.port, 'TTL', 'uht:' + sid1)
    assert.ok(ttl > 0 && ttl <= 600, `the key has the store's ttl (TTL ${ttl})`)
    assert.equal(errorsOf(conn1).length, 0)

    // Redis dies.
    await redis.kill()
    const t0 = Date.now()
    c1.set('during', 2)
    await waitUntil(() => errorsOf(conn1).length > 0, 8000, "a store 'error' on the connection whose set could not be saved")
    t.diagnostic(`set with Redis down: error after ${Date.now() - t0} ms: ${errorsOf(conn1)[0].code} ${errorsOf(conn1)[0].message}`)
    assert.equal(conn1.get('during'), 2, 'the live session still changed')
    await roundTrip(c1, 1, 'c1 with Redis down')
    // A new client still gets a session (its save fails: an error on its connection).
    const c2 = await r.connectClient('ours', srv.port, HOST, 8000)
    await roundTrip(c2, 2, 'c2 with Redis down')
    const conn2 = (await srv.waitConnection(1)).conn
    await waitUntil(() => errorsOf(conn2).length > 0, 8000, "a store 'error' on c2's connection")
    // A resume while Redis is down: a new session, with the error on the new connection.
    c1.autoReconnect(20, 200)
    const hs = waitHandshake('ours', c1, 10000)
    conn1.socket.destroy()
    const { conn: conn1b, reconnect } = await srv.waitConnection(2, 10000)
    await hs
    assert.notEqual(reconnect, true, 'no resume without the store')
    assert.notEqual(c1.get('sessionID'), sid1, 'a new session id')
    await waitUntil(() => errorsOf(conn1b).some((e) => /get/.test(e.message)), 8000, 'the failed get reported on the new connection')
    assert.equal(srv.errors.length, 0, 'no server error')
    for (const { conn } of srv.connections) {
      for (const e of errorsOf(conn)) assert.ok(/store|redis/i.test(e.message), `only store errors: ${e.message}`)
    }

    // Redis is back (empty): a new client's session is saved and resumes.
    await redis.start()
    const deadline = Date.now() + 20000
    let ok = false
    let attempts = 0
    while (!ok && Date.now() < deadline) {
      attempts++
      const c = await r.connectClient('ours', srv.port, HOST, 8000)
      const sid = c.get('sessionID')
      const { conn } = await entryOf(srv, sid)
      // The new session's save first (a set racing it is the ordering test of section 1).
      const created = await waitUntil(async () => (await redisGetJSON(redis.port, 'uht:' + sid)) != null, 2500, 'created')
        .then(() => true, () => false)
      if (created) c.set('after', attempts)
      const saved = created && await waitUntil(async () => hasAll(await redisGetJSON(redis.port, 'uht:' + sid), { after: attempts }), 2000, 'saved')
        .then(() => true, () => false)
      if (!saved) {
        t.diagnostic(`attempt ${attempts}: not saved yet (${errorsOf(conn).map((e) => e.message).join(' | ')})`)
        c.disconnect()
        await delay(200)
        continue
      }
      c.autoReconnect(20, 200)
      const hs2 = waitHandshake('ours', c, 8000)
      const m = srv.connections.length
      conn.socket.destroy()
      const entry = await srv.waitConnection(m, 8000)
      await hs2
      assert.equal(entry.reconnect, true, 'resumed from the restarted Redis')
      assert.equal(c.get('sessionID'), sid)
      assert.equal(entry.conn.get('after'), attempts)
      assert.equal(errorsOf(entry.conn).length, 0, 'no store error after Redis is back')
      await roundTrip(c, 3, 'client after the restart')
      ok = true
    }
    t.diagnostic(`resume worked again after ${attempts} attempt(s)`)
    assert.ok(ok, 'a session resumes again within 20 s of the Redis restart')
    // The old clients are still fine.
    await roundTrip(c2, 4, 'c2 after the restart')
    assert.deepStrictEqual([...nonTransportErrors(c1), ...nonTransportErrors(c2)].map(String), [], 'clients saw no errors but transport ones')
  })
})
