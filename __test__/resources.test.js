'use strict'
// What a remote peer can make a server hold: memory bounds under hostile or
// simply eager peers.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { HOST, ROOT, useResources, waitUntil, waitFor, delay, installExitWatchdog, CLIENT_HANDSHAKE, pingPong } = require('./helpers')

installExitWatchdog()

const MB = 1024 * 1024
// A 0.1.2 client's handshake, as raw bytes.

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
    for (const s of socks) s.socket.write(CLIENT_HANDSHAKE)
    await srv.waitConnection(CONNS - 1, 20000)
    // All at once: one write per socket within one tick.
    for (const s of socks) s.socket.write(burst)
    await waitUntil(() => received === CONNS * PER_CONN, 30000, `all ${CONNS * PER_CONN} events (got ${received})`)
    t.diagnostic(`largest batch: ${(largest / MB).toFixed(1)} MB`)
    assert.ok(largest < 12 * MB, `a batch of ${(largest / MB).toFixed(1)} MB crossed into JavaScript; the bound is 8 MiB plus one read`)
  })
})

describe('what a connection may send before its handshake is bounded', () => {
  const events = (n, size) => Buffer.from(Array.from({ length: n }, (_, i) => `\n,\n{"args":["e",${i},"${'y'.repeat(size)}"]}`).join(''))

  it('events before start beyond maxHandshakeBytes are a protocol error: the connection is closed', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { maxHandshakeBytes: 64 * 1024 } })
    const errors = []
    srv.server.on('clientError', (e) => errors.push(e))
    const raw = r.rawConnect(srv.port, HOST)
    await raw.connected()
    raw.socket.write('[\n["_set",{"k":1}]')
    raw.socket.write(events(4096, 1000)) // 4 MB, and never a start
    await raw.waitClosed(5000)
    await waitUntil(() => errors.length === 1, 5000, 'the clientError')
    assert.match(errors[0].message, /maxHandshakeBytes/)
    assert.equal(srv.connections.length, 0)
  })

  it('a resuming old client that sends its queue while the session loads is read at the pace of the load, and loses nothing', { timeout: 30000 }, async (t) => {
    const r = useResources(t)
    // A connect-style store whose get takes a while, as a remote one may.
    const data = {}
    let slow = false
    const store = {
      get: (sid, cb) => setTimeout(() => cb(null, data[sid] ? JSON.parse(data[sid]) : undefined), slow ? 1500 : 0),
      set: (sid, sess, cb) => { data[sid] = JSON.stringify(sess); cb() },
      destroy: (sid, cb) => { delete data[sid]; cb() },
    }
    const got = []
    const srv = await r.startServer('ours', { options: { store, maxHandshakeBytes: 64 * 1024 }, onConnection: (conn) => conn.on('e', (i) => got.push(i)) })
    // An old client's session: it resumes by id (ours would need its secret).
    const first = r.createClient('v0.1.2', srv.port, HOST)
    await srv.waitConnection(0)
    await waitUntil(() => typeof first.get('sessionID') === 'string', 5000, 'a session id')
    const sid = first.get('sessionID')
    first.disconnect()
    await waitUntil(() => data[sid], 5000, 'the session stored')

    slow = true
    const N = 8000
    const raw = r.rawConnect(srv.port, HOST)
    await raw.connected()
    raw.socket.write(`[\n["_set",{"sessionID":"${sid}"}]\n,\n["start",{"objectMode":true,"enableAcks":true}]`)
    raw.socket.write(events(N, 1000)) // 8 MB right behind start, as 0.1.2 sends its queue
    await delay(500)
    assert.ok(raw.socket.writableLength > 1024 * 1024, `the server stopped reading while the session loads (${raw.socket.writableLength} bytes still unsent)`)
    const [conn, reconnect] = await waitFor(srv.server, 'handshake', 10000)
    assert.equal(reconnect, true)
    assert.ok(conn)
    await waitUntil(() => got.length === N, 20000, `all ${N} events (got ${got.length})`)
    assert.deepEqual(got.slice(0, 3), [0, 1, 2])
    assert.equal(got[N - 1], N - 1)
  })
})

