'use strict'
// What an idle connection does without (issue 12, memory): no writer task
// (one is started when a write would block, and ends once it has written
// everything), no read buffer while Node's loop reads the socket, and no
// socket-like object until someone asks for it. Each test checks that what
// was left out comes back when needed.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
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

  it('late sockets of many connections each have their own ports, from addresses they share and cannot change', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: pingPong })
    const clients = []
    for (let i = 0; i < 4; i++) clients.push(await r.connectClient('ours', srv.port))
    const conns = []
    for (let i = 0; i < 4; i++) conns.push((await srv.waitConnection(i)).conn)
    // Shared by every connection of the listener and by every client of it.
    assert.equal(conns[0]._endpoints, conns[3]._endpoints)
    assert.equal(clients[0]._endpoints, clients[3]._endpoints)
    assert.equal(Object.isFrozen(conns[0]._endpoints), true)
    assert.throws(() => { 'use strict'; conns[0]._endpoints.remoteAddress = '10.0.0.1' }, TypeError)
    // The socket of one, changed, leaves the others' as they were.
    conns[1].socket.remoteAddress = '10.0.0.1'
    const clientPorts = new Set()
    for (const c of clients) {
      assert.equal(c.socket.remotePort, srv.port)
      assert.equal(c.socket.remoteAddress, HOST)
      assert.equal(c.socket.localAddress, HOST)
      assert.equal(c.socket.remoteFamily, 'IPv4')
      clientPorts.add(c.socket.localPort)
    }
    assert.equal(clientPorts.size, 4)
    for (const conn of conns) {
      assert.equal(conn.socket.localPort, srv.port)
      assert.equal(clientPorts.has(conn.socket.remotePort), true)
      assert.equal(conn.socket.remoteAddress, conn === conns[1] ? '10.0.0.1' : HOST)
    }
    // Each connection's ports, whatever their size (ports above 32767 use the top bit).
    assert.deepEqual(conns.map((c) => c.socket.remotePort).sort(), [...clientPorts].sort())
    await roundTrip(clients[3], 3)
  })

  it('a late socket over a Unix socket (no ports) has what an early one has', T, async (t) => {
    const r = useResources(t)
    const p = path.join(os.tmpdir(), `uhura-idle-${process.pid}.sock`)
    try { fs.unlinkSync(p) } catch (_) {}
    t.after(() => { try { fs.unlinkSync(p) } catch (_) {} })
    const srv = r.createServer('ours', { onConnection: pingPong })
    await new Promise((resolve) => srv.server.listen(p, resolve))
    const early = r.createClient('ours', { path: p })
    const earlySocket = early.socket
    await waitFor(early, 'connect')
    const late = r.createClient('ours', { path: p })
    await waitFor(late, 'connect')
    const pick = (s) => [s.remoteAddress, s.remotePort, s.remoteFamily, s.localAddress, s.localPort, s.destroyed]
    assert.deepEqual(pick(late.socket), pick(earlySocket))
    const { conn } = await srv.waitConnection(1)
    assert.deepEqual(pick(conn.socket), pick((await srv.waitConnection(0)).conn.socket))
    await roundTrip(late, 1)
  })

  it("a connection's sessionStore is its server's; assigned, it becomes that connection's own", T, async (t) => {
    const r = useResources(t)
    const U = require('..')
    const store = new U.session.MemoryStore()
    const srv = await r.startServer('ours', { options: { store }, onConnection: pingPong })
    await r.connectClient('ours', srv.port)
    await r.connectClient('ours', srv.port)
    const { conn: a } = await srv.waitConnection(0)
    const { conn: b } = await srv.waitConnection(1)
    assert.equal(a.sessionStore, store)
    assert.equal(a.sessionStore, srv.server.sessionStore)
    // Still listed by for...in, as the field it was.
    const listed = []
    for (const k in a) listed.push(k)
    assert.equal(listed.includes('sessionStore'), true)
    const other = new U.session.MemoryStore()
    a.sessionStore = other
    assert.equal(a.sessionStore, other)
    assert.equal(b.sessionStore, store)
    assert.equal(srv.server.sessionStore, store)
  })

  it('clients made in one run of code all start (in one tick), and so does one made later, in a listener', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: pingPong })
    const batch = []
    for (let i = 0; i < 10; i++) batch.push(r.createClient('ours', srv.port, HOST))
    const later = new Promise((resolve) => {
      batch[0].once('connect', () => {
        const c = r.createClient('ours', srv.port, HOST)
        resolve({ c, connected: waitFor(c, 'connect', WAIT) })
      })
    })
    await Promise.all(batch.map((c) => waitFor(c, 'connect', WAIT)))
    const { c, connected } = await later
    await connected
    await roundTrip(c, 1)
    await roundTrip(batch[9], 2)
  })
})
