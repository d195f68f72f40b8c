'use strict'
// A reply sent from a listener and the ack of the event it answers leave in
// one write (src/engine/cork.rs): a raw peer in another process reads them
// in one chunk. Written one after the other, they would reach it as two
// segments and, with the peer awake and waiting, as two chunks.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { useResources, spawnNode, installExitWatchdog } = require('./helpers')

installExitWatchdog()

const T = { timeout: 30000 }
const PINGER = path.join(__dirname, 'fixtures', 'raw-pinger.js')
const TRIPS = 50

function result (p) {
  return JSON.parse(p.lines().find((l) => l.includes('"trips"')))
}

describe('corked writes: a reply and its ack leave together', () => {
  it('server: each pong and the ack of its ping arrive in one chunk', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours')
    srv.server.on('handshake', (conn) => conn.on('ping', (n) => conn.send('pong', n)))
    const p = spawnNode(t, [PINGER, 'client', String(srv.port), String(TRIPS)], { name: 'raw pinger' })
    await p.waitOut(/"trips"/, 20000)
    assert.deepEqual(result(p), { trips: TRIPS, together: TRIPS })
  })

  it('client: each reply to a server\'s ping and its ack arrive in one chunk', T, async (t) => {
    const r = useResources(t)
    const p = spawnNode(t, [PINGER, 'server', String(TRIPS)], { name: 'raw pinger' })
    await p.waitOut(/"port"/)
    const client = r.createClient('ours', JSON.parse(p.lines()[0]).port, '127.0.0.1')
    client.on('ping', (n) => client.send('pong', n))
    await p.waitOut(/"trips"/, 20000)
    assert.deepEqual(result(p), { trips: TRIPS, together: TRIPS })
  })
})
