'use strict'
// Fault injection against our delivery guarantees (ours x ours, and ours
// against raw sockets that misbehave):
//
//   1. exactly-once, in-order delivery in both directions while the server
//      drops the connection 50 times at random moments (1b: sends on a
//      disconnected server-side connection object while the session resumes);
//   2. at-least-once across a SIGKILLed and restarted server process (and,
//      with a shared Redis store, resumption of unacked server->client
//      events by the next server incarnation);
//   3. bounded memory against a peer that stops reading (maxQueueBytes);
//   4. half-open connections (peer SIGSTOPped) found by heartbeats;
//   5. ackTimeout, sendWithAck, maxQueueLength drops, reconnecting events,
//      autoReconnect() right after createClient(), disconnect() in a backoff.
//
// Counts are reported with t.diagnostic (shown by `node --test`).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const path = require('node:path')
const {
  HOST, CLIENT_HANDSHAKE, delay, waitFor, waitUntil, withTimeout, installExitWatchdog, freePort, useResources, needRedis, startRedis,
  spawnNode,
} = require('./helpers')

installExitWatchdog(20000)

const U = require('..')
const FIXTURES = path.join(__dirname, 'fixtures')
const DROPPED = 'ERR_UHURA_DROPPED'
const ACK_TIMEOUT = 'ERR_UHURA_ACK_TIMEOUT'
const RAW_HANDSHAKE = '[\n["_set","sessionID","AAAAAAAAAAAAAAAAAAAAAAAA"]\n,\n{"args":["connect",{"objectMode":true,"enableAcks":true}]}'

// ---------------------------------------------------------------- helpers

const immediate = () => new Promise((resolve) => setImmediate(resolve))

/** Starts one of our servers on HOST; closes it (and its connections) after the test. */
async function startServer (t, options, onConnection, port = 0) {
  const server = U.createServer(options || {}, onConnection)
  const conns = []
  server.on('handshake', (conn) => conns.push(conn))
  await withTimeout(new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, HOST, () => {
      server.removeListener('error', reject)
      resolve()
    })
  }), 5000, 'our server to listen')
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    for (const c of conns) {
      try { c.socket.destroy() } catch (_) {}
    }
    await withTimeout(new Promise((resolve) => server.close(() => resolve())), 10000, 'server.close()')
  }
  t.after(close)
  return { server, port: server.address().port, conns, close }
}

/** Creates one of our clients; disconnects it after the test. */
function makeClient (t, options) {
  const client = U.createClient(Object.assign({ host: HOST }, options))
  const errors = []
  client.on('error', (e) => errors.push(e))
  t.after(() => {
    try { client.disconnect() } catch (_) {}
    try { client.socket.destroy() } catch (_) {}
  })
  return { client, errors }
}

/** Spawns a fixture script; it is SIGKILLed (if still alive) after the test. */
function spawnFixture (t, name, cfg) {
  return spawnNode(t, [path.join(FIXTURES, name), JSON.stringify(cfg)], { name })
}

/**
 * Accounting of one stream of integers 0..n-1: how often each arrived, and
 * whether they arrived as exactly 0, 1, 2, ... (in order, once each).
 */
function makeTally (n) {
  const count = new Uint8Array(n)
  const tally = {
    n,
    count,
    received: 0,
    unique: 0,
    duplicates: 0,
    outOfOrder: 0,
    invalid: 0,
    firstViolation: null,
    on (i) {
      if (!Number.isInteger(i) || i < 0 || i >= n) {
        tally.invalid++
        if (tally.firstViolation === null) tally.firstViolation = `invalid value ${JSON.stringify(i)} at position ${tally.received}`
        tally.received++
        return
      }
      if (count[i] < 255) count[i]++
      if (count[i] > 1) tally.duplicates++
      else tally.unique++
      if (i !== tally.received && tally.firstViolation === null) {
        tally.firstViolation = `position ${tally.received}: got ${i}${count[i] > 1 ? ' (a duplicate)' : ''}`
      }
      if (i !== tally.received) tally.outOfOrder++
      tally.received++
    },
    lost () {
      let lost = 0
      for (let i = 0; i < n; i++) if (count[i] === 0) lost++
      return lost
    },
    firstLost () {
      for (let i = 0; i < n; i++) if (count[i] === 0) return i
      return -1
    },
    summary (sent) {
      return `sent ${sent}, received ${tally.received}, unique ${tally.unique}, duplicated ${tally.duplicates}, ` +
        `lost ${tally.lost()}, out of order ${tally.outOfOrder}, invalid ${tally.invalid}` +
        (tally.firstViolation ? ` (first violation: ${tally.firstViolation})` : '')
    },
  }
  return tally
}

/** Per-index accounting of ack callbacks. */
function makeCallbacks (n) {
  const calls = new Uint8Array(n)
  const cb = {
    calls,
    ok: 0,
    errors: [],
    extraCalls: 0,
    make (i) {
      return (err) => {
        if (calls[i] < 255) calls[i]++
        if (calls[i] > 1) cb.extraCalls++
        if (err) cb.errors.push({ i, err })
        else cb.ok++
      }
    },
    called () {
      let k = 0
      for (let i = 0; i < n; i++) if (calls[i] > 0) k++
      return k
    },
    summary (of = n) {
      const codes = {}
      for (const { err } of cb.errors) codes[err.code || err.message] = (codes[err.code || err.message] || 0) + 1
      return `callbacks: ${cb.called()} of ${of} called, ${cb.ok} ok, ${cb.errors.length} with an error ${JSON.stringify(codes)}, ${cb.extraCalls} extra calls`
    },
  }
  return cb
}