describe('session work stays linear', () => {
  it('10,000 one-key _sets in one burst do not stall the server for other connections', { timeout: 30000 }, async (t) => {
    const { monitorEventLoopDelay } = require('node:perf_hooks')
    const r = useResources(t)
    let last = null
    const srv = await r.startServer('ours', {
      onConnection: (conn) => {
        conn.on('_set', (k) => { if (k === 'k9999') last = conn })
      },
    })
    const N = 10000
    const raw = r.rawConnect(srv.port, HOST)
    await raw.connected()
    raw.socket.write(CLIENT_HANDSHAKE)
    await srv.waitConnection(0)
    const histogram = monitorEventLoopDelay({ resolution: 10 })
    histogram.enable()
    const started = Date.now()
    raw.socket.write(Array.from({ length: N }, (_, i) => `\n,\n["_set","k${i}",${i}]`).join(''))
    await waitUntil(() => last !== null, 20000, 'the last _set')
    const elapsed = Date.now() - started
    histogram.disable()
    assert.equal(last.get('k9999'), 9999)
    assert.equal(Object.keys(last.get()).filter((k) => /^k\d+$/.test(k)).length, N, 'every key')
    const stallMs = histogram.max / 1e6
    t.diagnostic(`applied in ${elapsed} ms; longest event-loop stall ${stallMs.toFixed(0)} ms`)
    // A session copy per _set took 3-7 s here; one per read takes milliseconds.
    assert.ok(stallMs < 1000, `the event loop stalled for ${stallMs.toFixed(0)} ms`)
  })
})

describe('sessions have a size limit', () => {
  it('a peer\'s _set that would grow the session past maxSessionBytes is refused with an error; the connection goes on', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', {
      options: { maxSessionBytes: 10000 },
      onConnection: pingPong,
    })
    const raw = r.rawConnect(srv.port, HOST)
    await raw.connected()
    raw.socket.write(CLIENT_HANDSHAKE)
    const { conn } = await srv.waitConnection(0)
    const errored = waitFor(conn, 'error')
    raw.socket.write(`\n,\n["_set","small","ok"]\n,\n["_set","big","${'b'.repeat(20000)}"]\n,\n["_set",{"a":"${'a'.repeat(6000)}","c":"${'c'.repeat(6000)}"}]\n,\n["_set","after",1]`)
    const [err] = await errored
    assert.match(err.message, /maxSessionBytes/)
    await waitUntil(() => conn.get('after') === 1, 5000, 'the _set after the refused ones')
    assert.equal(conn.get('small'), 'ok')
    assert.equal(conn.get('big'), undefined, 'the oversized value was not merged')
    assert.equal(conn.get('a'), undefined, 'an object _set is refused whole')
    raw.socket.write('\n,\n["ping",5]')
    await raw.waitText(/"pong",5/)
    // Replacing a value with a smaller one is always allowed.
    raw.socket.write(`\n,\n["_set","small","${'s'.repeat(3000)}"]\n,\n["_set","small","x"]`)
    await waitUntil(() => conn.get('small') === 'x', 5000, 'the shrinking _set')
  })

  it('set() of a value larger than maxSessionBytes by itself throws a RangeError, and sends nothing', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: pingPong })
    const client = r.createClient('ours', { port: srv.port, host: HOST, maxSessionBytes: 1000 })
    const { conn } = await srv.waitConnection(0)
    assert.throws(() => client.set('big', 'x'.repeat(2000)), (e) => e instanceof RangeError && /maxSessionBytes/.test(e.message))
    assert.throws(() => conn.set({ big: 'x'.repeat(2 * 1024 * 1024) }), RangeError, 'the server side has the 1 MiB default')
    assert.equal(client.get('big'), undefined)
    const pong = waitFor(client, 'pong')
    client.send('ping', 1)
    assert.deepEqual(await pong, [1])
    assert.equal(conn.get('big'), undefined)
  })
})
