'use strict'
// The original's factory hooks (server `createServer: factory(options,
// onStream)`, client `createConnection(options, cb)`) with net and with an
// in-memory duplex pair: traffic, delegation of listen/address/close,
// reconnects, and 0.1.2 interop. Failures: transports-factory-failures.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const {
  installExitWatchdog, HOST, SESSION_ID_RE, useResources, waitFor, waitUntil, waitHandshake, withTimeout,
  delay, UNICODE, sendAcked, exchange, disconnectAndCheck, FACTORY_TRANSPORTS,
} = require('./helpers')

installExitWatchdog()

const TEST_OPTS = { timeout: 20000 }
const WAIT = 5000

describe('factory hooks: createServer / createConnection', () => {
  for (const [name, tr] of Object.entries(FACTORY_TRANSPORTS)) {
    it(`${name}: events both ways, acks, set/get, sessionID, disconnect; .socket is the real stream`, TEST_OPTS, async (t) => {
      const r = useResources(t)
      const env = await tr.setup(r, t)
      const { srv } = env
      // The server factory was called once, as the original calls it.
      assert.equal(env.serverFactoryCalls.length, 1)
      assert.equal(typeof env.serverFactoryCalls[0][1], 'function', 'factory(options, onStream)')
      assert.equal(env.serverFactoryCalls[0][0], srv.server.options, 'the factory gets the server options')
      assert.equal(srv.server.listening, true)

      const client = r.createClient('ours', env.clientOptions({ marker: 'mine' }))
      await waitHandshake('ours', client)
      const { conn, reconnect } = await srv.waitConnection(0)
      assert.equal(reconnect, undefined, 'a new session')
      assert.equal(env.clientCalls.length, 1)
      assert.equal(env.clientCalls[0].marker, 'mine', 'createConnection gets the client options')
      assert.ok(client.socket instanceof env.StreamClass, `client.socket is the factory's stream (${client.socket && client.socket.constructor.name})`)
      assert.ok(conn.socket instanceof env.StreamClass, `conn.socket is the factory's stream (${conn.socket && conn.socket.constructor.name})`)
      assert.equal(client.ready, true)
      assert.equal(client.objectMode, true)
      assert.equal(client.enableAcks, true)
      if (name === 'net') {
        assert.equal(client.socket.remotePort, srv.port)
        assert.equal(conn.socket.localPort, srv.port)
        assert.equal(conn.socket.remotePort, client.socket.localPort)
      } else {
        assert.equal(env.mem.streams.includes(client.socket), true)
        assert.equal(env.mem.streams.includes(conn.socket), true)
      }
      await exchange(client, conn)
      await disconnectAndCheck(client, conn, { clientStream: client.socket, serverStream: conn.socket })
      await delay(150)
      assert.equal(env.clientCalls.length, 1, 'no reconnect after disconnect()')
      r.assertNoErrors()
    })

    it(`${name}: listen/address/close delegate to the factory's server`, TEST_OPTS, async (t) => {
      const r = useResources(t)
      const env = await tr.setup(r, t)
      const { srv } = env
      const server = srv.server
      if (name === 'net') {
        const addr = server.address()
        assert.equal(addr.address, HOST)
        assert.equal(addr.family, 'IPv4')
        assert.ok(addr.port > 0)
      } else {
        assert.deepEqual(env.mem.calls.listen.length, 1)
        assert.deepEqual(env.mem.calls.listen[0].slice(0, 2), [0, HOST], 'listen arguments passed through')
        assert.deepEqual(server.address(), { address: 'memory', family: 'memory', port: 0 })
      }
      // A client works, then close(cb) closes the factory's server and fires 'close'.
      const client = r.createClient('ours', env.clientOptions())
      await waitHandshake('ours', client)
      const { conn } = await srv.waitConnection(0)
      await exchange(client, conn)
      client.disconnect()
      await waitFor(conn, 'disconnect', WAIT)
      const closeEvent = waitFor(server, 'close', WAIT, { label: 'uhura server' })
      await withTimeout(new Promise((resolve) => server.close(resolve)), WAIT, 'server.close(cb)')
      await closeEvent
      srv.closed = true
      assert.equal(server.listening, false)
      if (name === 'net') {
        // Nothing listens on the port any more.
        const s = net.connect(srv.port, HOST)
        const [err] = await waitFor(s, 'error', WAIT)
        assert.equal(err.code, 'ECONNREFUSED')
      }
      r.assertNoErrors()
    })

    it(`${name}: a reconnect calls the factory again and resumes the session`, TEST_OPTS, async (t) => {
      const r = useResources(t)
      const whileDown = []
      const env = await tr.setup(r, t, {
        onConnection: (conn) => conn.on('while-down', (...args) => whileDown.push(args)),
      })
      const { srv } = env
      const client = r.createClient('ours', env.clientOptions())
      client.autoReconnect(10, 50)
      await waitHandshake('ours', client)
      const { conn: conn1 } = await srv.waitConnection(0)
      const sid = client.get('sessionID')
      assert.match(String(sid), SESSION_ID_RE)
      client.set('kept', 'ü')
      await waitUntil(() => conn1.get('kept') === 'ü', WAIT, 'the server to see kept')
      const stream1 = client.socket
      const serverStream1 = conn1.socket

      // The server destroys its stream; the client comes back by itself.
      const clientDown = waitFor(client, 'disconnect', WAIT, { label: 'client' })
      const serverDown = waitFor(conn1, 'disconnect', WAIT, { label: 'server connection #1' })
      serverStream1.destroy()
      await Promise.all([clientDown, serverDown])
      // Sent while down: queued, delivered once the session is resumed.
      const queuedAck = sendAcked(client, 'while-down', UNICODE)
      const { conn: conn2, reconnect } = await srv.waitConnection(1)
      assert.equal(reconnect, true, 'the server sees a resumed session')
      await queuedAck
      assert.deepEqual(whileDown, [[UNICODE]], 'the queued event arrived once')

      assert.equal(env.clientCalls.length, 2, 'createConnection was called once per connection')
      assert.equal(client.get('sessionID'), sid, 'same session id on the client')
      assert.equal(conn2.sessionID, sid, 'same session id on the server')
      assert.equal(conn2.get('kept'), 'ü', 'the session was resumed')
      assert.notEqual(client.socket, stream1, 'client.socket is the new stream')
      assert.ok(client.socket instanceof env.StreamClass)
      assert.ok(conn2.socket instanceof env.StreamClass)
      assert.notEqual(conn2.socket, serverStream1)
      await waitUntil(() => client.ready, WAIT, 'client.ready')
      await exchange(client, conn2)
      await disconnectAndCheck(client, conn2, { clientStream: client.socket, serverStream: conn2.socket })
      await delay(150)
      assert.equal(env.clientCalls.length, 2, 'no reconnect after disconnect()')
      r.assertNoErrors()
    })
  }

  it('memory: an event queued while down reaches the resumed connection exactly once', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const got = []
    const env = await FACTORY_TRANSPORTS.memory.setup(r, t, {
      onConnection: (conn) => conn.on('queued', (i) => got.push(i)),
    })
    const client = r.createClient('ours', env.clientOptions())
    client.autoReconnect(10, 50)
    await waitHandshake('ours', client)
    const { conn } = await env.srv.waitConnection(0)
    const down = waitFor(client, 'disconnect', WAIT)
    conn.socket.destroy()
    await down
    const acks = []
    for (let i = 0; i < 50; i++) acks.push(sendAcked(client, 'queued', i))
    await Promise.all(acks)
    await env.srv.waitConnection(1)
    await delay(100)
    assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => i))
    assert.equal(env.mem.calls.client.length, 2)
    r.assertNoErrors()
  })

  it('memory: client.reconnect() and invalidateSession() each call the factory again', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const env = await FACTORY_TRANSPORTS.memory.setup(r, t)
    const client = r.createClient('ours', env.clientOptions())
    client.autoReconnect(10, 50)
    await waitHandshake('ours', client)
    await env.srv.waitConnection(0)
    const sid = client.get('sessionID')

    // reconnect(cb): a new stream, the same session.
    await withTimeout(new Promise((resolve) => client.reconnect(resolve)), WAIT, 'reconnect(cb)')
    const { conn: conn2, reconnect } = await env.srv.waitConnection(1)
    assert.equal(reconnect, true)
    assert.equal(env.clientCalls.length, 2)
    assert.equal(client.get('sessionID'), sid)
    assert.equal(conn2.sessionID, sid)

    // invalidateSession(): the client drops, comes back with a new session.
    const invalidated = waitFor(client, 'invalidateSession', WAIT)
    conn2.invalidateSession()
    await invalidated
    const { conn: conn3, reconnect: reconnect3 } = await env.srv.waitConnection(2)
    assert.equal(reconnect3, undefined, 'a new session')
    await waitUntil(() => client.ready && client.get('sessionID'), WAIT, 'the client to have a new session')
    assert.equal(env.clientCalls.length, 3)
    assert.notEqual(client.get('sessionID'), sid)
    assert.equal(conn3.sessionID, client.get('sessionID'))
    await exchange(client, conn3)
    r.assertNoErrors()
  })

  it('a factory that returns the stream (instead of calling back) is accepted', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { createServer: net.createServer } })
    let calls = 0
    const client = r.createClient('ours', {
      host: HOST,
      port: srv.port,
      createConnection: (o) => { calls++; return net.connect(o.port, o.host) },
    })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    assert.equal(calls, 1)
    assert.ok(client.socket instanceof net.Socket)
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('mixed: our server (net factory) <-> a uhura@0.1.2 client', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { createServer: net.createServer } })
    const client = r.createClient('v0.1.2', srv.port, HOST)
    await waitHandshake('v0.1.2', client)
    const { conn, reconnect } = await srv.waitConnection(0)
    assert.equal(reconnect, undefined)
    assert.ok(conn.socket instanceof net.Socket)
    assert.equal(conn.socket.remotePort, client.socket.localPort)
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('mixed: a uhura@0.1.2 client with createConnection -> our server (net factory)', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { createServer: net.createServer } })
    const port = srv.port
    const client = r.createClient('v0.1.2', { port, host: HOST, createConnection: (o, cb) => cb(null, net.connect(o.port, o.host)) })
    await waitHandshake('v0.1.2', client)
    const { conn } = await srv.waitConnection(0)
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('mixed: a uhura@0.1.2 server <-> our client (createConnection -> net.connect)', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('v0.1.2', { options: { createServer: net.createServer } })
    let calls = 0
    const client = r.createClient('ours', {
      host: HOST,
      port: srv.port,
      createConnection: (o, cb) => { calls++; cb(null, net.connect(o.port, o.host)) },
    })
    client.autoReconnect(10, 50)
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    assert.ok(client.socket instanceof net.Socket)
    assert.equal(client.socket.remotePort, srv.port)
    await exchange(client, conn)
    // The 0.1.2 server drops the socket: our client calls the factory again
    // and the 0.1.2 server resumes the session.
    const sid = client.get('sessionID')
    conn.socket.destroy()
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    assert.equal(reconnect, true)
    assert.equal(conn2.get('sessionID'), sid)
    await waitUntil(() => client.ready, WAIT, 'client.ready')
    assert.equal(calls, 2)
    assert.equal(client.get('sessionID'), sid)
    await exchange(client, conn2)
    r.assertNoErrors()
  })
})
