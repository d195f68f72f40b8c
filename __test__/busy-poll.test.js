'use strict'
// The busy poll of Node's loop (src/node/busy_poll.rs), on by default: after
// a tight ping-pong its window is open, yet once the traffic stops the
// process must go back to sleep, not spin. The adaptive decisions themselves
// are unit-tested in busy_poll.rs.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { useResources, spawnNode, installExitWatchdog } = require('./helpers')

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
})
