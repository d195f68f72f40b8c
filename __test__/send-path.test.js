'use strict'
// The sender's hot path in JavaScript: the outbox handed to Rust while a
// synchronous loop of sends is still running (after 64 lines, then twice as
// many each time up to every 1,024, not only at the end of the tick), the ack callbacks kept by sequence number
// (lib/acks.js), the JSON of flat argument arrays built directly, and the
// acks read in while such a loop runs (src/node/uv.rs, read_for_acks).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { HOST, waitUntil, waitFor, delay, useResources, installExitWatchdog, spawnNode } = require('./helpers')
const Acks = require('../lib/acks')
const { flatJson, toJson } = require('../lib/options')
const outbox = require('../lib/outbox')

installExitWatchdog(20000)
const U = require('..')

async function serverAndClient (t, onConnection) {
  const conns = []
  const server = U.createServer((conn) => {
    conns.push(conn)
    if (onConnection) onConnection(conn)
  })
  await new Promise((resolve) => server.listen(0, HOST, resolve))
  const client = U.createClient(server.address().port, HOST)
  t.after(() => new Promise((resolve) => { client.disconnect(); server.close(resolve) }))
  await waitUntil(() => conns.length === 1 && client.ready, 5000, 'the handshake')
  return { server, client, conn: conns[0] }
}

// Whatever ring an earlier test left as the process's spare goes to an
// emitter that stays busy (for the tests of how a ring grows).
const busyEmitters = []
function holdTheSpareRing () {
  const busy = new Acks()
  for (let seq = 0; seq < 17; seq++) busy.add(seq, seq)
  busyEmitters.push(busy)
  assert.equal(Acks.spareCapacity(), 0)
}

// A server's connection whose client disconnected, past the server's
// resume window (so the session's state is released), and its errors.
async function connectionGoneForGood (t) {
  const r = useResources(t)
  const srv = await r.startServer('ours', { options: { resumeWindow: 50 } })
  const client = r.createClient('ours', srv.port, HOST)
  const { conn } = await srv.waitConnection(0)
  const errors = []
  conn.on('error', (err) => errors.push(err))
  const gone = waitFor(conn, 'disconnect')
  client.disconnect()
  await gone
  await delay(400)
  return { conn, errors }
}

