'use strict'
// Operator metrics (src/engine/metrics.rs, lib/metrics.js): server.metrics(),
// server.connections(), client.stats(), the Prometheus text and the
// prom-client collectors, checked against known traffic with exact counts.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const v8 = require('node:v8')
const vm = require('node:vm')
const Uhura = require('..')
const { HOST, CLIENT_HANDSHAKE, waitFor, waitUntil, installExitWatchdog } = require('./helpers')

installExitWatchdog()

const T = { timeout: 20000 }

/** A listening server of ours; closed (with its clients) after test `t`. */
async function startServer (t, options = {}, onHandshake = () => {}) {
  const server = Uhura.createServer(options, onHandshake)
  const clients = []
  const sockets = []
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, HOST, resolve)
  })
  t.after(async () => {
    for (const c of clients) c.disconnect()
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => server.close(() => resolve()))
  })
  const port = server.address().port
  return {
    server,
    port,
    async client () {
      const c = Uhura.createClient({ port, host: HOST })
      c.on('error', () => {})
      clients.push(c)
      await waitFor(c, 'connect', 5000)
      return c
    },
    raw () {
      const s = net.connect(port, HOST)
      sockets.push(s)
      s.on('error', () => {})
      return s
    }
  }
}

/** Sends `n` acked events `name` on `emitter`; resolves once all are acked. */
function sendAcked (emitter, name, n) {
  return Promise.all(Array.from({ length: n }, (_, i) => new Promise((resolve, reject) => {
    emitter.send(name, i, 'x'.repeat(i), (err) => err ? reject(err) : resolve())
  })))
}

const sum = (list, f) => list.reduce((a, x) => a + f(x), 0)

