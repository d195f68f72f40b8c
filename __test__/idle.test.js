'use strict'
// What an idle connection does without (issue 12, memory): no writer task
// (one is started when a write would block, and ends once it has written
// everything), no read buffer while Node's loop reads the socket, and no
// socket-like object until someone asks for it. Each test checks that what
// was left out comes back when needed.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const { HOST, useResources, waitFor, withTimeout, delay, installExitWatchdog, pingPong, roundTrip } = require('./helpers')

installExitWatchdog()

const T = { timeout: 60000 }
// Far more than a socket buffer takes at once: the direct write blocks, a
// writer task must finish it, and the reader's buffer must grow.
const BIG = 'x'.repeat(8 * 1024 * 1024)
// Megabytes through a debug build on a loaded machine take seconds.
const WAIT = 20000

/** A send with an ack callback: resolves once it is called without error. */
function sendAcked (emitter, event, ...args) {
  return withTimeout(new Promise((resolve, reject) => {
    emitter.send(event, ...args, (err) => (err ? reject(err) : resolve()))
  }), WAIT, `ack of '${event}'`)
}

describe('ours: idle connections', () => {
  it('a connection idle for a while then takes large events both ways, twice', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: pingPong })
    const client = await r.connectClient('ours', srv.port)
    const { conn } = await srv.waitConnection(0)
    for (let round = 0; round < 2; round++) {
      await delay(300)
      const toServer = waitFor(conn, 'big', WAIT)
      const toClient = waitFor(client, 'big', WAIT)
      await Promise.all([sendAcked(client, 'big', BIG, round), sendAcked(conn, 'big', BIG, round)])
      assert.deepEqual((await toServer)[1], round)
      assert.equal((await toServer)[0].length, BIG.length)
      assert.deepEqual((await toClient)[1], round)
      assert.equal((await toClient)[0].length, BIG.length)
      await roundTrip(client, round)
    }
  })

  it('end() of an idle connection flushes what was sent and closes it', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: pingPong })
    const client = await r.connectClient('ours', srv.port)
    const { conn } = await srv.waitConnection(0)
    await delay(200)
    const got = waitFor(client, 'last', WAIT)
    const gone = waitFor(client, 'disconnect', WAIT)
    conn.send('last', BIG)
    conn.socket.end()
    assert.equal((await got)[0].length, BIG.length)
    await gone
  })

  it('a socket first asked for after the handshake, or after the close, has the addresses and state an early one has', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: pingPong })
    const early = r.createClient('ours', srv.port, HOST)
    const earlySocket = early.socket
    await waitFor(early, 'connect')
    const late = await r.connectClient('ours', srv.port)
    const { conn } = await srv.waitConnection(1)
    const cs = late.socket
    assert.equal(cs.remotePort, srv.port)
    assert.equal(cs.localAddress, HOST)
    assert.equal(cs.destroyed, false)
    assert.equal(earlySocket.remotePort, srv.port)
    // The same object from then on.
    assert.equal(late.socket, cs)
    const closed = waitFor(conn, 'disconnect')
    late.disconnect()
    await closed
    // Asked for only now, after the close: addresses kept, destroyed.
    assert.equal(conn.socket.remotePort, cs.localPort)
    assert.equal(conn.socket.localPort, srv.port)
    assert.equal(conn.socket.destroyed, true)
  })
})
