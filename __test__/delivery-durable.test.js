'use strict'
// Durable sends (`durable: true`, `conn.sendDurable`): the two stages of a
// send's fate, and the promise behind "persisted": a server SIGKILLed at a
// random moment of a stream of durable sends, 20 times; every event it
// reported persisted reaches the client once, through the other server.
//
// Needs redis-server (see helpers/redis.js).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const {
  installExitWatchdog, HOST, freePort, useResources, waitUntil, waitHandshake, delay, needRedis, startRedis, spawnNode,
  redisCommand, errorsOf,
} = require('./helpers')

installExitWatchdog(15000)

const U = require('..')

const SENDER = path.join(__dirname, 'fixtures', 'durable-sender.js')
const ROUNDS = 20

describe('durable sends', () => {
  it('report persisted, then acked, to the callback (durable: true) and as two Promises (sendDurable)', { timeout: 20000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startRedis(t)
    const r = useResources(t)
    const stages = []
    let durable
    const srv = await r.startServer('ours', {
      options: { store: U.redisStore({ url: redis.url }), durable: true },
      onConnection: (conn) => {
        conn.send('cb', 1, (err, stage) => stages.push([err, stage]))
        durable = conn.sendDurable('promised', 2)
      },
    })
    const client = r.createClient('ours', { port: srv.port, host: HOST })
    const got = []
    client.on('cb', (n) => got.push(n))
    client.on('promised', (n) => got.push(n))
    await waitHandshake('ours', client)
    await waitUntil(() => stages.length === 2 && durable !== undefined, 5000, 'both stages of the send')
    assert.deepEqual(stages, [[null, 'persisted'], [null, 'acked']])
    await durable.persisted
    await durable.acked
    assert.deepEqual(got, [1, 2])
  })

  it('are not persisted while the session\'s save only waits in memory for Redis (the save queue)', { timeout: 30000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startRedis(t)
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { store: U.redisStore({ url: redis.url }) } })
    // Down before the session's first save: that save is queued.
    await redis.kill()
    const client = r.createClient('ours', { port: srv.port, host: HOST })
    const got = []
    client.on('n', (n) => got.push(n))
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    const sid = client.get('sessionID')
    await waitUntil(() => errorsOf(conn).some((e) => /queued/.test(e.message)), 8000, "an 'error' saying the save is queued")
    const during = conn.sendDurable('n', 1)
    during.acked.catch(() => {})
    await assert.rejects(during.persisted, { code: 'ESTORE' }, 'not persisted with Redis down')
    // Long enough for the queue's flusher to back off to its longest pause
    // (2 s): the next send's own write reaches Redis well before it retries.
    await delay(3500)
    // Back, and the queued save not landed yet: persisted only once it has.
    await redis.start()
    const after = conn.sendDurable('n', 2)
    await after.persisted
    assert.equal(await redisCommand(redis.port, 'EXISTS', `sess:${sid}`), 1, 'the session is in Redis when persisted is reported')
    await after.acked
    await waitUntil(() => got.includes(2), 5000, 'the event')
  })

  it('need a store that keeps delivery state', () => {
    assert.throws(() => U.createServer({ durable: true }), { name: 'TypeError', message: /redisStore/ })
  })

  it(`lose nothing a server reported persisted when it is SIGKILLed mid-stream (${ROUNDS} rounds)`, { timeout: 60000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startRedis(t)
    const r = useResources(t)
    // The server the clients fail over to; it sends nothing of its own.
    const B = await r.startServer('ours', { options: { store: U.redisStore({ url: redis.url }) } })
    const totals = { rounds: 0, persisted: 0, delivered: 0, lost: 0, dup: 0 }
    for (let round = 0; round < ROUNDS; round++) {
      const port = await freePort()
      const A = spawnNode(t, [SENDER, redis.url, String(port)], { name: `server A (round ${round})` })
      await A.waitOut(/LISTENING/)
      const client = r.createClient('ours', { servers: [{ host: HOST, port }, { host: HOST, port: B.port }] })
      client.autoReconnect(10, 50)
      const seen = new Map()
      client.on('n', (n) => seen.set(n, (seen.get(n) || 0) + 1))
      await waitHandshake('ours', client)
      await A.waitOut(/P \d+/)
      // A random moment of the stream: 0 to 250 ms after the first persisted.
      await delay(Math.floor(Math.random() * 250))
      await A.kill('SIGKILL')
      const persisted = A.lines().filter((l) => l.startsWith('P ')).map((l) => Number(l.slice(2)))
      await waitUntil(() => persisted.every((n) => seen.has(n)), 10000,
        `round ${round}: the client to get every persisted event through server B (missing: ${persisted.filter((n) => !seen.has(n)).slice(0, 10)})`)
      // Resends that would make duplicates come right behind.
      await delay(100)
      const lost = persisted.filter((n) => !seen.has(n)).length
      const dup = [...seen.values()].filter((c) => c > 1).length
      totals.rounds++
      totals.persisted += persisted.length
      totals.delivered += seen.size
      totals.lost += lost
      totals.dup += dup
      client.disconnect()
    }
    console.log(`durable SIGKILL test: ${totals.rounds} rounds, ${totals.persisted} events reported persisted, ` +
      `${totals.delivered} distinct events delivered (persisted or not), ${totals.lost} persisted events lost, ${totals.dup} duplicated`)
    assert.equal(totals.lost, 0)
    assert.equal(totals.dup, 0)
    assert.ok(totals.persisted > 0)
  })
})
