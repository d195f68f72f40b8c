'use strict'
// The public API of ours: the exports, server listen forms and lifecycle.
//
// UHURA_TEST_OLD_ONLY=1 runs the same bodies against 0.1.2 to validate the
// test logic; what 0.1.2 cannot do is skipped with the reason (its
// createServer returns a net.Server).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const { EventEmitter } = require('node:events')
const {
  OLD_ONLY, HOST, SESSION_ID_RE, IMPLS, useResources, waitFor, waitUntil, withTimeout, installExitWatchdog, pingPong, roundTrip,
} = require('./helpers')

installExitWatchdog()

const IMPL = OLD_ONLY ? 'v0.1.2' : 'ours'
const OLD = IMPL !== 'ours'
const T = { timeout: 20000 }
const oldSkip = (reason) => ({ ...T, skip: OLD ? `0.1.2: ${reason}` : false })

function ipv6Available () {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(0, '::1', () => s.close(() => resolve(true)))
  })
}

describe(`${IMPL}: exports`, () => {
  it('exports createServer, createClient, Client and Server', T, () => {
    const U = IMPLS[IMPL]()
    assert.equal(typeof U.createServer, 'function')
    assert.equal(typeof U.createClient, 'function')
    assert.equal(typeof U.Client, 'function')
    assert.equal(typeof U.Server, 'function')
  })

  it('createServer returns a Server that is an EventEmitter; createClient returns a Client', oldSkip('createServer returns a net.Server'), async (t) => {
    const r = useResources(t)
    const U = IMPLS[IMPL]()
    const srv = await r.startServer(IMPL, { onConnection: pingPong })
    assert.ok(srv.server instanceof U.Server, 'server instanceof Uhura.Server')
    assert.ok(srv.server instanceof EventEmitter, 'server instanceof EventEmitter')
    const client = await r.connectClient(IMPL, srv.port)
    assert.ok(client instanceof U.Client, 'client instanceof Uhura.Client')
    assert.ok(client instanceof EventEmitter, 'client instanceof EventEmitter')
  })
})

describe(`${IMPL}: server.listen forms, address(), close(), errors`, () => {
  // Each form: `listening` fires, the callback (if any) runs once, address()
  // reports the bound port (and host), and a client can round-trip an event.
  const FORMS = [
    { name: 'listen(port)', call: (s) => s.listen(0), cb: false, host: null },
    { name: 'listen(port, host)', call: (s) => s.listen(0, HOST), cb: false, host: HOST },
    { name: 'listen(port, host, cb)', call: (s, cb) => s.listen(0, HOST, cb), cb: true, host: HOST },
    { name: 'listen(port, cb)', call: (s, cb) => s.listen(0, cb), cb: true, host: null },
    { name: 'listen({port, host})', call: (s) => s.listen({ port: 0, host: HOST }), cb: false, host: HOST },
    { name: 'listen({port, host}, cb)', call: (s, cb) => s.listen({ port: 0, host: HOST }, cb), cb: true, host: HOST },
    { name: 'listen(port, host, backlog, cb)', call: (s, cb) => s.listen(0, HOST, 511, cb), cb: true, host: HOST },
    { name: 'listen(port, "::1", cb) (IPv6)', call: (s, cb) => s.listen(0, '::1', cb), cb: true, host: '::1', v6: true },
  ]
  for (const f of FORMS) {
    it(`${f.name} emits 'listening'${f.cb ? ', calls cb' : ''} and serves clients`, T, async (t) => {
      if (f.v6 && !(await ipv6Available())) return t.skip('no IPv6 loopback on this machine')
      const r = useResources(t)
      const srv = r.createServer(IMPL, { onConnection: pingPong })
      if (!OLD) assert.equal(srv.server.address(), null, 'address() is null before listen')
      const listening = waitFor(srv.server, 'listening', 5000, { label: 'server (listening)' })
      let cbCalls = 0
      f.call(srv.server, () => cbCalls++)
      await listening
      if (f.cb) await waitUntil(() => cbCalls >= 1, 5000, 'the listen callback')
      const addr = srv.server.address()
      assert.ok(addr && Number.isInteger(addr.port) && addr.port > 0 && addr.port < 65536, `address().port: ${JSON.stringify(addr)}`)
      if (f.host) {
        assert.equal(addr.address, f.host)
        assert.equal(addr.family, f.v6 ? 'IPv6' : 'IPv4')
      }
      const client = await r.connectClient(IMPL, addr.port, f.v6 ? '::1' : HOST)
      await roundTrip(client, 1)
      assert.equal(cbCalls, f.cb ? 1 : 0, 'listen callback runs exactly once')
    })
  }

  it('close(cb) calls cb, emits close, and the port stops accepting', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer(IMPL, { onConnection: pingPong })
    const port = srv.port
    const closeEvent = waitFor(srv.server, 'close', 5000, { label: 'server (close)' })
    let cbCalls = 0
    srv.server.close(() => cbCalls++)
    await closeEvent
    await waitUntil(() => cbCalls === 1, 5000, 'the close callback')
    srv.closed = true
    const err = await withTimeout(new Promise((resolve) => {
      const s = net.connect(port, HOST)
      s.on('connect', () => { s.destroy(); resolve(null) })
      s.on('error', resolve)
    }), 5000, 'a connection attempt to the closed port')
    assert.ok(err, 'connecting to a closed server must fail')
    assert.equal(err.code, 'ECONNREFUSED')
  })

  it("listening on a port in use emits 'error' with code EADDRINUSE", T, async (t) => {
    const r = useResources(t)
    const a = await r.startServer(IMPL)
    const b = r.createServer(IMPL)
    const errP = waitFor(b.server, 'error', 5000, { label: 'second server (error)' })
    b.server.listen(a.port, HOST)
    const [err] = await errP
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'EADDRINUSE')
    b.closed = true // never listened
    // The first server is unaffected.
    const client = await r.connectClient(IMPL, a.port)
    assert.match(client.get('sessionID'), SESSION_ID_RE)
  })
})