describe('the outbox', () => {
  it('reaches Rust while a synchronous loop of sends runs, and every ack arrives in order', { timeout: 30000 }, async (t) => {
    const got = []
    const { client } = await serverAndClient(t, (conn) => conn.on('e', (i) => got.push(i)))
    const N = 5000
    const acked = []
    let pendingMidLoop = null
    for (let i = 0; i < N; i++) {
      client.send('e', i, (err) => acked.push(err || i))
      // Still inside the loop: what went to Rust so far is pending there.
      if (i === 3000) pendingMidLoop = client.stats().pendingEvents
    }
    // Flushed after 64, 192, 448, 960 and 1,984 lines (see the next test).
    assert.ok(pendingMidLoop >= 1984, `${pendingMidLoop} events in Rust after 3,001 sends in one loop`)
    await waitUntil(() => acked.length === N, 10000, 'every ack')
    assert.deepEqual(acked, Array.from({ length: N }, (_, i) => i))
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => i))
    assert.equal(client._acks.size, 0)
  })

  it('hands a run of sends to Rust after 64 lines first, twice as many each time after, up to 1,024', { timeout: 30000 }, async (t) => {
    const got = []
    const { client } = await serverAndClient(t, (conn) => conn.on('e', (i) => got.push(i)))
    let acked = 0
    // Sends 1 … n in one loop; what Rust holds (not yet acknowledged: no ack
    // is read while the loop runs) after each send named in `at`.
    const run = (from, n, at) => {
      const pending = {}
      for (let i = from; i < from + n; i++) {
        client.send('e', i, (err) => { assert.ifError(err); acked++ })
        const k = i - from + 1
        if (at.includes(k)) pending[k] = client.stats().pendingEvents
      }
      return pending
    }
    // Flushes after 64, 64 + 128, … lines; then every 1,024.
    const first = run(0, 3100, [63, 64, 191, 192, 447, 448, 959, 960, 1983, 1984, 3007, 3008])
    assert.deepEqual(first, { 63: 0, 64: 64, 191: 64, 192: 192, 447: 192, 448: 448, 959: 448, 960: 960, 1983: 960, 1984: 1984, 3007: 1984, 3008: 3008 })
    await waitUntil(() => acked === 3100, 10000, 'the first run\'s acks')
    assert.equal(client.stats().pendingEvents, 0)
    // The next run (another macrotask) starts small again.
    const second = run(3100, 100, [63, 64])
    assert.deepEqual(second, { 63: 0, 64: 64 })
    await waitUntil(() => acked === 3200, 10000, 'the second run\'s acks')
    assert.deepEqual(got, Array.from({ length: 3200 }, (_, i) => i))
  })

  it('keeps the sends of a client made before connect() in the same tick for it', { timeout: 30000 }, async (t) => {
    const got = []
    const server = U.createServer((conn) => conn.on('e', (i) => got.push(i)))
    await new Promise((resolve) => server.listen(0, HOST, resolve))
    const client = new U.Client()
    t.after(() => new Promise((resolve) => { client.disconnect(); server.close(resolve) }))
    const N = 3000
    let acked = 0
    for (let i = 0; i < N; i++) client.send('e', i, (err) => { assert.ifError(err); acked++ })
    client.connect(server.address().port, HOST)
    await waitUntil(() => acked === N, 10000, 'every ack')
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => i))
  })

  it('flushes early inside a listener too: replies in order, then the acks of the batch', { timeout: 30000 }, async (t) => {
    const N = 3000
    const { client } = await serverAndClient(t, (conn) => {
      conn.on('go', () => {
        for (let i = 0; i < N; i++) conn.send('r', i)
      })
    })
    const got = []
    client.on('r', (i) => got.push(i))
    let acked = false
    client.send('go', () => { acked = true })
    await waitUntil(() => acked && got.length === N, 10000, 'the replies and the ack')
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => i))
  })
})

// A server in its own process, so that it reads and acks while this
// process's JavaScript thread is busy in a loop of sends. Prints `port <n>`,
// then `got <count> <in order 0|1>` on each 'count' event.
const COUNTING_SERVER = `
const U = require(${JSON.stringify(path.join(__dirname, '..'))})
let got = 0
let inOrder = true
const server = U.createServer((conn) => {
  conn.on('e', (i) => { if (i !== got) inOrder = false; got++ })
  conn.on('count', () => console.log('got ' + got + ' ' + (inOrder ? 1 : 0)))
})
server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port))
`

describe('acks read in during a loop of sends', () => {
  it('lets events past the in-flight window out before the loop ends; the callbacks run after it, in order', { timeout: 60000 }, async (t) => {
    const srv = spawnNode(t, ['-e', COUNTING_SERVER], { name: 'the counting server' })
    await srv.waitOut(/port \d+/)
    const port = Number(/port (\d+)/.exec(srv.out())[1])
    const client = U.createClient(port, HOST)
    t.after(() => client.disconnect())
    await waitUntil(() => client.ready, 5000, 'the handshake')
    const acked = []
    let sent = 0
    const send = () => {
      const i = sent++
      client.send('e', i, (err) => acked.push(err || i))
    }
    // Twice Rust's in-flight window (8,192 events, src/protocol/peer/config.rs):
    // the rest waits there for acks.
    for (let k = 0; k < 16384; k++) send()
    client._flush()
    // Still in one synchronous loop: more sends (each flushed write reads
    // the socket while the window is full) until some acks came in, with
    // naps for the server to catch up. Before, the acks stayed in the
    // socket until the loop ended, so every event sent stayed pending.
    const nap = new Int32Array(new SharedArrayBuffer(4))
    const deadline = Date.now() + 15000
    while (client.stats().pendingEvents === sent && Date.now() < deadline) {
      Atomics.wait(nap, 0, 0, 5)
      for (let k = 0; k < 256; k++) send()
      client._flush()
    }
    const pending = client.stats().pendingEvents
    assert.ok(pending < sent, `${pending} of ${sent} events still pending when the loop ended`)
    assert.deepEqual(acked, [], 'no ack callback runs inside the loop')
    await waitUntil(() => acked.length === sent, 20000, 'every ack')
    assert.deepEqual(acked, Array.from({ length: sent }, (_, i) => i))
    client.send('count')
    await srv.waitOut(/got \d+ [01]/)
    assert.equal(srv.lines().find((l) => l.startsWith('got ')), `got ${sent} 1`)
  })
})

