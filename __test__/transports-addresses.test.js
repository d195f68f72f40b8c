'use strict'
// Addresses: IPv6 ::1, the host name localhost, the listen(0) forms, and the
// socket address fields of native connections. Only 127.0.0.1 and ::1 are
// used, except `listen(0, cb)`, which by definition binds the unspecified
// address (it is closed again at once).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  installExitWatchdog, HOST, useResources, waitHandshake, withTimeout, exchange, listenAndWait,
} = require('./helpers')

installExitWatchdog()

const TEST_OPTS = { timeout: 20000 }
const WAIT = 5000

// The address fields of two native sockets that face each other.
function assertFacing (client, conn, { host, port, family }) {
  const c = client.socket
  const s = conn.socket
  assert.equal(c.remoteAddress, host, 'client.socket.remoteAddress')
  assert.equal(c.remotePort, port, 'client.socket.remotePort')
  assert.equal(c.localAddress, host, 'client.socket.localAddress')
  assert.ok(Number.isInteger(c.localPort) && c.localPort > 0, `client.socket.localPort ${c.localPort}`)
  assert.equal(s.localAddress, host, 'conn.socket.localAddress')
  assert.equal(s.localPort, port, 'conn.socket.localPort')
  assert.equal(s.remoteAddress, host, 'conn.socket.remoteAddress')
  assert.equal(s.remotePort, c.localPort, 'conn.socket.remotePort is the client\'s local port')
  if (family) {
    assert.equal(c.remoteFamily, family, 'client.socket.remoteFamily')
    assert.equal(s.remoteFamily, family, 'conn.socket.remoteFamily')
  }
}

describe('addresses', () => {
  it("IPv6: listen(port, '::1') + createClient(port, '::1')", TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = r.createServer('ours')
    await listenAndWait(srv.server, 0, '::1')
    const addr = srv.server.address()
    assert.equal(addr.address, '::1')
    assert.equal(addr.family, 'IPv6')
    assert.ok(addr.port > 0)
    const client = r.createClient('ours', addr.port, '::1')
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    assertFacing(client, conn, { host: '::1', port: addr.port, family: 'IPv6' })
    await exchange(client, conn)
    // An old client over IPv6 too.
    const old = r.createClient('v0.1.2', addr.port, '::1')
    await waitHandshake('v0.1.2', old)
    const { conn: conn2 } = await srv.waitConnection(1)
    assert.equal(conn2.socket.remoteAddress, '::1')
    assert.equal(conn2.socket.remotePort, old.socket.localPort)
    await exchange(old, conn2)
    r.assertNoErrors()
  })

  it('the host name localhost, for listen() and createClient()', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = r.createServer('ours')
    await listenAndWait(srv.server, 0, 'localhost')
    const addr = srv.server.address()
    assert.ok(['127.0.0.1', '::1'].includes(addr.address), `bound to a loopback address: ${JSON.stringify(addr)}`)
    assert.ok(addr.port > 0)
    const client = r.createClient('ours', addr.port, 'localhost')
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    assert.equal(conn.socket.localPort, addr.port)
    assert.equal(client.socket.remotePort, addr.port)
    await exchange(client, conn)
    const c2 = r.createClient('ours', { host: 'localhost', port: String(addr.port) })
    await waitHandshake('ours', c2)
    await srv.waitConnection(1)
    r.assertNoErrors()
  })

  it("listen(0, '127.0.0.1'): address() reports the chosen port; socket address fields are set", TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = r.createServer('ours')
    assert.equal(srv.server.address(), null, 'no address before listening')
    await listenAndWait(srv.server, 0, HOST)
    const addr = srv.server.address()
    assert.deepEqual(Object.keys(addr).sort(), ['address', 'family', 'port'])
    assert.equal(addr.address, HOST)
    assert.equal(addr.family, 'IPv4')
    assert.ok(Number.isInteger(addr.port) && addr.port > 0)
    const client = r.createClient('ours', addr.port, HOST)
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    assertFacing(client, conn, { host: HOST, port: addr.port, family: 'IPv4' })
    assert.deepEqual(client.socket.address(), { address: HOST, port: client.socket.localPort, family: 'IPv4' })
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it("listen({ port: 0, host: '127.0.0.1' }, cb)", TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = r.createServer('ours')
    await listenAndWait(srv.server, { port: 0, host: HOST })
    const addr = srv.server.address()
    assert.equal(addr.address, HOST)
    assert.equal(addr.family, 'IPv4')
    assert.ok(addr.port > 0)
    const client = r.createClient('ours', { port: addr.port, host: HOST })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    assertFacing(client, conn, { host: HOST, port: addr.port })
    r.assertNoErrors()
  })

  it('listen(0, cb): the callback runs and address() has the chosen port', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = r.createServer('ours')
    let called = 0
    await withTimeout(new Promise((resolve, reject) => {
      srv.server.once('error', reject)
      srv.server.listen(0, () => { called++; resolve() })
    }), WAIT, 'listen(0, cb)')
    assert.equal(called, 1)
    const addr = srv.server.address()
    assert.ok(Number.isInteger(addr.port) && addr.port > 0, JSON.stringify(addr))
    assert.ok(['0.0.0.0', '::'].includes(addr.address), `the unspecified address: ${JSON.stringify(addr)}`)
    const client = r.createClient('ours', addr.port, HOST)
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    assert.equal(conn.socket.localPort, addr.port)
    assert.equal(conn.socket.remoteAddress, HOST)
    r.assertNoErrors()
    await srv.close() // at once: this one listens on every interface
  })
})
