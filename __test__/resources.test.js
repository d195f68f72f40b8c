'use strict'
// What a remote peer can make a server hold: memory bounds under hostile or
// simply eager peers.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { HOST, ROOT, useResources, waitUntil, installExitWatchdog } = require('./helpers')

installExitWatchdog()

const MB = 1024 * 1024
// A 0.1.2 client's handshake, as raw bytes.
const HANDSHAKE = '[\n["_set",{}]\n,\n["start",{"objectMode":true,"enableAcks":true}]'

describe('delivery to JavaScript stays bounded', () => {
  it('300 connections sending 256 KiB at once never make a batch much over the 8 MiB bound (reads on Node\'s loop)', { timeout: 60000 }, async (t) => {
    const native = require(path.join(ROOT, 'uhura.node'))
    const take = native.takeEvents
    let largest = 0
    native.takeEvents = function () {
      const batch = take.apply(this, arguments)
      if (batch != null && batch.length > largest) largest = batch.length
      return batch
    }
    t.after(() => { native.takeEvents = take })

    const r = useResources(t)
    let received = 0
    const srv = await r.startServer('ours', { onConnection: (conn) => conn.on('e', () => { received++ }) })
    const CONNS = 300
    const PER_CONN = 256
    const payload = 'x'.repeat(1000)
    const burst = Buffer.from(Array.from({ length: PER_CONN }, () => `\n,\n{"args":["e","${payload}"]}`).join(''))
    const socks = []
    for (let i = 0; i < CONNS; i++) {
      const raw = r.rawConnect(srv.port, HOST)
      socks.push(raw)
    }
    await Promise.all(socks.map((s) => s.connected()))
    for (const s of socks) s.socket.write(HANDSHAKE)
    await srv.waitConnection(CONNS - 1, 20000)
    // All at once: one write per socket within one tick.
    for (const s of socks) s.socket.write(burst)
    await waitUntil(() => received === CONNS * PER_CONN, 30000, `all ${CONNS * PER_CONN} events (got ${received})`)
    t.diagnostic(`largest batch: ${(largest / MB).toFixed(1)} MB`)
    assert.ok(largest < 12 * MB, `a batch of ${(largest / MB).toFixed(1)} MB crossed into JavaScript; the bound is 8 MiB plus one read`)
  })
})
