'use strict'
// The busy poll of Node's loop (src/node/busy_poll.rs), on by default: after
// a tight ping-pong its window is open, yet once the traffic stops the
// process must go back to sleep, not spin. The adaptive decisions themselves
// are unit-tested in busy_poll.rs.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { useResources, spawnNode, installExitWatchdog, waitUntil } = require('./helpers')

installExitWatchdog()

const T = { timeout: 30000 }
const PINGER = path.join(__dirname, 'fixtures', 'raw-pinger.js')

describe('busy poll of Node\'s loop', () => {
  it('an idle process with a connected client uses almost no CPU after a ping-pong', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours')
    let pings = 0
    srv.server.on('handshake', (conn) => conn.on('ping', (n) => { pings++; conn.send('pong', n) }))
    // A raw client in another process: 300 round trips, then it stays
    // connected and sends nothing.
    const p = spawnNode(t, [PINGER, 'client', String(srv.port), '300', 'stay'], { name: 'raw pinger' })
    await p.waitOut(/"trips"/, 20000)
    assert.equal(pings, 300)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const before = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const used = process.cpuUsage(before)
    const wallMs = Number(process.hrtime.bigint() - t0) / 1e6
    const cpuMs = (used.user + used.system) / 1000
    // A spin that went on while idle would use about the whole second.
    assert.ok(cpuMs < 0.1 * wallMs, `${cpuMs.toFixed(1)} ms of CPU in ${wallMs.toFixed(0)} ms idle`)
    assert.ok(p.alive(), 'the client is still connected')
    t.diagnostic(`${cpuMs.toFixed(1)} ms of CPU in ${wallMs.toFixed(0)} ms idle`)
  })

  it('timers still run while a ping-pong keeps the spin catching replies', T, async (t) => {
    // Input the spin catches on the socket just read is read in the same
    // libuv callback (src/node/uv.rs), for at most IN_CALLBACK_FOR (1 ms):
    // without that bound a steady ping-pong would hold the loop, and a
    // timer would wait until the peer once answered too late.
    const r = useResources(t)
    const srv = await r.startServer('ours')
    // Fewer than the 8,192 sends the server keeps unacknowledged: the raw
    // pinger never acks its pongs.
    const trips = 6000
    let pings = 0
    let last = 0
    let longest = 0
    const tick = setInterval(() => {
      const now = performance.now()
      if (pings > 0 && pings < trips && last > 0) longest = Math.max(longest, now - last)
      last = now
    }, 1)
    t.after(() => clearInterval(tick))
    srv.server.on('handshake', (conn) => conn.on('ping', (n) => { pings++; conn.send('pong', n) }))
    const p = spawnNode(t, [PINGER, 'client', String(srv.port), String(trips)], { name: 'raw pinger' })
    await p.waitOut(/"trips"/, 25000)
    assert.equal(pings, trips)
    assert.ok(longest < 15, `a 1 ms interval waited ${longest.toFixed(1)} ms during the ping-pong`)
    t.diagnostic(`longest wait of a 1 ms interval: ${longest.toFixed(1)} ms`)
  })

  it('a connection closed by its listener while the spin catches its pings ends cleanly, and the server goes on', T, async (t) => {
    // The close, asked for inside the batch, leaves on_readable's loop
    // (src/node/uv.rs) with a handle that is stopped, or closed and not yet
    // freed: the loop must see that and return, not read it or crash.
    const r = useResources(t)
    const srv = await r.startServer('ours')
    let pings = 0
    let disconnected = false
    srv.server.on('handshake', (conn) => {
      conn.on('ping', (n) => {
        pings++
        if (n === 300) conn.disconnect()
        else conn.send('pong', n)
      })
      conn.on('disconnect', () => { disconnected = true })
    })
    const p = spawnNode(t, [PINGER, 'client', String(srv.port), '6000'], { name: 'raw pinger' })
    await waitUntil(() => disconnected, 10000, 'the server-side connection to close')
    assert.equal(pings, 300)
    // The server closed the pinger's socket: it exits.
    await p.exited
    // The server still serves: a client of ours gets its ack.
    const client = await r.connectClient('ours', srv.port)
    const err = await new Promise((resolve) => client.send('hello', 1, resolve))
    assert.equal(err ?? null, null)
  })
})
