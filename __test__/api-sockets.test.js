'use strict'
// The public API of ours: the sockets and error logging.
//
// UHURA_TEST_OLD_ONLY=1 runs the same bodies against 0.1.2 to validate the
// test logic; what 0.1.2 cannot do is skipped with the reason (it has
// no server logErrors option).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  OLD_ONLY, HOST, useResources, waitFor, delay, installExitWatchdog, pingPong, roundTrip,
} = require('./helpers')

installExitWatchdog()

const IMPL = OLD_ONLY ? 'v0.1.2' : 'ours'
const OLD = IMPL !== 'ours'
const T = { timeout: 20000 }
const oldSkip = (reason) => ({ ...T, skip: OLD ? `0.1.2: ${reason}` : false })

describe(`${IMPL}: sockets and errors`, () => {
  it('socket addresses and ports match on both ends; socket methods exist', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer(IMPL, { onConnection: pingPong })
    const client = await r.connectClient(IMPL, srv.port)
    const { conn } = await srv.waitConnection(0)
    const cs = client.socket
    const ss = conn.socket
    assert.equal(cs.remoteAddress, HOST)
    assert.equal(cs.remotePort, srv.port)
    assert.equal(cs.localAddress, HOST)
    assert.ok(Number.isInteger(cs.localPort) && cs.localPort > 0)
    assert.equal(ss.remoteAddress, HOST)
    assert.equal(ss.remotePort, cs.localPort)
    assert.equal(ss.localAddress, HOST)
    assert.equal(ss.localPort, srv.port)
    for (const s of [cs, ss]) {
      for (const m of ['destroy', 'end', 'write', 'setNoDelay', 'setKeepAlive', 'ref', 'unref', 'emit', 'on']) {
        assert.equal(typeof s[m], 'function', `socket.${m}`)
      }
      s.setNoDelay(true)
      s.setKeepAlive(true, 1000)
      s.unref()
      s.ref()
    }
    await roundTrip(client, 6)
  })

  it('socket.write() puts raw bytes on the wire', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer(IMPL, { onConnection: (conn) => conn.on('rawUp', (...a) => conn.send('rawUpSeen', ...a)) })
    const client = await r.connectClient(IMPL, srv.port)
    const { conn } = await srv.waitConnection(0)
    await delay(50) // let the handshake writes drain
    // The streams are open JSON arrays with at least one message each.
    const down = waitFor(client, 'rawDown', 5000, { label: 'client (rawDown)' })
    conn.socket.write('\n,\n["rawDown","hé😀",{"a":[1]}]')
    assert.deepStrictEqual(await down, ['hé😀', { a: [1] }])
    const up = waitFor(client, 'rawUpSeen', 5000, { label: 'client (rawUpSeen)' })
    client.socket.write(Buffer.from('\n,\n["rawUp",42]'))
    assert.deepStrictEqual(await up, [42])
  })

  it("socket.emit('error', err) reaches the owner's 'error' event", T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer(IMPL)
    const client = await r.connectClient(IMPL, srv.port)
    const { conn } = await srv.waitConnection(0)
    const e1 = new Error('x')
    const connErr = waitFor(conn, 'error', 5000, { label: 'server connection (error)' })
    conn.socket.emit('error', e1)
    const [got1] = await connErr
    assert.equal(got1 && got1.message, 'x')
    const e2 = new Error('y')
    const clientErr = waitFor(client, 'error', 5000, { label: 'client (error)' })
    client.socket.emit('error', e2)
    const [got2] = await clientErr
    assert.equal(got2 && got2.message, 'y')
  })

  async function captureConsoleError (t, fn) {
    const lines = []
    const orig = console.error
    console.error = (...args) => { lines.push(args.map(String).join(' ')) }
    try {
      await fn()
      await delay(100)
    } finally {
      console.error = orig
    }
    return lines
  }

  it('server option logErrors prints err.stack of connection errors; without it nothing is printed', oldSkip('no server logErrors option'), async (t) => {
    const r = useResources(t)
    const loud = await r.startServer(IMPL, { options: { logErrors: true } })
    const quiet = await r.startServer(IMPL)
    await r.connectClient(IMPL, loud.port)
    await r.connectClient(IMPL, quiet.port)
    const { conn: loudConn } = await loud.waitConnection(0)
    const { conn: quietConn } = await quiet.waitConnection(0)
    const err = new Error('logged-on-purpose ' + Math.random())
    const quietErr = new Error('not-logged ' + Math.random())
    const lines = await captureConsoleError(t, async () => {
      const a = waitFor(loudConn, 'error', 5000)
      loudConn.socket.emit('error', err)
      await a
      const b = waitFor(quietConn, 'error', 5000)
      quietConn.socket.emit('error', quietErr)
      await b
    })
    assert.ok(lines.some((l) => l.includes(err.stack)), `console.error must print err.stack; got ${JSON.stringify(lines)}`)
    assert.ok(!lines.some((l) => l.includes(quietErr.message)), 'without logErrors nothing is printed')
  })

  it('client.logErrors = true prints err.stack; the default prints nothing', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer(IMPL)
    const loud = await r.connectClient(IMPL, srv.port)
    const quiet = await r.connectClient(IMPL, srv.port)
    loud.logErrors = true
    const err = new Error('client-logged ' + Math.random())
    const quietErr = new Error('client-not-logged ' + Math.random())
    const lines = await captureConsoleError(t, async () => {
      const a = waitFor(loud, 'error', 5000)
      loud.socket.emit('error', err)
      await a
      const b = waitFor(quiet, 'error', 5000)
      quiet.socket.emit('error', quietErr)
      await b
    })
    assert.ok(lines.some((l) => l.includes(err.stack)), `console.error must print err.stack; got ${JSON.stringify(lines)}`)
    assert.ok(!lines.some((l) => l.includes(quietErr.message)), 'without logErrors nothing is printed')
  })
})
