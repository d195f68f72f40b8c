'use strict'
// The delivery tests' own tools (__test__/delivery-*.test.js): our server and
// client closed after the test, fixture processes, accounting of integer
// streams and of ack callbacks, and a proxy that holds what the server sends.

const net = require('node:net')
const path = require('node:path')
const { HOST } = require('./net')
const { withTimeout } = require('./wait')
const { spawnNode } = require('./process')

const U = require('../..')
const FIXTURES = path.join(__dirname, '..', 'fixtures')
const DROPPED = 'ERR_UHURA_DROPPED'
const RAW_HANDSHAKE = '[\n["_set","sessionID","AAAAAAAAAAAAAAAAAAAAAAAA"]\n,\n{"args":["connect",{"objectMode":true,"enableAcks":true}]}'

const immediate = () => new Promise((resolve) => setImmediate(resolve))

/** Starts one of our servers on HOST; closes it (and its connections) after the test. */
async function startServer (t, options, onConnection, port = 0) {
  const server = U.createServer(options || {}, onConnection)
  const conns = []
  server.on('handshake', (conn) => conns.push(conn))
  await withTimeout(new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, HOST, () => {
      server.removeListener('error', reject)
      resolve()
    })
  }), 5000, 'our server to listen')
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    for (const c of conns) {
      try { c.socket.destroy() } catch (_) {}
    }
    await withTimeout(new Promise((resolve) => server.close(() => resolve())), 10000, 'server.close()')
  }
  t.after(close)
  return { server, port: server.address().port, conns, close }
}

/** Creates one of our clients; disconnects it after the test. */
function makeClient (t, options) {
  const client = U.createClient(Object.assign({ host: HOST }, options))
  const errors = []
  client.on('error', (e) => errors.push(e))
  t.after(() => {
    try { client.disconnect() } catch (_) {}
    try { client.socket.destroy() } catch (_) {}
  })
  return { client, errors }
}

/** Spawns a fixture script; it is SIGKILLed (if still alive) after the test. */
function spawnFixture (t, name, cfg) {
  return spawnNode(t, [path.join(FIXTURES, name), JSON.stringify(cfg)], { name })
}

/**
 * Accounting of one stream of integers 0..n-1: how often each arrived, and
 * whether they arrived as exactly 0, 1, 2, ... (in order, once each).
 */
function makeTally (n) {
  const count = new Uint8Array(n)
  const tally = {
    n,
    count,
    received: 0,
    unique: 0,
    duplicates: 0,
    outOfOrder: 0,
    invalid: 0,
    firstViolation: null,
    on (i) {
      if (!Number.isInteger(i) || i < 0 || i >= n) {
        tally.invalid++
        if (tally.firstViolation === null) tally.firstViolation = `invalid value ${JSON.stringify(i)} at position ${tally.received}`
        tally.received++
        return
      }
      if (count[i] < 255) count[i]++
      if (count[i] > 1) tally.duplicates++
      else tally.unique++
      if (i !== tally.received && tally.firstViolation === null) {
        tally.firstViolation = `position ${tally.received}: got ${i}${count[i] > 1 ? ' (a duplicate)' : ''}`
      }
      if (i !== tally.received) tally.outOfOrder++
      tally.received++
    },
    lost () {
      let lost = 0
      for (let i = 0; i < n; i++) if (count[i] === 0) lost++
      return lost
    },
    firstLost () {
      for (let i = 0; i < n; i++) if (count[i] === 0) return i
      return -1
    },
    summary (sent) {
      return `sent ${sent}, received ${tally.received}, unique ${tally.unique}, duplicated ${tally.duplicates}, ` +
        `lost ${tally.lost()}, out of order ${tally.outOfOrder}, invalid ${tally.invalid}` +
        (tally.firstViolation ? ` (first violation: ${tally.firstViolation})` : '')
    },
  }
  return tally
}

/** Per-index accounting of ack callbacks. */
function makeCallbacks (n) {
  const calls = new Uint8Array(n)
  const cb = {
    calls,
    ok: 0,
    errors: [],
    extraCalls: 0,
    make (i) {
      return (err) => {
        if (calls[i] < 255) calls[i]++
        if (calls[i] > 1) cb.extraCalls++
        if (err) cb.errors.push({ i, err })
        else cb.ok++
      }
    },
    called () {
      let k = 0
      for (let i = 0; i < n; i++) if (calls[i] > 0) k++
      return k
    },
    summary (of = n) {
      const codes = {}
      for (const { err } of cb.errors) codes[err.code || err.message] = (codes[err.code || err.message] || 0) + 1
      return `callbacks: ${cb.called()} of ${of} called, ${cb.ok} ok, ${cb.errors.length} with an error ${JSON.stringify(codes)}, ${cb.extraCalls} extra calls`
    },
  }
  return cb
}

/**
 * A TCP proxy to 127.0.0.1:target. hold() makes the current pair keep what
 * the server sends instead of forwarding it; release() discards that, drops
 * the pair and goes back to forwarding (for the next pairs). Returns the
 * number of bytes it held.
 */
async function holdingProxy (t, target) {
  const pairs = new Set()
  let holding = null
  const server = net.createServer((down) => {
    const up = net.connect(target, '127.0.0.1')
    const pair = { down, up, held: 0, hold: false }
    pairs.add(pair)
    const end = () => {
      pairs.delete(pair)
      down.destroy()
      up.destroy()
    }
    down.on('error', end)
    up.on('error', end)
    down.on('close', end)
    up.on('close', end)
    down.on('data', (d) => up.write(d))
    up.on('data', (d) => {
      if (pair.hold) pair.held += d.length
      else down.write(d)
    })
  })
  await new Promise((resolve) => server.listen(0, HOST, resolve))
  t.after(() => withTimeout(new Promise((resolve) => {
    for (const p of pairs) { p.down.destroy(); p.up.destroy() }
    server.close(() => resolve())
  }), 5000, 'proxy close'))
  return {
    port: server.address().port,
    hold () {
      for (const p of pairs) {
        p.hold = true
        holding = p
      }
    },
    release () {
      const held = holding ? holding.held : 0
      for (const p of pairs) { p.down.destroy(); p.up.destroy() }
      pairs.clear()
      holding = null
      return held
    },
  }
}

module.exports = {
  DROPPED,
  RAW_HANDSHAKE,
  immediate,
  startServer,
  makeClient,
  spawnFixture,
  makeTally,
  makeCallbacks,
  holdingProxy,
}
