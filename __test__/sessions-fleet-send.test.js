'use strict'
// Sending across a fleet: `server.sendTo(sessionID, ...)` reaches a session
// connected to another server, waits in the session's queue while it is
// offline and arrives when it resumes on either server, and keeps going
// while the session moves; `server.broadcast(...)` reaches every connected
// session. Two of our servers on one Redis.
//
// Needs redis-server (see helpers/redis.js).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const v8 = require('node:v8')
const vm = require('node:vm')
const {
  installExitWatchdog, HOST, useResources, waitUntil, waitHandshake, delay, withTimeout, needRedis, startRedis, redisCommand,
  tryConnect,
} = require('./helpers')

installExitWatchdog(15000)

const U = require('..')

const T = { timeout: 30000 }

/** Two servers on one Redis. */
async function fleet (t) {
  const redis = await startRedis(t)
  const r = useResources(t)
  const store = () => U.redisStore({ url: redis.url })
  const A = await r.startServer('ours', { options: { store: store() } })
  const B = await r.startServer('ours', { options: { store: store() } })
  return { redis, r, A, B }
}

/** Until the session's first save is in Redis (sendTo refuses sessions the store does not know). */
function stored (redis, sid) {
  return waitUntil(async () => (await redisCommand(redis.port, 'EXISTS', `sess:${sid}`)) === 1, 5000, `session ${sid} in Redis`)
}

/** A client of `srv` that tallies its `name` events; resolves once connected. */
async function tallying (r, options, names) {
  const client = r.createClient('ours', options)
  const got = []
  for (const name of names) client.on(name, (...args) => got.push([name, ...args]))
  await waitHandshake('ours', client)
  return { client, got, sid: client.get('sessionID') }
}

/** `fn(cb)` as a Promise. */
function sent (fn) {
  return withTimeout(new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve()))), 5000, 'a sendTo callback')
}

