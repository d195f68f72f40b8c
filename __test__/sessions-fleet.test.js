'use strict'
// A fleet of two of our servers sharing a store (one JS object; Redis), with
// fail-over, and the loss and return of Redis under a live server.
//
// The Redis tests start /usr/bin/redis-server (or the one on PATH, or
// $UHURA_REDIS_SERVER) on a random port; without it they FAIL unless
// UHURA_SKIP_REDIS=1.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  installExitWatchdog, HOST, useResources, waitUntil, waitHandshake, delay, errorsOf,
  needRedis, redisCommand, redisGetJSON, startRedis, pingPong, roundTripMatching, recordingStore, hasAll, fleetOfTwo, failOver,
  assertHasAll, assertNoStoreOrProtocolErrors, nonTransportErrors, entryOf,
} = require('./helpers')

installExitWatchdog(15000)

const U = require('..')

const T = { timeout: 20000 }

// =============================================================== 4. fleet

/**
 * Two of our servers sharing a store (`fleetOfTwo`): the client fails over
 * from A to B and resumes with every key.
 */
async function fleetFailover (t, makeStore, peek) {
  const fleet = await fleetOfTwo(t, makeStore, peek)
  const { r, A, client, conn, sid } = fleet
  const want = { sessionID: sid, c1: 'client', c2: { nested: [1, null] }, s1: 'server', s2: { a: 'é😀' } }
  // The client's keys, then the server's, each once the previous save is in
  // the store (saves that cross are tested in section 1).
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

  const connB = await failOver(fleet)
  assert.equal(client.get('sessionID'), sid, 'same sessionID on B')
  assert.equal(connB.get('sessionID'), sid)
  assertHasAll(connB.get(), want, "B's session")
  assertHasAll(client.get(), want, 'client session after fail-over')
  assert.equal(A.connections.length, 1, 'nothing more reached A')
  await roundTripMatching(client, 1)
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
    await roundTripMatching(c1, 1, 'c1 with Redis down')
    // A new client still gets a session (its save fails: an error on its connection).
    const c2 = await r.connectClient('ours', srv.port, HOST, 8000)
    await roundTripMatching(c2, 2, 'c2 with Redis down')
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
      await roundTripMatching(c, 3, 'client after the restart')
      ok = true
    }
    t.diagnostic(`resume worked again after ${attempts} attempt(s)`)
    assert.ok(ok, 'a session resumes again within 20 s of the Redis restart')
    // The old clients are still fine.
    await roundTripMatching(c2, 4, 'c2 after the restart')
    assert.deepStrictEqual([...nonTransportErrors(c1), ...nonTransportErrors(c2)].map(String), [], 'clients saw no errors but transport ones')
  })
})
