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

  it('fail both stages on a connection gone for good', { timeout: 30000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startRedis(t)
    const r = useResources(t)
    let conn = null
    const srv = await r.startServer('ours', {
      options: { store: U.redisStore({ url: redis.url }), durable: true, resumeWindow: 50 },
      onConnection: (c) => { conn = c },
    })
    const client = r.createClient('ours', { port: srv.port, host: HOST })
    await waitHandshake('ours', client)
    await waitUntil(() => conn !== null, 5000, 'the connection')
    const errors = []
    conn.on('error', (err) => errors.push(err))
    client.disconnect()
    // Past the resume window: the connection will not come back.
    await delay(400)
    const heard = []
    conn.send('x', 1, (err, stage) => heard.push([err && err.code, stage]))
    await waitUntil(() => heard.length === 2, 5000, 'both stages')
    assert.deepEqual(heard, [['ERR_UHURA_CLOSED', 'persisted'], ['ERR_UHURA_CLOSED', 'acked']])
    assert.equal(conn._acks.size, 0)
    await delay(100)
    assert.deepEqual(errors, [], 'a send with a callback is reported there only')
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

  it('mixed in one tick with acked sends: every callback once, and the events in order (A lines after d lines)', { timeout: 30000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startRedis(t)
    const r = useResources(t)
    // What crosses to Rust (lib/outbox.js, src/engine/lines.rs): an
    // acked send right after a durable one, in the same write, leaves its
    // number implicit ('A'), and Rust gives it the d line's number + 1.
    // Recorded to check that this test writes such lines at all.
    const { native } = require('../lib/native')
    const write = native.write
    const writes = []
    native.write = (h, buf, start, end) => { writes.push({ h, text: buf.toString('utf8', start, end) }); return write(h, buf, start, end) }
    t.after(() => { native.write = write })
    // D: sendDurable, N: send with a callback. Runs of acked sends after a
    // durable one (3, 1, 7), durable ones back to back (2, 3), and a durable
    // one after an acked one; repeated. The outbox's early flushes (after 64
    // lines, then 128, as lib/native.js has it now) split the tick into
    // writes of 64, 128 and 8 lines: the second starts with an acked send
    // (explicit, 'a'), the third with a durable one.
    const PATTERN = 'DNNNDDNDDDNNNNNNN'
    const COUNT = 200
    const expected = []
    const normal = [] // the numbers of the acked sends, in order
    const calls = new Map() // number -> what each call of its callback got: 'ok', or the error
    const durable = [] // { n, stages: { persisted, acked } }
    const stageLog = [] // [n, 'persisted' | 'acked'], as the promises settle
    const srv = await r.startServer('ours', {
      // `durable: false`: send(..., cb) stays a plain acked send ('a'/'A').
      options: { store: U.redisStore({ url: redis.url }), durable: false },
      onConnection: (conn) => {
        // One synchronous loop: one tick, so a few writes of many lines each.
        for (let n = 0; n < COUNT; n++) {
          // Some with a second argument: the sends' other ways to their line.
          const args = n % 3 === 0 ? [n, { n, s: `#${n}` }] : [n]
          if (PATTERN[n % PATTERN.length] === 'D') {
            expected.push(['x', ...args])
            const stages = conn.sendDurable('x', ...args)
            durable.push({ n, stages })
            stages.persisted.then(() => stageLog.push([n, 'persisted']), (e) => stageLog.push([n, `persisted: ${e.message}`]))
            stages.acked.then(() => stageLog.push([n, 'acked']), (e) => stageLog.push([n, `acked: ${e.message}`]))
          } else {
            expected.push(['y', ...args])
            normal.push(n)
            calls.set(n, [])
            conn.send('y', ...args, (err) => calls.get(n).push(err == null ? 'ok' : err))
          }
        }
      },
    })
    const client = r.createClient('ours', { port: srv.port, host: HOST })
    const got = []
    client.on('x', (...args) => got.push(['x', ...args]))
    client.on('y', (...args) => got.push(['y', ...args]))
    await waitHandshake('ours', client)
    const done = () => got.length >= COUNT && [...calls.values()].every((c) => c.length > 0) && stageLog.length >= 2 * durable.length
    // Not thrown on: the assertions below say what is missing.
    await waitUntil(done, 10000, 'every event, callback and stage').catch(() => {})
    // Room for a duplicate event or a second call of a callback.
    await delay(200)
    assert.deepEqual(got, expected, 'every event once, in the order sent, with its arguments')
    // The acked sends' callbacks are what a numbering error shows in: an A
    // numbered one too high (d's + 2) takes the next durable send's number,
    // whose acked stage then still resolves (early, on the wrong ack), while
    // the callback whose number was skipped is never called.
    const wrongCalls = normal.filter((n) => calls.get(n).length !== 1 || calls.get(n)[0] !== 'ok')
      .map((n) => `send ${n}: ${calls.get(n).length ? calls.get(n).join(', ') : 'never called'}`)
    assert.deepEqual(wrongCalls, [], 'every callback of a send once, without an error')
    const wrongStages = durable.map(({ n }) => `sendDurable ${n}: ${stageLog.filter(([m]) => m === n).map(([, stage]) => stage).join(', ')}`)
      .filter((s) => !s.endsWith(': persisted, acked'))
    assert.deepEqual(wrongStages, [], 'both stages of every sendDurable, resolved, persisted first')
    const { conn } = srv.connections[0]
    assert.equal(conn._acks.size, 0, 'no callback left waiting')
    r.assertNoErrors()
    // The A lines this was about: in the server connection's writes, an A
    // whose numbered line before it (same write) is a d line.
    let afterDurable = 0
    let implicit = 0
    let explicit = 0
    for (const { h, text } of writes) {
      if (h !== conn._h) continue
      let lastNumbered = null
      for (const line of text.split('\n')) {
        const tag = line[0]
        if (tag === 'A') {
          implicit++
          if (lastNumbered === 'd') afterDurable++
        }
        if (tag === 'a') explicit++
        if (tag === 'a' || tag === 'A' || tag === 'd') lastNumbered = tag
      }
    }
    t.diagnostic(`${writes.filter(({ h }) => h === conn._h).length} writes, ${explicit} a lines, ${implicit} A lines, ${afterDurable} of them right after a d line`)
    assert.ok(implicit >= 80, `most acked sends numbered implicitly (${implicit} A lines)`)
    assert.ok(afterDurable >= 20, `A lines right after d lines (${afterDurable})`)
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