describe('send() and its lines', () => {
  it('gives the peer what JSON gives for every argument list; the callback is the last argument when a function', { timeout: 30000 }, async (t) => {
    const got = []
    const { client } = await serverAndClient(t, (conn) => conn.on('e', (...args) => got.push(args)))
    // send() reads its arguments one by one up to a name, two arguments and
    // a callback (or three without), and takes an array of them beyond.
    const lists = [
      ['e'], ['e', 1], ['e', 'a', -0], ['e', 1, 2, 3], ['e', 1, 2, 3, 4], ['e', 1, 2, 3, 4, 5],
      ['e', null, true], ['e', false, 'x'], ['e', NaN, Infinity], ['e', 1e21, 0.5, -7],
      ['e', { a: [1] }], ['e', [1, 2], 'x'], ['e', 'x"y', '\n'], ['e', undefined, 1], ['e', 'é中', '\ud800'],
      ['e', () => 1, 2], ['e', 1, () => 2, 3], ['e', 'x'.repeat(300), 'x'.repeat(300)]
    ]
    const expected = []
    let acked = 0
    let calls = 0
    for (const args of lists) {
      client.send(...args)
      expected.push(JSON.parse(JSON.stringify(args)).slice(1))
      client.send(...args, (err, ...rest) => {
        assert.ifError(err)
        assert.deepEqual(rest, [])
        acked++
      })
      expected.push(JSON.parse(JSON.stringify(args)).slice(1))
      // A function before the last one is an argument (null in JSON).
      client.send(...args, () => calls++, (err) => { assert.ifError(err); acked++ })
      expected.push(JSON.parse(JSON.stringify([...args, () => calls++])).slice(1))
    }
    await waitUntil(() => acked === 2 * lists.length && got.length === expected.length, 10000, 'every event and ack')
    assert.deepEqual(got, expected)
    assert.equal(calls, 0)
    assert.equal(U.Client.prototype.send.length, 0, 'declared without parameters, as the original\'s')
    assert.throws(() => client.send(), /the event name must be a string, got undefined/)
    assert.throws(() => client.send(() => {}), /the event name must be a string, got undefined/)
    assert.throws(() => client.send(1, 2, () => {}), /the event name must be a string, got number 1/)
    assert.throws(() => client.send('e', 1n, () => {}), /send\("e"\): the arguments cannot be sent as JSON/)
  })

  it('measures maxMessageSize on the JSON of the arguments, not on the line around it', { timeout: 30000 }, async (t) => {
    const got = []
    const server = U.createServer((conn) => {
      conn.on('e', (s) => got.push(s.length))
      conn.on('o', (o) => got.push(o.s.length))
    })
    await new Promise((resolve) => server.listen(0, HOST, resolve))
    const client = U.createClient({ port: server.address().port, host: HOST, maxMessageSize: 200 })
    t.after(() => new Promise((resolve) => { client.disconnect(); server.close(resolve) }))
    await waitUntil(() => client.ready, 5000, 'the handshake')
    // A large sequence number, so that its digits would count.
    let acked = 0
    for (let i = 0; i < 100000; i++) client.send('n', i, () => acked++)
    // The wire form adds at most 64 bytes (lib/options.js, checkLimits): JSON
    // of 136 bytes fits 200, 137 does not. `["e","<s>"]` is s + 8 bytes,
    // `["o",{"s":"<s>"}]` (not flat: JSON.stringify's) s + 14. After a
    // flush the next numbered line has its number (`a100000`), the ones
    // after it in the batch not (`A`): neither counts.
    client._flush()
    client.send('e', 'x'.repeat(128), () => acked++)
    client.send('e', 'x'.repeat(128))
    client.send('o', { s: 'x'.repeat(122) }, () => acked++)
    assert.throws(() => client.send('e', 'x'.repeat(129), () => acked++), /maxMessageSize/)
    assert.throws(() => client.send('e', 'x'.repeat(129)), /maxMessageSize/)
    assert.throws(() => client.send('o', { s: 'x'.repeat(123) }, () => acked++), /maxMessageSize/)
    await waitUntil(() => acked === 100002 && got.length === 3, 20000, 'the events that fit')
    assert.deepEqual(got, [128, 128, 122])
  })

  it('numbers the callbacks of interleaved emitters, lines and sends made inside toJSON (implicit numbers)', { timeout: 30000 }, async (t) => {
    const got = { a: [], b: [] }
    const server = U.createServer((conn) => {
      conn.once('who', (name) => {
        conn.on('e', (i) => got[name].push(i))
        conn.on('o', (o) => got[name].push(o))
      })
    })
    await new Promise((resolve) => server.listen(0, HOST, resolve))
    const a = U.createClient(server.address().port, HOST)
    const b = U.createClient(server.address().port, HOST)
    t.after(() => new Promise((resolve) => { a.disconnect(); b.disconnect(); server.close(resolve) }))
    a.send('who', 'a')
    b.send('who', 'b')
    await waitUntil(() => a.ready && b.ready, 5000, 'the handshakes')
    await delay(50)
    // What crosses to Rust, to see which lines it numbered how.
    const { native } = require('../lib/native')
    const write = native.write
    const texts = []
    native.write = (h, buf, start, end) => { texts.push(buf.toString('utf8', start, end)); return write(h, buf, start, end) }
    t.after(() => { native.write = write })
    const acked = { a: [], b: [] }
    const expected = { a: [], b: [] }
    const withCb = { a: [], b: [] }
    const send = (client, name, i, cb) => {
      expected[name].push(i)
      if (!cb) return client.send('e', i)
      withCb[name].push(i)
      client.send('e', i, (err) => acked[name].push(err || i))
    }
    // One tick: the outbox's segments change emitter every few lines, a
    // numbered line follows unnumbered ones and sets, and a send runs inside
    // another's JSON.stringify (its line goes first, with the number before).
    let i = 0
    for (let round = 0; round < 300; round++) {
      send(a, 'a', i++, true)
      send(a, 'a', i++, round % 3 === 0)
      if (round % 5 === 0) a.set('k', round)
      send(a, 'a', i++, true)
      if (round % 2 === 0) send(b, 'b', i++, round % 4 === 0)
      if (round % 7 === 0) {
        const inner = i++
        const outer = i++
        a.send('o', { toJSON () { send(a, 'a', inner, true); return { v: outer } } }, (err) => acked.a.push(err || outer))
        expected.a.push({ v: outer })
        withCb.a.push(outer)
      }
      if (round % 11 === 0) a._flush()
    }
    await waitUntil(() => got.a.length === expected.a.length && got.b.length === expected.b.length, 10000, 'every event')
    assert.deepEqual(got, expected)
    // Each callback once, in the order of the sends.
    await waitUntil(() => acked.a.length === withCb.a.length && acked.b.length === withCb.b.length, 10000, 'every ack')
    assert.deepEqual(acked, withCb)
    assert.equal(a._acks.size + b._acks.size, 0)
    const lines = texts.join('').split('\n')
    assert.ok(lines.filter((l) => l.startsWith('A')).length > 500, 'most numbers implicit')
    assert.ok(lines.filter((l) => /^a\d/.test(l)).length > 100, 'the first of each batch explicit')
  })

  it('numbers the callbacks of sends made before connect() and across a reconnection', { timeout: 30000 }, async (t) => {
    const got = []
    const conns = []
    const server = U.createServer((conn) => { conns.push(conn); conn.on('e', (i) => got.push(i)) })
    await new Promise((resolve) => server.listen(0, HOST, resolve))
    const client = new U.Client()
    t.after(() => new Promise((resolve) => { client.disconnect(); server.close(resolve) }))
    const acked = []
    let i = 0
    const burst = (n) => {
      for (let k = 0; k < n; k++) {
        const v = i++
        if (v % 4 === 1) client.send('e', v)
        else client.send('e', v, (err) => acked.push(err || v))
      }
    }
    burst(500)
    client.connect(server.address().port, HOST)
    burst(500)
    await waitUntil(() => client.ready && got.length === 1000, 10000, 'the sends before and right after connect()')
    const sid = client.get('sessionID')
    burst(300)
    client.reconnect()
    burst(300)
    await waitUntil(() => conns.length === 2 && got.length === 1600, 10000, 'the sends around reconnect()')
    assert.equal(client.get('sessionID'), sid, 'the session was resumed')
    burst(300)
    await waitUntil(() => got.length === 1900 && client._acks.size === 0, 10000, 'every ack')
    const all = Array.from({ length: 1900 }, (_, v) => v)
    assert.deepEqual(got, all)
    assert.deepEqual(acked, all.filter((v) => v % 4 !== 1))
  })

  it('fails the callbacks of every line of a batch on a connection gone for good, numbered or not', { timeout: 30000 }, async (t) => {
    const { conn, errors } = await connectionGoneForGood(t)
    // One batch: `a<n>`, then `A` lines between lines without a number.
    const failed = []
    for (let i = 0; i < 20; i++) {
      if (i % 3 === 0) conn.send('x', i)
      else conn.send('x', i, (err) => failed.push([i, err && err.code]))
      if (i % 5 === 0) conn.set('k', i)
    }
    await waitUntil(() => failed.length === 13, 5000, 'the callbacks')
    assert.deepEqual(failed, Array.from({ length: 20 }, (_, i) => i).filter((i) => i % 3 !== 0).map((i) => [i, 'ERR_UHURA_CLOSED']))
    await waitUntil(() => errors.length === 1, 5000, 'one error event for the lines without a callback')
    assert.equal(errors[0].code, 'ERR_UHURA_CLOSED')
    assert.equal(conn._acks.size, 0)
  })

  it('fails the callback of a send on a connection gone for good, with no error event for it', { timeout: 30000 }, async (t) => {
    const { conn, errors } = await connectionGoneForGood(t)
    const cbErrs = await Promise.all([1, 2, 3].map((i) => new Promise((resolve) => conn.send('x', i, resolve))))
    assert.deepEqual(cbErrs.map((e) => e && e.code), ['ERR_UHURA_CLOSED', 'ERR_UHURA_CLOSED', 'ERR_UHURA_CLOSED'])
    await delay(100)
    assert.deepEqual(errors, [], 'sends with a callback are reported there only')
    conn.send('x', 4)
    await waitUntil(() => errors.length === 1, 5000, 'the error event of a send without a callback')
    assert.equal(errors[0].code, 'ERR_UHURA_CLOSED')
  })
})

