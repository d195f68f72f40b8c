'use strict'
// Fault injection against our delivery guarantees, against peers that stop
// (see also delivery-exactly-once, delivery-restart and delivery-acks):
//
//   3. bounded memory against a peer that stops reading (maxQueueBytes);
//   4. half-open connections (peer SIGSTOPped) found by heartbeats.
//
// Counts are reported with t.diagnostic (shown by `node --test`).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const {
  HOST, CLIENT_HANDSHAKE, delay, waitFor, waitUntil, installExitWatchdog, useResources, DROPPED, RAW_HANDSHAKE, immediate, startServer, makeClient, spawnFixture, makeCallbacks,
} = require('./helpers')

installExitWatchdog(20000)

function rss () {
  return process.memoryUsage().rss
}

const MB = 1024 * 1024

describe('delivery under faults', () => {
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
})