function rss () {
  return process.memoryUsage().rss
}

const MB = 1024 * 1024

// ----------------------------------------------------------------- tests

describe('delivery under faults', () => {
  it('1. 100,000 acked events each way, exactly once and in order, while the server drops the connection 50 times', { timeout: 120000 }, async (t) => {
    const N = 100000
    const DROPS = 50
    const WINDOW = 5000 // most events in flight per direction
    const BATCH = 500
    const SEND_DEADLINE_MS = 60000
    const SETTLE_MS = 15000

    let started = null
    const connTimes = new Map() // conn -> [connected at, disconnected at] (ms)
    const c2s = makeTally(N)
    const s2c = makeTally(N)
    const clientCbs = makeCallbacks(N)
    const serverCbs = makeCallbacks(N)
    const serverErrors = []
    let current = null
    let resumed = 0
    let freshSessions = 0
    const { server, conns } = await startServer(t, {}, (conn, reconnect) => {
      current = conn
      const times = [started === null ? 0 : Date.now() - started, null]
      connTimes.set(conn, times)
      conn.on('disconnect', () => { times[1] = Date.now() - started })
      if (reconnect === true) resumed++
      else freshSessions++
      conn.on('c2s', c2s.on)
      conn.on('error', (e) => serverErrors.push(e))
    })
    const { client, errors: clientErrors } = makeClient(t, { port: server.address().port })
    client.autoReconnect(5, 50)
    client.on('s2c', s2c.on)
    let clientConnects = 0
    let clientDisconnects = 0
    client.on('connect', () => clientConnects++)
    client.on('disconnect', () => clientDisconnects++)
    await waitUntil(() => current && current.ready && client.ready, 5000, 'the first connection')

    // Drops happen when the total progress (events handed to send, both
    // directions) passes one of 50 random points, 0-10 ms later, on the
    // connection that is current then.
    const thresholds = Array.from({ length: DROPS }, () => Math.floor((0.02 + 0.93 * Math.random()) * 2 * N)).sort((a, b) => a - b)
    let dropsDone = 0
    let dropPending = false
    let stopDropping = false
    let sendsOnOldConns = 0
    const s2cBatches = [] // where each server -> client batch was sent: for the report of a loss
    let c2sSent = 0
    let s2cSent = 0
    const doDrop = () => {
      if (stopDropping) return
      const conn = current
      if (conn && conn.ready && !conn.socket.destroyed) {
        conn.socket.destroy()
        dropsDone++
        dropPending = false
      } else {
        setTimeout(doDrop, 2) // not connected right now: drop the next connection
      }
    }
    const maybeDrop = () => {
      if (!dropPending && dropsDone < DROPS && c2sSent + s2cSent >= thresholds[dropsDone]) {
        dropPending = true
        setTimeout(doDrop, Math.floor(Math.random() * 11))
      }
    }
    t.after(() => { stopDropping = true })

    started = Date.now()
    const sendDeadline = started + SEND_DEADLINE_MS
    while ((c2sSent < N || s2cSent < N) && Date.now() < sendDeadline) {
      let progressed = false
      if (c2sSent < N && c2sSent - c2s.unique < WINDOW) {
        const end = Math.min(N, c2sSent + BATCH)
        for (let i = c2sSent; i < end; i++) client.send('c2s', i, clientCbs.make(i))
        c2sSent = end
        progressed = true
      }
      if (s2cSent < N && s2cSent - s2c.unique < WINDOW) {
        // The current connection object, or (one batch in four) any
        // earlier one of the session: both must reach the client.
        let conn = current
        if (conns.length > 1 && Math.random() < 0.25) {
          conn = conns[Math.floor(Math.random() * (conns.length - 1))]
          sendsOnOldConns++
        }
        s2cBatches.push({ start: s2cSent, conn: conns.indexOf(conn), of: conns.length, ready: conn.ready, t: Date.now() - started })
        const end = Math.min(N, s2cSent + BATCH)
        for (let i = s2cSent; i < end; i++) conn.send('s2c', i, serverCbs.make(i))
        s2cSent = end
        progressed = true
      }
      maybeDrop()
      if (progressed) await immediate()
      else await delay(1)
    }
    const sendMs = Date.now() - started
    const dropsDuringSends = dropsDone
    // Whatever drops are left happen now, while the last events are in flight.
    await waitUntil(() => { maybeDrop(); return dropsDone >= DROPS }, 20000, `${DROPS} drops (done: ${dropsDone})`).catch(() => {})
    stopDropping = true

    let settled = true
    await waitUntil(() => c2s.unique === N && s2c.unique === N && clientCbs.called() === N && serverCbs.called() === N,
      SETTLE_MS, 'everything delivered and acked').catch(() => { settled = false })
    const totalMs = Date.now() - started
    await delay(300) // late duplicates, if any, arrive now

    t.diagnostic(`drops: ${dropsDone} (${dropsDuringSends} while sending); server connections ${conns.length} (${resumed} resumed, ${freshSessions} new sessions); client connects ${clientConnects}, disconnects ${clientDisconnects}`)
    t.diagnostic(`client -> server: ${c2s.summary(c2sSent)}`)
    t.diagnostic(`server -> client: ${s2c.summary(s2cSent)}; batches sent on an earlier connection object: ${sendsOnOldConns}`)
    const lostBatches = s2cBatches.filter((b) => s2c.count[b.start] === 0)
    const kinds = {}
    for (const b of s2cBatches) {
      const k = `${b.conn === b.of - 1 ? 'current' : 'earlier'} conn, ${b.ready ? 'connected' : 'disconnected'}`
      kinds[k] = kinds[k] || { batches: 0, lost: 0 }
      kinds[k].batches++
      if (s2c.count[b.start] === 0) kinds[k].lost++
    }
    t.diagnostic(`server -> client batches by the connection object they were sent on: ${JSON.stringify(kinds)}`)
    if (lostBatches.length) {
      t.diagnostic(`server -> client batches lost (start index, conn # of conns then, conn ready then, ms): ${JSON.stringify(lostBatches.slice(0, 10))}; connection times: ${JSON.stringify(conns.map((c) => connTimes.get(c)))}`)
    }
    t.diagnostic(`client ${clientCbs.summary()}`)
    t.diagnostic(`server ${serverCbs.summary()}`)
    t.diagnostic(`send loop ${sendMs} ms, all settled after ${totalMs} ms${settled ? '' : ' (NOT settled: timed out)'}; client errors ${clientErrors.length}${clientErrors.length ? ` (first: ${clientErrors[0].code} ${clientErrors[0].message})` : ''}, server connection errors ${serverErrors.length}`)

    assert.equal(c2sSent, N, 'the send loop finished in time (client -> server)')
    assert.equal(s2cSent, N, 'the send loop finished in time (server -> client)')
    assert.equal(dropsDone, DROPS, `the server dropped the connection ${DROPS} times`)
    assert.equal(resumed, DROPS, 'every reconnection resumed the session')
    assert.deepEqual([c2s.lost(), c2s.duplicates, c2s.outOfOrder, c2s.invalid], [0, 0, 0, 0],
      `client -> server exactly once, in order [lost, duplicated, out of order, invalid]; first lost: ${c2s.firstLost()}; ${c2s.summary(c2sSent)}`)
    assert.deepEqual([s2c.lost(), s2c.duplicates, s2c.outOfOrder, s2c.invalid], [0, 0, 0, 0],
      `server -> client exactly once, in order [lost, duplicated, out of order, invalid]; first lost: ${s2c.firstLost()}; ${s2c.summary(s2cSent)}`)
    assert.equal(clientCbs.errors.length, 0, `no client ack callback gets an error: ${clientCbs.errors.slice(0, 3).map((e) => `#${e.i}: ${e.err.code} ${e.err.message}`).join('; ')}`)
    assert.equal(clientCbs.extraCalls, 0, 'no client ack callback runs twice')
    assert.equal(clientCbs.called(), N, `every client ack callback ran exactly once (${clientCbs.summary()})`)
    assert.equal(serverCbs.errors.length, 0, `no server ack callback gets an error: ${serverCbs.errors.slice(0, 3).map((e) => `#${e.i}: ${e.err.code} ${e.err.message}`).join('; ')}`)
    assert.equal(serverCbs.extraCalls, 0, 'no server ack callback runs twice')
    assert.equal(serverCbs.called(), N, `every server ack callback (including those of sends on earlier connection objects) ran exactly once (${serverCbs.summary()})`)
  })

  it('1b. sends on a disconnected server-side connection object while the session resumes all arrive (30 resumes)', { timeout: 60000 }, async (t) => {
    // Focused form of a loss seen in test 1: after conn's 'disconnect', the
    // server keeps sending on conn (5 events per setImmediate for 100 ms)
    // while the client reconnects and the session resumes on a new
    // connection. Every event must reach the client and every callback run.
    const ROUNDS = 30
    let current = null
    const { port } = await startServer(t, {}, (conn) => { current = conn })
    const { client } = makeClient(t, { port })
    client.autoReconnect(1, 2)
    const got = new Set()
    client.on('s2c', (i) => got.add(i))
    await waitUntil(() => current && current.ready && client.ready, 5000, 'the first connection')
    let next = 0
    let totalSent = 0
    let totalLost = 0
    let missingCallbacks = 0
    const bad = []
    for (let round = 0; round < ROUNDS; round++) {
      const conn = current
      await withTimeout(new Promise((resolve) => { conn.once('disconnect', resolve); conn.socket.destroy() }), 5000, 'the disconnect')
      const first = next
      let cbs = 0
      const until = Date.now() + 100
      while (Date.now() < until) {
        for (let k = 0; k < 5; k++) conn.send('s2c', next++, () => cbs++)
        await immediate()
      }
      const last = next
      await waitUntil(() => current !== conn && current.ready, 5000, 'the session to resume').catch(() => {})
      const t0 = Date.now()
      while (Date.now() - t0 < 1000) {
        let all = cbs === last - first
        for (let i = first; all && i < last; i++) if (!got.has(i)) all = false
        if (all) break
        await delay(5)
      }
      const lost = []
      for (let i = first; i < last; i++) if (!got.has(i)) lost.push(i - first)
      totalSent += last - first
      totalLost += lost.length
      missingCallbacks += last - first - cbs
      if (lost.length || cbs !== last - first) bad.push(`round ${round}: sent ${last - first}, lost ${lost.length}${lost.length ? ` (#${lost[0]}..#${lost[lost.length - 1]} of the round)` : ''}, callbacks missing ${last - first - cbs}`)
    }
    t.diagnostic(`${ROUNDS} resumes: sent ${totalSent}, lost ${totalLost}, callbacks missing ${missingCallbacks}; rounds with a loss: ${bad.length}${bad.length ? ` (${bad.slice(0, 6).join('; ')})` : ''}`)
    assert.equal(totalLost, 0, `events sent on the disconnected connection object were lost: ${bad.slice(0, 6).join('; ')}`)
    assert.equal(missingCallbacks, 0, 'every ack callback ran')
  })

  describe('2. server process SIGKILLed and restarted on the same port', () => {
    it('client -> server: nothing the client sent is lost (duplicates allowed, counted)', { timeout: 60000 }, async (t) => {
      const port = await freePort()
      const RATE_BATCH = 20 // events per 10 ms tick: ~2,000/s
      const incarnations = []
      const startIncarnation = async () => {
        // busyMs: the server's event loop is blocked 30 ms in every 50 ms
        // (CPU work), so events are often received but not yet handled when
        // the SIGKILL comes: their acks must not have been sent.
        const c = spawnFixture(t, 'delivery-server.js', { port, busyMs: 30 })
        incarnations.push(c)
        await c.waitOut(/^listening \d+$/m)
        return c
      }
      let srv = await startIncarnation()
      const { client, errors: clientErrors } = makeClient(t, { port })
      client.autoReconnect(20, 100)
      await waitFor(client, 'connect', 5000, { label: 'client (first connect)' })
      const cbs = makeCallbacks(100000)
      let sent = 0
      let stop = false
      const pump = (async () => {
        // eslint-disable-next-line no-unmodified-loop-condition -- `stop` is set by the test body below
        while (!stop && sent < 100000) {
          for (let k = 0; k < RATE_BATCH; k++, sent++) client.send('c2s', sent, cbs.make(sent))
          await delay(10)
        }
      })()
      await delay(1000)
      const atKill = { sent, acked: cbs.ok }
      await srv.kill('SIGKILL')
      await delay(300) // down for a while: sends queue up, reconnect attempts fail
      srv = await startIncarnation()
      await waitUntil(() => srv.lines().some((l) => l.startsWith('conn ')), 10000, 'the client to reach the restarted server')
      await delay(1000)
      stop = true
      await pump
      const total = sent
      let settled = true
      await waitUntil(() => cbs.ok === total, 15000, 'every event acked').catch(() => { settled = false })
      await delay(200)

      const tally = new Uint8Array(total)
      let received = 0
      let duplicates = 0
      const perIncarnation = incarnations.map((c) => {
        let k = 0
        for (const line of c.lines()) {
          const m = /^c (\d+)$/.exec(line)
          if (!m) continue
          const i = Number(m[1])
          k++
          received++
          if (i < total) {
            if (tally[i] > 0) duplicates++
            if (tally[i] < 255) tally[i]++
          }
        }
        return k
      })
      const lostList = []
      for (let i = 0; i < total; i++) if (tally[i] === 0) lostList.push(i)
      t.diagnostic(`sent ${total} (${atKill.sent} before the kill, ${atKill.acked} of them acked then), received ${received} (per incarnation: ${perIncarnation.join(' + ')}), duplicated ${duplicates}, lost ${lostList.length}${lostList.length ? ` (first: ${lostList.slice(0, 10).join(', ')})` : ''}`)
      t.diagnostic(`client ${cbs.summary(total)}${settled ? '' : ' (NOT all acked in time)'}; client errors: ${clientErrors.length}`)
      assert.equal(lostList.length, 0, `events the client sent were lost across the SIGKILL: ${lostList.slice(0, 20).join(', ')}` +
        (lostList.length ? `; of these, acked before the kill: ${lostList.filter((i) => cbs.calls[i] > 0 && i < atKill.sent).length}` : ''))
      assert.equal(cbs.errors.length, 0, 'no ack callback gets an error')
      assert.equal(cbs.ok, total, 'every event is acked in the end')
    })

    it('redis store: the next server incarnation resends the unacked server -> client events', { timeout: 60000 }, async (t) => {
      if (typeof U.redisStore !== 'function') return t.todo('require("uhura").redisStore does not exist yet')
      if (!needRedis(t)) return
      const { url } = await startRedis(t)

      // Is the Redis store implemented? (Today's placeholder throws in createServer.)
      try {
        const probe = U.createServer({ store: U.redisStore({ url }) })
        probe.close()
      } catch (e) {
        return t.todo(`the Redis store is not implemented yet: createServer({ store: redisStore() }) throws "${e.message}"`)
      }

      const N = 200
      const port = await freePort()
      // A proxy between client and server that can hold the server -> client
      // bytes: the client must not see (and ack) the events before the kill.
      const proxy = await holdingProxy(t, port)
      const a = spawnFixture(t, 'delivery-server.js', { port, redisUrl: url })
      await a.waitOut(/^listening \d+$/m)
      const { client, errors: clientErrors } = makeClient(t, { port: proxy.port })
      client.autoReconnect(20, 100)
      const tally = makeTally(N)
      client.on('s2c', tally.on)
      await waitFor(client, 'connect', 5000, { label: 'client (first connect)' })
      await a.waitOut(/^conn /m)
      const sid = client.get('sessionID')
      proxy.hold()
      // The server sends N events, then kills itself 100 ms later, before
      // the client has seen (or acked) any of them.
      a.command(`sendkill ${N} 100`)
      const died = await withTimeout(a.exited, 5000, 'the first server to SIGKILL itself')
      assert.equal(died.signal, 'SIGKILL')
      assert.match(a.out(), new RegExp(`^sent ${N}$`, 'm'))
      const heldBytes = proxy.release() // discards what it held and drops the pair
      assert.equal(tally.received, 0, 'the client saw none of the events before the kill')

      const b = spawnFixture(t, 'delivery-server.js', { port, redisUrl: url })
      await b.waitOut(/^listening \d+$/m)
      let done = true
      await waitUntil(() => tally.unique === N, 15000, `all ${N} s2c events at the client`).catch(() => { done = false })
      await delay(200)
      t.diagnostic(`redis: held ${heldBytes} bytes at the kill; session ${sid} -> ${client.get('sessionID')}; second incarnation: ${b.lines().filter((l) => l.startsWith('conn ')).join(', ')}`)
      t.diagnostic(`server -> client across the kill: ${tally.summary(N)}; client errors ${clientErrors.length}${done ? '' : ' (timed out)'}`)
      assert.match(b.out(), new RegExp(`^conn ${sid} 1$`, 'm'), 'the second server resumed the session from Redis')
      assert.equal(tally.lost(), 0, `server -> client events lost across the kill: first lost ${tally.firstLost()}; ${tally.summary(N)}`)
    })
  })

  describe('3. a peer that stops reading: memory stays bounded, the oldest events are dropped', () => {
    const EVENT = 10 * 1024
    const TOTAL = 200 * MB
    const COUNT = Math.ceil(TOTAL / EVENT)
    const BATCH = 64
    const MAX_QUEUE_BYTES = 4 * MB
    const payload = 'x'.repeat(EVENT - 32)
    const eventBytes = JSON.stringify(['big', 0, payload]).length

    async function floodEvents (t, sender, label) {
      const cbs = makeCallbacks(COUNT)
      let dropEvents = 0
      const dropErrors = []
      sender.on('drop', (err) => {
        dropEvents++
        if (!err || err.code !== DROPPED) dropErrors.push(err)
      })
      const start = rss()
      let peak = start
      const t0 = Date.now()
      for (let i = 0; i < COUNT; i += BATCH) {
        const end = Math.min(COUNT, i + BATCH)
        for (let k = i; k < end; k++) sender.send('big', k, payload, cbs.make(k))
        await immediate()
        peak = Math.max(peak, rss())
      }
      await delay(300)
      peak = Math.max(peak, rss())
      const ms = Date.now() - t0
      const pending = COUNT - cbs.called()
      const bound = Math.floor(MAX_QUEUE_BYTES / eventBytes) + 2
      const wrongCodes = cbs.errors.filter((e) => e.err.code !== DROPPED)
      t.diagnostic(`${label}: sent ${COUNT} events of ${eventBytes} bytes (${Math.round(COUNT * eventBytes / MB)} MB) in ${ms} ms; ` +
        `drop events ${dropEvents}; ${cbs.summary()}; still pending ${pending} (bound ${bound}); ` +
        `RSS start ${Math.round(start / MB)} MB, peak ${Math.round(peak / MB)} MB (+${Math.round((peak - start) / MB)} MB)`)
      assert.ok(peak - start < 150 * MB, `RSS grew by ${Math.round((peak - start) / MB)} MB (limit 150 MB)`)
      assert.ok(dropEvents > 0, 'drop events fired')
      assert.deepEqual(dropErrors, [], `every drop event carries an Error with code ${DROPPED}`)
      assert.ok(cbs.errors.length > 0, 'dropped events\' callbacks got an error')
      assert.deepEqual(wrongCodes.slice(0, 3).map((e) => e.err.code), [], `every failed callback has code ${DROPPED}`)
      assert.equal(cbs.ok, 0, 'the peer never acked, so no callback succeeds')
      assert.equal(cbs.extraCalls, 0, 'no callback runs twice')
      assert.equal(dropEvents, cbs.errors.length, 'one drop event per dropped callback')
      assert.ok(pending <= bound, `pending events stay within maxQueueBytes: ${pending} pending, at most ${bound} fit in ${MAX_QUEUE_BYTES} bytes`)
      // On overflow the oldest pending event is dropped: every dropped event
      // is older than every event still pending, i.e. the pending ones are
      // the newest, a run ending at the last one sent.
      const runs = []
      for (let i = 0; i < COUNT; i++) {
        if (cbs.calls[i] !== 0) continue
        if (runs.length && runs[runs.length - 1][1] === i - 1) runs[runs.length - 1][1] = i
        else runs.push([i, i])
      }
      const desc = JSON.stringify(runs.slice(0, 5)) + (runs.length > 5 ? ' ...' : '')
      t.diagnostic(`${label}: still-pending events (index runs): ${desc}`)
      assert.ok(runs.length === 1 && runs[0][1] === COUNT - 1,
        `the oldest pending events are dropped first, so the pending ones must be the newest (a run ending at #${COUNT - 1}); still pending: ${desc}`)
    }

    it('our client -> a raw server that handshakes and never reads again', { timeout: 120000 }, async (t) => {
      const raw = await useResources(t).rawServerAfterStart((s) => {
        s.write(RAW_HANDSHAKE)
        s.pause()
      })
      const { client } = makeClient(t, { port: raw.port, maxQueueBytes: MAX_QUEUE_BYTES })
      await waitFor(client, 'connect', 5000, { label: 'client' })
      await floodEvents(t, client, 'client -> non-reading raw server')
      await raw.close() // unblocks the client's writer before disconnect()
    })

    it('our server -> a raw client that handshakes and never reads', { timeout: 120000 }, async (t) => {
      let conn = null
      const { port } = await startServer(t, { maxQueueBytes: MAX_QUEUE_BYTES }, (c) => { conn = c })
      const sock = net.connect(port, HOST)
      sock.on('error', () => {})
      t.after(() => sock.destroy())
      // No 'data' listener: the socket stays paused and reads nothing once
      // its small internal buffer is full.
      sock.write(CLIENT_HANDSHAKE)
      await waitUntil(() => conn && conn.ready, 5000, 'the server-side connection')
      await floodEvents(t, conn, 'server -> non-reading raw client')
      sock.destroy()
    })
  })

  describe('4. half-open peers (SIGSTOP) are found by heartbeats', () => {
    const HB = { heartbeatInterval: 200, heartbeatTimeout: 1000 }

    /** Waits (up to 10 s, to measure) for the heartbeat 'error' and the 'disconnect'. */
    async function detection (emitter, since) {
      let err = null
      let errorMs = null
      let disconnectMs = null
      const onError = (e) => {
        if (err === null && /heartbeat timeout/.test(e && e.message)) {
          err = e
          errorMs = Date.now() - since
        }
      }
      const onDisconnect = () => {
        if (disconnectMs === null) disconnectMs = Date.now() - since
      }
      emitter.on('error', onError)
      emitter.on('disconnect', onDisconnect)
      await waitUntil(() => err !== null && disconnectMs !== null, 10000, 'heartbeat error and disconnect').catch(() => {})
      emitter.removeListener('error', onError)
      emitter.removeListener('disconnect', onDisconnect)
      return { err, errorMs, disconnectMs }
    }

    it('server process stopped: the client errors with "heartbeat timeout", disconnects, and reconnects after SIGCONT', { timeout: 30000 }, async (t) => {
      const srv = spawnFixture(t, 'delivery-server.js', { port: 0, options: HB })
      await srv.waitOut(/^listening \d+$/m)
      const port = Number(/^listening (\d+)$/m.exec(srv.out())[1])
      const { client, errors } = makeClient(t, Object.assign({ port }, HB))
      client.autoReconnect(50, 200)
      await waitFor(client, 'connect', 5000, { label: 'client' })
      await delay(500) // heartbeats flow both ways; nothing must time out while healthy
      assert.deepEqual(errors.map((e) => e.message), [], 'no error while the server is healthy')

      const stoppedAt = Date.now()
      srv.child.kill('SIGSTOP')
      t.after(() => { try { srv.child.kill('SIGCONT') } catch (_) {} })
      const { err, errorMs, disconnectMs } = await detection(client, stoppedAt)
      t.diagnostic(`client: 'error' ${errorMs} ms after the SIGSTOP (${err && err.message}), 'disconnect' after ${disconnectMs} ms`)

      // Still stopped: reconnect attempts reach the kernel's accept queue, but
      // no handshake can complete. Observe what the client reports meanwhile.
      const extra = []
      const onErr = (e) => extra.push(e.message)
      client.on('error', onErr)
      await delay(1500)
      client.removeListener('error', onErr)
      t.diagnostic(`while the server stays stopped 1.5 s more, the client reports: ${JSON.stringify(extra.slice(0, 5))}`)

      const contAt = Date.now()
      const reconnected = waitFor(client, 'connect', 10000, { label: 'client (reconnect after SIGCONT)' })
      srv.child.kill('SIGCONT')
      let reconnectMs = null
      await reconnected.then(() => { reconnectMs = Date.now() - contAt }, () => {})
      t.diagnostic(`client reconnected ${reconnectMs} ms after the SIGCONT`)
      await srv.kill('SIGKILL')

      assert.ok(err, 'the client emits an error containing "heartbeat timeout" (none within 10 s)')
      assert.ok(errorMs <= 3000, `the heartbeat timeout error comes within 3 s of the SIGSTOP (after ${errorMs} ms)`)
      assert.ok(disconnectMs !== null && disconnectMs <= 3000, `'disconnect' comes within 3 s of the SIGSTOP (after ${disconnectMs} ms)`)
      assert.ok(reconnectMs !== null, 'the auto-reconnecting client completes a new handshake once the server runs again')
    })

    it('client process stopped: the server-side connection errors with "heartbeat timeout" and disconnects', { timeout: 30000 }, async (t) => {
      let conn = null
      const { port } = await startServer(t, HB, (c) => { conn = c })
      const cl = spawnFixture(t, 'delivery-client.js', { port, options: HB })
      await cl.waitOut(/^connected /m)
      await waitUntil(() => conn && conn.ready, 5000, 'the server-side connection')
      const errors = []
      conn.on('error', (e) => errors.push(e))
      await delay(500)
      assert.deepEqual(errors.map((e) => e.message), [], 'no error while the client is healthy')

      const stoppedAt = Date.now()
      cl.child.kill('SIGSTOP')
      const { err, errorMs, disconnectMs } = await detection(conn, stoppedAt)
      t.diagnostic(`server connection: 'error' ${errorMs} ms after the SIGSTOP (${err && err.message}), 'disconnect' after ${disconnectMs} ms`)
      assert.ok(err, 'the server-side connection emits an error containing "heartbeat timeout" (none within 10 s)')
      assert.ok(errorMs <= 3000, `the heartbeat timeout error comes within 3 s of the SIGSTOP (after ${errorMs} ms)`)
      assert.ok(disconnectMs !== null && disconnectMs <= 3000, `'disconnect' comes within 3 s of the SIGSTOP (after ${disconnectMs} ms)`)
      await cl.kill('SIGKILL')
    })
  })

  describe('5. ack timeouts, sendWithAck, maxQueueLength, reconnecting', () => {
    it('ackTimeout: a raw server that never acks -> cb(err) with ERR_UHURA_ACK_TIMEOUT; the event stays queued and is resent after a reconnect', { timeout: 20000 }, async (t) => {
      const raw = await useResources(t).rawServerAfterStart((s) => s.write(RAW_HANDSHAKE))
      const conns = raw.peers
      const { client } = makeClient(t, { port: raw.port, ackTimeout: 300 })
      client.autoReconnect(20, 100)
      await waitFor(client, 'connect', 5000, { label: 'client' })
      const calls = []
      const sentAt = Date.now()
      client.send('needsAck', 7, (err) => calls.push({ err, ms: Date.now() - sentAt }))
      await waitUntil(() => calls.length > 0, 3000, 'the ack callback')
      const { err, ms } = calls[0]
      t.diagnostic(`ack callback after ${ms} ms: ${err && err.code} ${err && err.message}`)
      assert.ok(err instanceof Error, 'the callback gets an Error')
      assert.equal(err.code, ACK_TIMEOUT)
      assert.ok(ms >= 250 && ms < 2000, `called about ackTimeout (300 ms) after send, got ${ms} ms`)
      const first = conns[0].frames().find((f) => f && f.args && f.args[0] === 'needsAck')
      assert.ok(first && typeof first.id === 'string', 'the event went out with an id')

      // The event is still pending: after a drop it is sent again.
      conns[0].socket.destroy()
      await waitUntil(() => conns.length >= 2 && conns[1].frames().some((f) => f && f.args && f.args[0] === 'needsAck'), 5000, 'the event resent on the next connection')
      const again = conns[1].frames().find((f) => f && f.args && f.args[0] === 'needsAck')
      assert.deepEqual(again, first, 'resent with the same id and arguments')
      conns[1].socket.write(`\n,\n{"args":["ack::${again.id}"]}`)
      await delay(300)
      assert.equal(calls.length, 1, 'the callback ran once only (released at the timeout)')
    })

    it('sendWithAck resolves against our server and rejects with ERR_UHURA_DROPPED on a drop', { timeout: 20000 }, async (t) => {
      const got = []
      const { port } = await startServer(t, {}, (conn) => conn.on('hello', (x) => got.push(x)))
      const { client } = makeClient(t, { port })
      await waitFor(client, 'connect', 5000, { label: 'client' })
      const r = await withTimeout(client.sendWithAck('hello', 'world'), 5000, 'sendWithAck to resolve')
      assert.equal(r, undefined)
      assert.deepEqual(got, ['world'])

      const dead = await freePort()
      const { client: c2 } = makeClient(t, { port: dead, maxQueueLength: 1 })
      c2.autoReconnect(50, 100)
      const p1 = c2.sendWithAck('a', 1)
      const p2 = c2.sendWithAck('b', 2)
      p2.catch(() => {})
      await assert.rejects(withTimeout(p1, 5000, 'sendWithAck to reject'), (err) => err instanceof Error && err.code === DROPPED)
    })

    it('maxQueueLength: 3 on a client that cannot connect drops the oldest (drop events); the newest 3 arrive once a server appears', { timeout: 20000 }, async (t) => {
      const port = await freePort()
      const { client } = makeClient(t, { port, maxQueueLength: 3 })
      client.autoReconnect(20, 100)
      const drops = []
      client.on('drop', (err) => drops.push(err))
      const calls = []
      for (let i = 0; i < 10; i++) client.send('q', i, (err) => calls.push({ i, code: err ? err.code : 'ok' }))
      await waitUntil(() => calls.length >= 7, 3000, '7 dropped callbacks')
      await delay(200)
      t.diagnostic(`callbacks: ${JSON.stringify(calls)}; drop events ${drops.length}`)
      assert.deepEqual(calls, [0, 1, 2, 3, 4, 5, 6].map((i) => ({ i, code: DROPPED })), 'the 7 oldest are dropped, oldest first')
      assert.equal(drops.length, 7, 'one drop event per dropped event')
      assert.ok(drops.every((e) => e instanceof Error && e.code === DROPPED))

      const got = []
      await startServer(t, {}, (conn) => conn.on('q', (i) => got.push(i)), port)
      await waitUntil(() => calls.length >= 10, 5000, 'the 3 queued events to be acked')
      await delay(100)
      assert.deepEqual(got, [7, 8, 9], 'the server gets exactly the newest 3, in order')
      assert.deepEqual(calls.slice(7), [7, 8, 9].map((i) => ({ i, code: 'ok' })))
    })

    it('reconnecting events: increasing attempt numbers, delays within [0, max]', { timeout: 20000 }, async (t) => {
      const port = await freePort()
      const MIN = 20
      const MAX = 100
      const { client } = makeClient(t, { port })
      client.autoReconnect(MIN, MAX)
      const events = []
      client.on('reconnecting', (info) => events.push({ ...info, at: Date.now() }))
      await delay(1500)
      const list = events.map((e) => `${e.attempt}:${Math.round(e.delay)}`)
      t.diagnostic(`${events.length} reconnecting events (attempt:delay ms): ${list.join(' ')}`)
      assert.ok(events.length >= 5, `several reconnecting events in 1.5 s, got ${events.length}`)
      for (let k = 0; k < events.length; k++) {
        const e = events[k]
        assert.ok(Number.isInteger(e.attempt) && e.attempt >= 1, `attempt is a positive integer: ${JSON.stringify(e)}`)
        assert.ok(typeof e.delay === 'number' && e.delay >= 0 && e.delay <= MAX, `delay within [0, ${MAX}]: ${JSON.stringify(e)}`)
        if (k > 0) assert.ok(e.attempt > events[k - 1].attempt, `attempt numbers increase: ${list.join(' ')}`)
      }
    })

    it('autoReconnect() right after createClient() applies even when the first attempt fails at once (20 clients)', { timeout: 20000 }, async (t) => {
      const port = await freePort()
      const counts = []
      for (let k = 0; k < 20; k++) {
        const { client } = makeClient(t, { port })
        client.autoReconnect(10, 50)
        let n = 0
        client.on('reconnecting', () => n++)
        counts.push(() => n)
      }
      await delay(600)
      const got = counts.map((f) => f())
      t.diagnostic(`reconnecting events per client in 600 ms: ${got.join(' ')}`)
      assert.deepEqual(got.map((n) => n > 0), got.map(() => true), `every client keeps reconnecting: ${got.join(' ')}`)
    })

    it('disconnect() during the backoff wait lets the process exit', { timeout: 20000 }, async (t) => {
      const port = await freePort()
      const code = `
        const U = require(${JSON.stringify(path.join(__dirname, '..'))})
        const c = U.createClient({ host: '127.0.0.1', port: ${port} })
        c.autoReconnect(200, 400)
        c.on('error', () => {})
        let n = 0
        c.on('reconnecting', () => { if (++n === 2) { console.log('disconnect'); c.disconnect() } })
      `
      const c = spawnNode(t, ['-e', code], { stdio: ['ignore', 'pipe', 'pipe'] })
      let res
      try {
        res = await withTimeout(c.exited, 8000, 'the child to exit after disconnect()')
      } catch (e) {
        c.child.kill('SIGKILL')
        throw new Error(`the process did not exit within 8 s of client.disconnect() during a backoff wait (stdout: ${JSON.stringify(c.out())})`)
      }
      assert.match(c.out(), /disconnect/, 'the child reached disconnect()')
      assert.deepEqual(res, { code: 0, signal: null })
    })
  })
})

// ------------------------------------------------------- more helpers

/**
 * A TCP proxy to 127.0.0.1:target. hold() makes the current pair keep what
 * the server sends instead of forwarding it; release() discards that, drops
 * the pair and goes back to forwarding (for the next pairs). Returns the
 * number of bytes it held.
 */
async function holdingProxy (t, target) {
  const pairs = new Set()
  let holding = null
  const server = net.createServer((down) => {
    const up = net.connect(target, '127.0.0.1')
    const pair = { down, up, held: 0, hold: false }
    pairs.add(pair)
    const end = () => {
      pairs.delete(pair)
      down.destroy()
      up.destroy()
    }
    down.on('error', end)
    up.on('error', end)
    down.on('close', end)
    up.on('close', end)
    down.on('data', (d) => up.write(d))
    up.on('data', (d) => {
      if (pair.hold) pair.held += d.length
      else down.write(d)
    })
  })
  await new Promise((resolve) => server.listen(0, HOST, resolve))
  t.after(() => withTimeout(new Promise((resolve) => {
    for (const p of pairs) { p.down.destroy(); p.up.destroy() }
    server.close(() => resolve())
  }), 5000, 'proxy close'))
  return {
    port: server.address().port,
    hold () {
      for (const p of pairs) {
        p.hold = true
        holding = p
      }
    },
    release () {
      const held = holding ? holding.held : 0
      for (const p of pairs) { p.down.destroy(); p.up.destroy() }
      pairs.clear()
      holding = null
      return held
    },
  }
}