describe('ack callbacks by sequence number (lib/acks.js)', () => {
  it('settles in order, out of order and twice, across wrap-arounds and growth', () => {
    const acks = new Acks()
    const N = 5000
    for (let seq = 0; seq < N; seq++) acks.add(seq, seq)
    assert.equal(acks.size, N)
    // Out of order (an ack timeout, a drop): holes the front skips later.
    assert.equal(acks.take(10), 10)
    assert.equal(acks.take(10), undefined)
    assert.equal(acks.take(N + 5), undefined)
    assert.equal(acks.take(-1), undefined)
    assert.equal(acks.take(NaN), undefined)
    for (let seq = 0; seq < 3000; seq++) assert.equal(acks.take(seq), seq === 10 ? undefined : seq)
    assert.equal(acks.size, N - 3000)
    // Sliding on: the ring wraps around and grows while wrapped.
    let next = N
    for (let round = 0; round < 20; round++) {
      for (let k = 0; k < 700 * (round + 1); k++, next++) acks.add(next, next)
      for (let k = 0; k < 500 * (round + 1); k++) {
        const oldest = next - acks.size
        assert.equal(acks.take(oldest), oldest)
      }
    }
    const from = next - acks.size
    for (let seq = next - 1; seq >= from; seq--) assert.equal(acks.take(seq), seq)
    assert.equal(acks.size, 0)
    assert.equal(acks.buf.length, 16, 'an emptied large ring is swapped for a small one')
    // Empty, it starts again at the next number.
    acks.add(next, 'x')
    assert.equal(acks.take(next), 'x')
  })

  it('keeps the largest emptied ring for the next burst of any emitter, and one only', () => {
    holdTheSpareRing()
    const a = new Acks()
    const b = new Acks()
    for (let seq = 0; seq < 3000; seq++) a.add(seq, seq)
    const grown = a.buf.length
    assert.equal(grown, 4096)
    for (let seq = 0; seq < 3000; seq++) assert.equal(a.take(seq), seq)
    assert.equal(a.buf.length, 16, 'the emptied emitter keeps a small ring')
    assert.equal(Acks.spareCapacity(), grown)
    // Another emitter's burst grows into it in one step, wrapped or not.
    for (let seq = 100; seq < 117; seq++) b.add(seq, seq)
    assert.equal(b.buf.length, grown)
    assert.equal(Acks.spareCapacity(), 0, 'lent to one emitter at a time')
    for (let seq = 117; seq < 5000; seq++) b.add(seq, seq)
    assert.equal(b.buf.length, 8192)
    for (let seq = 100; seq < 5000; seq++) assert.equal(b.take(seq), seq)
    assert.equal(b.size, 0)
    assert.equal(Acks.spareCapacity(), 8192, 'the larger ring is the one kept')
    for (let seq = 0; seq < 40; seq++) a.add(seq, -seq)
    for (let seq = 0; seq < 40; seq++) assert.equal(a.take(seq), -seq, 'a lent ring holds nothing of its last owner')
  })

  it('moves a callback whose ack never comes out of the ring', () => {
    holdTheSpareRing()
    const acks = new Acks()
    acks.add(0, 'stuck')
    let seq = 1
    let largest = 0
    for (let round = 0; round < 100; round++) {
      for (let k = 0; k < 100; k++) acks.add(seq + k, seq + k)
      largest = Math.max(largest, acks.buf.length)
      for (let k = 0; k < 100; k++) assert.equal(acks.take(seq + k), seq + k)
      seq += 100
    }
    assert.equal(acks.size, 1)
    assert.ok(largest <= 256, `a ring of ${largest} for 101 pending`)
    assert.equal(acks.take(0), 'stuck')
    assert.equal(acks.take(0), undefined)
    assert.equal(acks.size, 0)
  })

  it('keeps the persisted stage of a durable send apart', () => {
    const acks = new Acks()
    acks.addPersisted(0, 'p0')
    acks.add(0, 'a0')
    acks.add(1, 'a1')
    assert.equal(acks.size, 3)
    assert.equal(acks.take(0), 'a0')
    assert.equal(acks.takePersisted(1), undefined)
    assert.equal(acks.takePersisted(0), 'p0')
    assert.equal(acks.takePersisted(0), undefined)
    assert.equal(acks.size, 1)
  })
})

