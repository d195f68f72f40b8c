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

  it("a connection holds only what differs from the defaults, yet has its server's options and any listener name", T, async (t) => {
    const r = useResources(t)
    const plain = await r.startServer('ours', { onConnection: pingPong })
    const strict = await r.startServer('ours', { options: { maxArgs: 2, logErrors: true }, onConnection: pingPong })
    const a = await r.connectClient('ours', plain.port)
    const b = await r.connectClient('ours', strict.port)
    const { conn: pc } = await plain.waitConnection(0)
    const { conn: sc } = await strict.waitConnection(0)
    for (const own of ['logErrors', '_limits', '_ackTimeout', '_durable', '_socket', '_acks']) {
      assert.equal(Object.prototype.hasOwnProperty.call(pc, own), false, own)
    }
    assert.equal(pc.logErrors, false)
    assert.equal(sc.logErrors, true)
    assert.doesNotThrow(() => pc.send('x', 1, 2, 3))
    assert.throws(() => sc.send('x', 1, 2, 3), /maxArgs/)
    // Set on one connection, it stays that connection's.
    pc.logErrors = true
    assert.equal(Object.getPrototypeOf(pc).logErrors, false)
    // Listener names are plain keys, none inherited: not even __proto__ or toString.
    for (const emitter of [pc, a]) {
      assert.deepEqual(emitter.listeners('toString'), [])
      assert.equal(emitter.emit('hasOwnProperty'), false)
      const got = []
      emitter.on('__proto__', (v) => got.push(v))
      emitter.on('constructor', (v) => got.push(v))
      assert.equal(emitter.emit('__proto__', 1), true)
      emitter.emit('constructor', 2)
      assert.deepEqual(got, [1, 2])
      emitter.removeAllListeners('__proto__')
      assert.equal(emitter.listenerCount('__proto__'), 0)
      assert.equal(emitter.listenerCount('error') >= 1, true)
    }
    // And they still talk.
    await roundTrip(a, 1)
    await roundTrip(b, 2)
  })
})
