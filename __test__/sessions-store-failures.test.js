'use strict'
// Session stores that fail: a get or a set that errs (callback, rejected
// Promise, thrown), and a store that never answers (storeTimeout). Each is an
// 'error' on the connection concerned; nothing else is disturbed.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  installExitWatchdog, HOST, SESSION_ID_RE, useResources, waitUntil, waitHandshake, errorsOf, pingPong,
  roundTripMatching, recordingStore, hasAll,
} = require('./helpers')

installExitWatchdog(15000)

const T = { timeout: 20000 }

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
      await roundTripMatching(client, 1)
      await roundTripMatching(other, 2, 'other client')
      assert.equal(errorsOf(otherConn).length, 0, 'the other connection saw no error')
      assert.equal(errorsOf(conn).length, 0, 'the first connection saw no error')
      assert.equal(srv.errors.length, 0, 'no server error')
      // And the server still takes new clients.
      const late = await r.connectClient('ours', srv.port)
      await roundTripMatching(late, 3, 'late client')
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
      await roundTripMatching(client, 1)
      const other = await r.connectClient('ours', srv.port)
      await roundTripMatching(other, 2, 'other client')
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
    await roundTripMatching(other, 1, 'other client')
    await roundTripMatching(other, 2, 'other client')
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
    await roundTripMatching(resumer, 3, 'resumer')
    assert.equal(srv.errors.length, 0)
    // The silent sets time out too, as errors on their connections, never as crashes.
    const otherConn = srv.connections.find((e) => e.conn !== entry.conn).conn
    await waitUntil(() => errorsOf(otherConn).length > 0, 3000, "the other connection's timed-out save to be reported")
    assert.match(errorsOf(otherConn)[0].message, /set/)
  })
})