describe('flat argument arrays to JSON', () => {
  it('gives JSON.stringify\'s text, or leaves the array to it', () => {
    const strings = ['', 'e', 'x'.repeat(39), 'é中', '"', '\\', '\n', '\u0000', '\u001f', '\u007f', '\u2028', '\ud83d\ude00', '\ud800', 'a\udc00b', '</script>']
    const numbers = [0, -0, 1, -5, 0.1, 1e21, 1e-7, 2 ** 53, NaN, Infinity, -Infinity]
    const others = [true, false, null, undefined, {}, [1], { toJSON: () => 'j' }, Object('s'), Object(1)]
    const values = [...strings, ...numbers, ...others]
    let fast = 0
    for (const a of values) {
      for (const b of values) {
        const args = ['e', a, b]
        const json = flatJson(args)
        if (json !== undefined) {
          fast++
          assert.equal(json, JSON.stringify(args))
        }
        assert.equal(toJson(args, 'send()'), JSON.stringify(args))
      }
    }
    assert.ok(fast > 100)
    assert.equal(flatJson([1, , 2]), undefined) // eslint-disable-line no-sparse-arrays
    const withToJson = ['e']
    withToJson.toJSON = () => 'replaced'
    assert.equal(toJson(withToJson, 'send()'), '"replaced"')
    assert.throws(() => toJson(['e', 1n], (args) => `send(${JSON.stringify(args[0])})`), /send\("e"\): the arguments cannot be sent as JSON/)
  })

  it('checks each string, whatever came before (the last safe name and argument are remembered)', () => {
    // Strings needing escapes after safe ones of the same length and text
    // up to one character, as names and as arguments, in every order.
    const safe = ['ab"', 'ab\\', 'ab\n', 'ab\u0000', 'ab\ud800', 'abc', 'abc', 'x'.repeat(300), 'x'.repeat(299) + '"']
    for (const a of safe) {
      for (const b of safe) {
        for (const args of [[a, b], [b, a], [a, a, b], [a, 1, b, b], [a], [a, b, a], [a, b, 1]]) {
          assert.equal(toJson(args, 'send()'), JSON.stringify(args))
          assert.equal(toJson(args, 'send()', '\na7'), '\na7' + JSON.stringify(args))
          const json = flatJson(args)
          if (json !== undefined) assert.equal(json, JSON.stringify(args))
        }
      }
    }
  })
})