describe('sending across a fleet', () => {
  it('sendTo reaches a session on the other server and on this one, once', T, async (t) => {
    if (!needRedis(t)) return
    const { redis, r, A, B } = await fleet(t)
    const onA = await tallying(r, { host: HOST, port: A.port }, ['to'])
    const onB = await tallying(r, { host: HOST, port: B.port }, ['to'])
    await stored(redis, onA.sid)
    await stored(redis, onB.sid)
    await sent((cb) => B.server.sendTo(onA.sid, 'to', 'from B', { n: 1 }, cb))
    await sent((cb) => A.server.sendTo(onA.sid, 'to', 'from A', { n: 2 }, cb))
    await sent((cb) => A.server.sendTo(onB.sid, 'to', 'from A', { n: 3 }, cb))
    await waitUntil(() => onA.got.length === 2 && onB.got.length === 1, 5000, 'the sendTo events')
    await delay(100)
    assert.deepEqual(onA.got, [['to', 'from B', { n: 1 }], ['to', 'from A', { n: 2 }]])
    assert.deepEqual(onB.got, [['to', 'from A', { n: 3 }]])
  })

  it('sendTo an unknown session fails with ERR_UHURA_NO_SESSION', T, async (t) => {
    if (!needRedis(t)) return
    const { A } = await fleet(t)
    await assert.rejects(sent((cb) => A.server.sendTo('x'.repeat(24), 'to', 1, cb)), { code: 'ERR_UHURA_NO_SESSION' })
    assert.throws(() => A.server.sendTo('', 'to'), TypeError)
    assert.throws(() => A.server.sendTo('abc', 42), TypeError)
  })

  for (const back of ['A', 'B']) {
    it(`sendTo an offline session: its events wait and arrive when it resumes on server ${back}`, T, async (t) => {
      if (!needRedis(t)) return
      const { redis, r, A, B } = await fleet(t)
      const first = await tallying(r, { host: HOST, port: A.port }, ['off'])
      const { sid } = first
      await stored(redis, sid)
      const secret = first.client.resumeSecret
      await A.waitConnection(0)
      const gone = new Promise((resolve) => A.connections[0].conn.once('disconnect', resolve))
      first.client.disconnect()
      await withTimeout(gone, 5000, 'the session to go offline on A')
      for (let i = 0; i < 5; i++) {
        const from = i % 2 ? B : A
        await sent((cb) => from.server.sendTo(sid, 'off', i, cb))
      }
      const srv = back === 'A' ? A : B
      const again = r.createClient('ours', { host: HOST, port: srv.port, resumeSecret: secret })
      const got = []
      again.on('off', (i) => got.push(i))
      again.set('sessionID', sid)
      await waitHandshake('ours', again)
      assert.equal(again.get('sessionID'), sid, 'the session resumed')
      await waitUntil(() => got.length >= 5, 5000, 'the queued events')
      await delay(150)
      assert.deepEqual(got, [0, 1, 2, 3, 4])
      assert.deepEqual(first.got, [])
    })
  }

  it('sendTo while the session moves between servers: nothing lost, nothing twice', T, async (t) => {
    if (!needRedis(t)) return
    const { redis, r, A, B } = await fleet(t)
    const mover = await tallying(r, { servers: [{ host: HOST, port: A.port }, { host: HOST, port: B.port }] }, ['m'])
    mover.client.autoReconnect(10, 50)
    await A.waitConnection(0)
    await stored(redis, mover.sid)
    const total = 200
    const acks = []
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        // From both servers, so events come both from the session's server and from the other one.
        acks.push(sent((cb) => (i % 2 ? A : B).server.sendTo(mover.sid, 'm', i, cb)))
        if (i % 10 === 0) await delay(2)
      }
    })()
    await delay(60)
    // Server A goes away: the client moves to B in the middle of the stream.
    const closed = new Promise((resolve) => A.server.once('close', resolve))
    A.server.close()
    await waitUntil(async () => (await tryConnect(A.port)) !== null, 5000, "A's port to refuse connections")
    for (const { conn } of A.connections) conn.socket.destroy()
    await withTimeout(closed, 5000, 'server A to close')
    A.closed = true
    await sending
    await Promise.all(acks)
    await waitUntil(() => new Set(mover.got.map((e) => e[1])).size === total, 10000,
      () => `every event (${new Set(mover.got.map((e) => e[1])).size} of ${total})`)
    await delay(150)
    const counts = new Map()
    for (const [, i] of mover.got) counts.set(i, (counts.get(i) || 0) + 1)
    console.log(`sendTo while moving: ${total} sent, ${counts.size} delivered, ${[...counts.values()].filter((c) => c > 1).length} twice`)
    assert.equal(counts.size, total)
    assert.ok([...counts.values()].every((c) => c === 1), 'each once')
    assert.ok(B.connections.length >= 1, 'the session moved to B')
  })

  it('broadcast reaches every session connected to the fleet, once', T, async (t) => {
    if (!needRedis(t)) return
    const { r, A, B } = await fleet(t)
    const clients = []
    for (const srv of [A, B, A, B, A]) clients.push(await tallying(r, { host: HOST, port: srv.port }, ['all']))
    await sent((cb) => A.server.broadcast('all', 'first', cb))
    await sent((cb) => B.server.broadcast('all', 'second', cb))
    await waitUntil(() => clients.every((c) => c.got.length >= 2), 5000, 'the broadcasts')
    await delay(150)
    for (const c of clients) assert.deepEqual(c.got.map((e) => e[1]).sort(), ['first', 'second'])
  })

  it('a server the application dropped frees its fleet bus: its Redis subscription closes', T, async (t) => {
    if (!needRedis(t)) return
    const redis = await startRedis(t)
    const subscribers = async () => String(await redisCommand(redis.port, 'CLIENT', 'LIST', 'TYPE', 'pubsub')).split('\n').filter(Boolean).length
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc')
    let server = U.createServer({ store: U.redisStore({ url: redis.url }) })
    await new Promise((resolve) => server.listen(0, HOST, resolve))
    await waitUntil(async () => (await subscribers()) === 1, 5000, 'the fleet bus subscribed')
    await new Promise((resolve) => server.close(resolve))
    // Closed, it may listen again: it keeps its subscription while it lives.
    await delay(1500)
    assert.equal(await subscribers(), 1, 'a closed server still referenced keeps its bus')
    server = null
    await waitUntil(async () => {
      gc()
      return (await subscribers()) === 0
    }, 10000, 'the subscription closed once the server object was collected')
    // One that never listened, too.
    let idle = U.createServer({ store: U.redisStore({ url: redis.url }) })
    await waitUntil(async () => (await subscribers()) === 1, 5000, 'the second fleet bus subscribed')
    assert.equal(typeof idle.listen, 'function')
    idle = null
    await waitUntil(async () => {
      gc()
      return (await subscribers()) === 0
    }, 10000, 'the subscription of a server that never listened closed once it was collected')
  })

  it('without Redis: sendTo and broadcast reach the sessions of this server', T, async (t) => {
    const r = useResources(t)
    const S = await r.startServer('ours', {})
    const a = await tallying(r, { host: HOST, port: S.port }, ['to', 'all'])
    const b = await tallying(r, { host: HOST, port: S.port }, ['to', 'all'])
    await sent((cb) => S.server.sendTo(a.sid, 'to', 1, cb))
    await sent((cb) => S.server.broadcast('all', 2, cb))
    await assert.rejects(sent((cb) => S.server.sendTo('y'.repeat(24), 'to', 1, cb)), { code: 'ERR_UHURA_NO_SESSION' })
    await waitUntil(() => a.got.length === 2 && b.got.length === 1, 5000, 'the events')
    assert.deepEqual(a.got, [['to', 1], ['all', 2]])
    assert.deepEqual(b.got, [['all', 2]])
  })
})
