'use strict'
// Session stores behind our server (docs/PROTOCOL.md §5; README "Sessions and
// stores"): connect-style stores with callbacks or Promises, a Store subclass
// written connect-redis style, and Uhura.session.MemoryStore, each through a
// session's whole life.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const util = require('node:util')
const {
  installExitWatchdog, SESSION_ID_RE, useResources, waitUntil, waitHandshake, pingPong, roundTripMatching,
  recordingStore, hasAll, assertHasAll, assertNoStoreOrProtocolErrors,
} = require('./helpers')

installExitWatchdog(15000)

const U = require('..')

const T = { timeout: 20000 }

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
  await roundTripMatching(client, 1)

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
  await roundTripMatching(client, 2)
  assertNoStoreOrProtocolErrors(r)
  return { r, srv, client }
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

  it('a client back at once finds the last change its old connection was still saving', T, async (t) => {
    // The store takes 300 ms per save: the takeover must wait for the old
    // connection's last save before it reads the session back.
    const map = new Map()
    const store = {
      get (sid, cb) { setImmediate(() => cb(null, map.has(sid) ? JSON.parse(map.get(sid)) : undefined)) },
      set (sid, sess, cb) {
        const text = JSON.stringify(sess)
        setTimeout(() => { map.set(sid, text); if (cb) cb() }, 300)
      },
      destroy (sid, cb) { map.delete(sid); setImmediate(() => { if (cb) cb() }) },
    }
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { store } })
    const client = await r.connectClient('ours', srv.port)
    const { conn } = await srv.waitConnection(0)
    await waitUntil(() => map.size === 1, 5000, 'the first save')
    conn.set('late', 'change')
    await waitUntil(() => client.get('late') === 'change', 5000, "the client to have the server's change")
    const hs = waitHandshake('ours', client)
    client.reconnect()
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    await hs
    assert.equal(reconnect, true, 'resumed')
    assert.equal(conn2.get('late'), 'change', 'the resumed session has the change that was being saved')
  })
})