describe('server.metrics(), server.connections(), client.stats()', () => {
  it('3 clients, N events each way: exact events, equal bytes on both ends, nothing pending', T, async (t) => {
    const N = 25
    const K = 7
    const conns = []
    const received = []
    const { server, client } = await startServer(t, {}, (conn) => {
      conns.push(conn)
      conn.on('up', (i) => received.push(i))
    })
    const clients = [await client(), await client(), await client()]
    let down = 0
    for (const c of clients) c.on('down', () => { down++ })
    await waitUntil(() => conns.length === 3, 5000, 'three handshakes')
    await Promise.all(clients.map((c) => sendAcked(c, 'up', N)))
    await Promise.all(conns.map((conn) => sendAcked(conn, 'down', K)))
    assert.equal(received.length, 3 * N)
    assert.equal(down, 3 * K)

    // Acks of the last events may still be on their way: bytes settle once
    // both ends saw everything.
    const stats = () => clients.map((c) => c.stats())
    await waitUntil(() => {
      const m = server.metrics()
      return m.bytes.in === sum(stats(), (s) => s.bytesOut) && m.bytes.out === sum(stats(), (s) => s.bytesIn)
    }, 5000, "the server's bytes to equal the clients'")

    const m = server.metrics()
    assert.deepEqual(m.connections, { current: 3, accepted: 3, refused: 0 })
    assert.deepEqual(m.handshakes, { new: 3, resumed: 0 })
    assert.deepEqual(m.sessions, { stored: 3, retained: 0 })
    assert.deepEqual(m.events, { in: 3 * N, out: 3 * K })
    assert.deepEqual(m.pending, { events: 0, bytes: 0 })
    assert.deepEqual(m.acks, { pending: 0 })
    assert.equal(m.drops, 0)
    assert.equal(m.heartbeatTimeouts, 0)
    assert.deepEqual(m.errors, {})
    assert.deepEqual(m.recentErrors, [])
    assert.ok(m.store.operations >= 3, `a session save per handshake at least (${m.store.operations})`)
    assert.equal(m.store.failures, 0)

    const list = server.connections()
    assert.equal(list.length, 3)
    const sessionIds = new Set(clients.map((c) => c.get('sessionID')))
    for (const c of list) {
      assert.equal(c.remoteAddress, '127.0.0.1')
      assert.equal(typeof c.remotePort, 'number')
      assert.ok(sessionIds.has(c.session), `connection ${c.id} has one of the clients' sessions`)
      assert.equal(c.mode, 'uhura')
      assert.equal(c.eventsIn, N)
      assert.equal(c.eventsOut, K)
      assert.equal(c.pendingEvents, 0)
      // The kernel's estimate for the TCP socket (Linux), in ms; loopback is fast.
      if (process.platform === 'linux') assert.ok(c.rtt > 0 && c.rtt < 1000, `rtt ${c.rtt} ms`)
      else assert.equal(c.rtt, null)
      assert.ok(c.connectedSince <= c.lastActivity && c.lastActivity <= Date.now())
    }
    assert.deepEqual(list.map((c) => c.id), conns.map((c) => c._h).sort((a, b) => a - b), 'ids are the connection handles, in order')
    assert.equal(sum(list, (c) => c.bytesIn), m.bytes.in)
    assert.equal(sum(list, (c) => c.bytesOut), m.bytes.out)

    for (const c of clients) {
      const s = c.stats()
      assert.equal(s.connected, true)
      assert.equal(s.reconnects, 0)
      assert.equal(s.mode, 'uhura')
      assert.equal(s.session, c.get('sessionID'))
      assert.equal(s.eventsOut, N)
      assert.equal(s.eventsIn, K)
      assert.equal(s.pendingEvents, 0)
      const mine = list.find((x) => x.session === s.session)
      assert.equal(mine.bytesIn, s.bytesOut, 'the server read what the client wrote, byte for byte')
      assert.equal(mine.bytesOut, s.bytesIn)
    }

    // The Prometheus text says the same.
    const text = server.metricsText()
    assert.match(text, /^# HELP uhura_connections /m)
    assert.match(text, /^# TYPE uhura_connections gauge$/m)
    assert.match(text, /^uhura_connections 3$/m)
    assert.match(text, /^uhura_connections_accepted_total 3$/m)
    assert.match(text, /^uhura_handshakes_total\{session="new"\} 3$/m)
    assert.match(text, new RegExp(`^uhura_events_received_total ${3 * N}$`, 'm'))
    assert.match(text, new RegExp(`^uhura_events_sent_total ${3 * K}$`, 'm'))
    assert.match(text, new RegExp(`^uhura_bytes_received_total ${m.bytes.in}$`, 'm'))
    assert.match(text, new RegExp(`^uhura_bytes_sent_total ${m.bytes.out}$`, 'm'))
    assert.match(text, /^uhura_pending_events 0$/m)
    assert.match(text, /^uhura_sessions_stored 3$/m)
    for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) {
      assert.match(line, /^uhura_[a-z_]+(\{[a-z]+="[^"]*"\})? \d+$/, 'every sample is uhura_<name>[{label}] <number>')
    }
    for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      assert.equal(name.endsWith('_total'), type === 'counter', `${name}: counters, and only they, end in _total`)
    }
  })

  it('a 0.1.x peer on a raw socket: bytes in and out exactly as written and read, its events, its mode', T, async (t) => {
    const { server, raw } = await startServer(t, {}, (conn) => conn.on('ev', () => {}))
    const s = raw()
    let read = ''
    s.setEncoding('utf8').on('data', (d) => { read += d })
    await new Promise((resolve) => s.once('connect', resolve))
    let written = CLIENT_HANDSHAKE
    s.write(CLIENT_HANDSHAKE)
    await waitUntil(() => read.includes('"connect"'), 5000, 'the server\'s connect')
    for (let i = 0; i < 4; i++) {
      const frame = `\n,\n{"args":["ev",${i}],"id":"raw-${i}"}`
      written += frame
      s.write(frame)
    }
    // One ack per event comes back.
    await waitUntil(() => (read.match(/raw-\d/g) || []).length === 4, 5000, 'four acks')
    await waitUntil(() => server.metrics().bytes.out === Buffer.byteLength(read), 5000,
      `the server's bytes out to be the ${Buffer.byteLength(read)} read`)
    const m = server.metrics()
    assert.equal(m.bytes.in, Buffer.byteLength(written), 'bytes in: exactly what the socket wrote')
    assert.equal(m.events.in, 4)
    assert.equal(m.events.out, 0, 'acks and the handshake are not events')
    const [c] = server.connections()
    assert.equal(c.mode, '0.1.x')
    if (process.platform === 'linux') assert.ok(c.rtt > 0, 'any TCP peer has a round-trip estimate')
    assert.equal(c.remotePort, s.localPort)
    assert.equal(c.bytesIn, Buffer.byteLength(written))
  })

  it('a refused connection (maxConnections), then a resumed handshake and a reconnect', T, async (t) => {
    const conns = []
    const { server, client, raw } = await startServer(t, {}, (conn) => conns.push(conn))
    const c = await client()
    c.autoReconnect(20, 200)
    server.maxConnections = 1
    const refused = raw()
    await new Promise((resolve) => refused.once('close', resolve))
    await waitUntil(() => server.metrics().connections.refused === 1, 5000, 'the refusal to be counted')
    server.maxConnections = undefined

    const hs = waitFor(c, 'connect', 5000)
    conns[0].socket.destroy()
    await hs
    await waitUntil(() => server.metrics().handshakes.resumed === 1, 5000, 'the resume to be counted')
    const m = server.metrics()
    assert.deepEqual(m.connections, { current: 1, accepted: 2, refused: 1 })
    assert.deepEqual(m.handshakes, { new: 1, resumed: 1 })
    assert.equal(c.stats().reconnects, 1)
    assert.equal(c.stats().connected, true)
    assert.match(server.metricsText(), /^uhura_connections_refused_total 1$/m)
    assert.match(server.metricsText(), /^uhura_handshakes_total\{session="resumed"\} 1$/m)
  })

  it('a silent peer: a heartbeat timeout, counted by code in errors and recent errors', T, async (t) => {
    const { server, raw } = await startServer(t, { heartbeatTimeout: 150 })
    server.on('clientError', () => {})
    const s = raw()
    s.on('data', () => {})
    await new Promise((resolve) => s.once('connect', resolve))
    s.write('[\n["_set",{}]\n,\n["start",{"objectMode":true,"enableAcks":true,"uhura":2,"heartbeat":40}]')
    await waitUntil(() => server.metrics().heartbeatTimeouts === 1, 5000, 'the heartbeat timeout')
    const m = server.metrics()
    assert.deepEqual(m.errors, { protocol: 1 })
    assert.equal(m.recentErrors.length, 1)
    assert.equal(m.recentErrors[0].code, 'protocol')
    assert.match(m.recentErrors[0].message, /^heartbeat timeout/)
    assert.match(server.metricsText(), /^uhura_errors_total\{code="protocol"\} 1$/m)
    assert.match(server.metricsText(), /^uhura_heartbeat_timeouts_total 1$/m)
  })

  it('client.stats() is null before connect(); metrics() of a closed server still reads', T, async (t) => {
    assert.equal(new Uhura.Client().stats(), null)
    const { server } = await startServer(t)
    assert.equal(server.metrics().connections.current, 0)
  })
})

describe('Uhura.metrics.register (prom-client)', () => {
  it('registers collectors that read server.metrics() on each scrape', T, async (t) => {
    const client = require('prom-client')
    const registry = new client.Registry()
    const received = []
    const { server, client: connect } = await startServer(t, {}, (conn) => conn.on('ev', (i) => received.push(i)))
    Uhura.metrics.register(registry, server)
    let text = await registry.metrics()
    assert.match(text, /^uhura_connections 0$/m)
    assert.match(text, /^uhura_events_received_total 0$/m)
    const c = await connect()
    await sendAcked(c, 'ev', 5)
    text = await registry.metrics()
    assert.match(text, /^uhura_connections 1$/m)
    assert.match(text, /^uhura_events_received_total 5$/m)
    assert.match(text, /^uhura_handshakes_total\{session="new"\} 1$/m)
    assert.match(text, /^# TYPE uhura_bytes_sent_total counter$/m)
    const json = await registry.getMetricsAsJSON()
    assert.equal(json.find((x) => x.name === 'uhura_events_received_total').values[0].value, 5)
    assert.throws(() => Uhura.metrics.register({}, server), /prom-client Registry/)
    assert.throws(() => Uhura.metrics.register(registry, {}), /uhura Server/)
  })

  it('several servers in one registry, told apart by their labels', T, async (t) => {
    const client = require('prom-client')
    const registry = new client.Registry()
    const a = await startServer(t, {}, (conn) => conn.on('ev', () => {}))
    const b = await startServer(t, {}, (conn) => conn.on('ev', () => {}))
    Uhura.metrics.register(registry, a.server, { server: 'a' })
    Uhura.metrics.register(registry, b.server, { server: 'b' })
    await sendAcked(await a.client(), 'ev', 5)
    await sendAcked(await b.client(), 'ev', 2)
    const text = await registry.metrics()
    assert.match(text, /^uhura_events_received_total\{server="a"\} 5$/m)
    assert.match(text, /^uhura_events_received_total\{server="b"\} 2$/m)
    assert.match(text, /^uhura_handshakes_total\{server="b",session="new"\} 1$/m)
    assert.equal(text.match(/^# TYPE uhura_connections gauge$/mg).length, 1, 'one metric family for both servers')
    const c = await startServer(t, {}, () => {})
    assert.throws(() => Uhura.metrics.register(registry, c.server), /labels telling them apart/)
    assert.throws(() => Uhura.metrics.register(registry, c.server, { name: 'c' }), /same names/)
    assert.throws(() => Uhura.metrics.register(registry, c.server, { server: 'a' }), /another server of this registry/)
    assert.throws(() => Uhura.metrics.register(registry, a.server, { server: 'z' }), /already registered/)
    assert.throws(() => Uhura.metrics.register(registry, c.server, 'c'), /labels is an object/)
    // A registry holds its servers weakly: one closed and dropped leaves it,
    // and its labels are free again.
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc')
    let dropped = Uhura.createServer(() => {})
    Uhura.metrics.register(registry, dropped, { server: 'dropped' })
    assert.match(await registry.metrics(), /^uhura_connections\{server="dropped"\} 0$/m)
    await new Promise((resolve) => dropped.listen(0, HOST, resolve))
    await new Promise((resolve) => dropped.close(resolve))
    dropped = null
    await waitUntil(async () => {
      gc()
      await new Promise((resolve) => setImmediate(resolve))
      return !/server="dropped"/.test(await registry.metrics())
    }, 10000, 'the dropped server to leave the registry')
    Uhura.metrics.register(registry, Uhura.createServer(() => {}), { server: 'dropped' })
    // A registry whose first server has no labels takes no second one.
    const lone = new client.Registry()
    Uhura.metrics.register(lone, a.server)
    assert.throws(() => Uhura.metrics.register(lone, b.server, { server: 'b' }), /labels telling them apart/)
  })
})