describe('send()\'s lines written by the outbox (lib/outbox.js)', () => {
  // putSend's line for `args` (up to three) from a fresh outbox, or
  // undefined when it leaves them to the general path.
  const emitter = { _h: 1 }
  function lineOf (seq, args, maxJson = Infinity, by = emitter) {
    assert.ok(outbox.isEmpty(), 'nothing queued by an earlier test')
    const written = outbox.putSend(by, seq, args.length, args[0], args[1], args[2], maxJson)
    const o = outbox.take()
    const text = o.buf.toString('utf8', 0, o.used)
    outbox.release(o)
    assert.equal(text === '', !written)
    return written ? text : undefined
  }
  // ASCII from the space up (DEL too), no quote or backslash, up to 256 characters.
  const writable = (v) => typeof v !== 'string' ? v === null || typeof v === 'number' || typeof v === 'boolean' : v.length <= 256 && /^[ !#-[\]-\u007f]*$/.test(v)

  it('writes JSON.stringify\'s text for flat arguments, and leaves everything else', () => {
    const strings = ['', 'e', 'x'.repeat(39), 'x'.repeat(256), 'x'.repeat(257), '~\u007f', 'é中', '"', '\\', '\n', '\u0000', '\u001f', '\u2028', '\ud83d\ude00', '\ud800', '</script>']
    const numbers = [0, -0, 1, -5, 7.5, 0.1, -1e-7, 1e21, 123456789012, 2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 53, -(2 ** 60), NaN, Infinity, -Infinity]
    const others = [true, false, null, undefined, {}, [1], { toJSON: () => 'j' }, Object('s'), Object(1), () => 1]
    const values = [...strings, ...numbers, ...others]
    let written = 0
    for (const name of ['e', 'x'.repeat(256), 'a"b', 'é']) {
      for (const a of values) {
        for (const b of values) {
          for (const args of [[name], [name, a], [name, a, b]]) {
            const line = lineOf(-1, args)
            const expected = args.every(writable) ? '\ne' + JSON.stringify(args) : undefined
            assert.equal(line, expected, JSON.stringify(args))
            if (line !== undefined) written++
          }
        }
      }
    }
    assert.ok(written > 2000)
  })

  it('writes the digits of integers of every length as JSON does, around each power of ten and the int32 bounds', () => {
    const integers = [2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, -(2 ** 31), -(2 ** 31) - 1]
    for (let k = 0; k <= 15; k++) integers.push(10 ** k - 1, 10 ** k, 10 ** k + 1, 10 ** k * 7 + 3)
    for (const n of [...integers, ...integers.map((n) => -n)]) {
      // As a sequence number too (non-negative ones).
      assert.equal(lineOf(-1, ['e', n]), `\ne["e",${JSON.stringify(n)}]`)
      if (n >= 0) assert.equal(lineOf(n, ['e']), `\na${n}["e"]`)
    }
  })

  it('copies a repeated string from its last bytes, short or long, and checks a new one afresh', () => {
    const long = 'p'.repeat(39)
    for (const [name, arg] of [['e', long], ['e', long], ['eventname', 'x'], ['eventname', 'x'], ['e', long + '"'], ['e', long]]) {
      const expected = '\ne' + JSON.stringify([name, arg, arg])
      // A quote is JSON.stringify's to escape: the general path's.
      assert.equal(lineOf(-1, [name, arg, arg]), arg.includes('"') ? undefined : expected)
    }
  })

  it('tags a line with its sequence number, implicit after a numbered line of the same emitter', () => {
    const other = { _h: 2 }
    const put = (by, seq) => assert.ok(outbox.putSend(by, seq, 2, 'e', seq, undefined, Infinity))
    assert.ok(outbox.isEmpty())
    put(emitter, 41)
    put(emitter, 42)
    put(emitter, -1)
    put(emitter, 43)
    put(other, 7)
    put(emitter, 44)
    outbox.putText(emitter, '\ns["k",1]', false)
    put(emitter, 45)
    put(emitter, 9007199254740991)
    const o = outbox.take()
    assert.equal(o.count, 3)
    assert.deepEqual(o.emitters.slice(0, 3), [emitter, other, emitter])
    const segment = (i) => o.buf.toString('utf8', o.starts[i], i + 1 < o.count ? o.starts[i + 1] : o.used)
    assert.equal(segment(0), '\na41["e",41]\nA["e",42]\ne["e",-1]\nA["e",43]')
    assert.equal(segment(1), '\na7["e",7]')
    assert.equal(segment(2), '\na44["e",44]\ns["k",1]\nA["e",45]\nA["e",9007199254740991]')
    assert.equal(o.lines, 9)
    outbox.release(o)
    // Taken: the next numbered line is explicit again.
    assert.equal(lineOf(46, ['e']), '\na46["e"]')
    assert.equal(o.count, 0, 'released empty')
  })

  it('is read by Rust in place: a range outside the buffer, or bytes that are not UTF-8, are refused; a closed connection gives its lines back', () => {
    const { native } = require('../lib/native')
    const line = Buffer.from('\ne["e"]')
    assert.throws(() => native.write(0, line, 0, 99), /lines 0\.\.99 are outside the buffer \(7 bytes\)/)
    assert.throws(() => native.write(0, line, 5, 2), /outside the buffer/)
    assert.throws(() => native.write(0, Buffer.from([10, 101, 0xff]), 0, 3), /lines are not UTF-8/)
    // A valid range reaches the handle's lookup: no connection has handle
    // 0, so the lines come back as the numbers of the callbacks they owe.
    assert.deepEqual(native.write(0, line, 0, 7), [-1])
    const batch = Buffer.from('\na5["e"]\nA["e"]\ne["e"]\ns["k",1]\nd9["e"]\nA["e"]\nr{}\nax["e"]')
    assert.deepEqual(native.write(0, batch, 0, batch.length), [5, 6, -1, -1, 9, 10, -1, -1])
  })

  it('leaves a message over maxJson bytes to the general path, which refuses it', () => {
    const args = ['e', 'x'.repeat(100), 'é'.length]
    const size = Buffer.byteLength(JSON.stringify(args))
    assert.equal(lineOf(3, args, size), '\na3' + JSON.stringify(args))
    assert.equal(lineOf(3, args, size - 1), undefined)
  })

  it('grows its buffer for a long run of lines, and lets an outsized one go once flushed', () => {
    assert.ok(outbox.isEmpty())
    const expected = []
    const long = 'y'.repeat(200)
    for (let i = 0; i < 5000; i++) {
      assert.ok(outbox.putSend(emitter, -1, 3, 'e', i, long, Infinity))
      expected.push('\ne' + JSON.stringify(['e', i, long]))
      if (i % 1000 === 0) {
        const raw = '\nr' + JSON.stringify({ é: '中'.repeat(i) })
        outbox.putText(emitter, raw, false)
        expected.push(raw)
      }
    }
    const o = outbox.take()
    assert.ok(o.buf.length > 1024 * 1024)
    assert.equal(o.buf.toString('utf8', 0, o.used), expected.join(''))
    outbox.release(o)
    assert.ok(o.buf.length <= 1024 * 1024, 'a buffer grown past 1 MB is let go')
    assert.equal(lineOf(-1, ['e', 1]), '\ne["e",1]')
  })
})
