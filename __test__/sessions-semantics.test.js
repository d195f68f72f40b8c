'use strict'
// Session semantics, ours x ours (docs/PROTOCOL.md §3, §5; README "Sessions
// and stores"): id format, resume after a drop, unknown ids, `_set` merging
// and saving (crossing sets too, with the memory, a JS and the Redis store),
// unknown fields carried by the client.
//
// The Redis tests start /usr/bin/redis-server (or the one on PATH, or
// $UHURA_REDIS_SERVER) on a random port; without it they FAIL unless
// UHURA_SKIP_REDIS=1.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  installExitWatchdog, HOST, SESSION_ID_RE, useResources, waitFor, waitUntil, waitHandshake, delay, collect,
  parseFrames, needRedis, redisGetJSON, startRedis, pingPong, roundTripMatching, DEFAULT_COOKIE, ourPair,
  recordingStore, hasAll, assertHasAll, assertNoStoreOrProtocolErrors, entryOf,
} = require('./helpers')

installExitWatchdog(15000)

const U = require('..')

const T = { timeout: 20000 }

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
    await roundTripMatching(client, 7)
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
      await roundTripMatching(client, i)
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
