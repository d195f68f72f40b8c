'use strict'
// Fault injection against our delivery guarantees (see also
// delivery-exactly-once, delivery-restart and delivery-stalled-peers):
//
//   5. ackTimeout, sendWithAck, maxQueueLength drops, reconnecting events,
//      autoReconnect() right after createClient(), disconnect() in a backoff.
//
// Counts are reported with t.diagnostic (shown by `node --test`).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const {
  delay, waitFor, waitUntil, withTimeout, installExitWatchdog, freePort, useResources, spawnNode, DROPPED, RAW_HANDSHAKE, startServer, makeClient,
} = require('./helpers')

installExitWatchdog(20000)

const ACK_TIMEOUT = 'ERR_UHURA_ACK_TIMEOUT'

describe('delivery under faults', () => {
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
