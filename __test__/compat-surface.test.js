'use strict'
// Code written against uhura 0.1.x (2013-2014) runs unchanged: the whole
// public surface of the original's client, server-side connection, server
// and exports, and the net.Server methods its createServer result had. ES5
// subclasses are in compat-es5.test.js.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const {
  HOST, IMPLS, useResources, waitFor, waitUntil, delay, installExitWatchdog, pingPong,
} = require('./helpers')

installExitWatchdog()

const T = { timeout: 20000 }
const Uhura = IMPLS.ours()
const Old = IMPLS['v0.1.2']()

/** Every property name on `o` and its prototype chain, Object.prototype excluded. */
function members (o) {
  const out = new Set()
  for (let p = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) out.add(k)
  }
  return out
}

// The old implementation's internal data fields; its methods all count.
const OLD_INTERNALS = new Set(['parser', 'serializer', 'stream', 'queue', 'buffer', 'acks'])

/**
 * The original's public members of `o`: names without a leading underscore,
 * and with `ownMethods` also its underscore methods (`_send`, `_set`: uhura's
 * own, unlike net.Server's internals).
 */
function publicMembers (o, ownMethods = true) {
  return [...members(o)].filter((k) => {
    if (k === 'constructor' || OLD_INTERNALS.has(k)) return false
    let v
    try {
      v = o[k]
    } catch (_) {
      return true
    }
    return !k.startsWith('_') || (ownMethods && typeof v === 'function')
  }).sort()
}

function missingFrom (ours, names) {
  const have = members(ours)
  return names.filter((k) => !have.has(k))
}

/** Starts one of our servers on 127.0.0.1:0 with `options`; resolves to { server, port, conns }. */
async function listen (r, options, onConnection) {
  const srv = await r.startServer('ours', { options, onConnection })
  return srv
}

describe('the public surface of uhura 0.1.2', () => {
  it('every public member of the original client, connection, server and exports exists on ours', T, async (t) => {
    const r = useResources(t)
    // The original's objects, made as its code makes them.
    const OldConnection = require('uhura-0.1.2/lib/connection')
    const oldClient = new Old.Client()
    const oldConn = new OldConnection(new net.Socket(), new Old.Server({}))
    const oldServer = Old.createServer(() => {})

    const srv = await listen(r, {})
    const client = r.createClient('ours', srv.port, HOST)
    const { conn } = await srv.waitConnection(0)

    const pairs = [
      ['client', oldClient, client, true],
      ['server-side connection', oldConn, conn, true],
      ['server', oldServer, srv.server, false],
      ['exports', Old, Uhura, true],
      ['Server.prototype', Old.Server.prototype, Uhura.Server.prototype, true],
      ['session export', Old.session, Uhura.session, true],
    ]
    const report = []
    for (const [label, old, ours, ownMethods] of pairs) {
      const names = publicMembers(old, ownMethods)
      assert.ok(names.length > 0, `${label}: the original has members`)
      const missing = missingFrom(ours, names)
      if (missing.length) report.push(`${label}: ${missing.join(', ')}`)
    }
    // net.Server members that only exist once set, and its documented methods.
    const netServer = ['getConnections', 'maxConnections', 'listening', 'ref', 'unref', 'address', 'close', 'listen']
    const missingNet = missingFrom(srv.server, netServer)
    if (missingNet.length) report.push(`server (net.Server): ${missingNet.join(', ')}`)
    assert.deepEqual(report, [], 'members of the original missing from ours')
    // The methods named by the original's docs and code are callable.
    for (const m of ['attach', 'syncSession', 'send', 'set', 'get', '_send', '_set']) {
      assert.equal(typeof client[m], 'function', `client.${m}`)
      assert.equal(typeof conn[m], 'function', `connection.${m}`)
    }
  })

  it('syncSession sends a session changed in place; _set merges locally only; _send writes one raw message', T, async (t) => {
    const r = useResources(t)
    const events = []
    const srv = await listen(r, {}, (conn) => {
      conn.on('legacy', (...args) => events.push(['legacy', ...args]))
      conn.on('obj', (...args) => events.push(['obj', ...args]))
    })
    const client = r.createClient('ours', srv.port, HOST)
    const { conn } = await srv.waitConnection(0)
    await waitUntil(() => client.ready, 5000, 'client ready')

    client.session.direct = 'changed in place'
    client.syncSession()
    await waitUntil(() => conn.get('direct') === 'changed in place', 5000, 'the synced session on the server')

    client._set('local', 1)
    assert.equal(client.get('local'), 1)
    await delay(50)
    assert.equal(conn.get('local'), undefined, '_set does not reach the peer')

    client._send(['legacy', 1, 'two'])
    client._send({ args: ['obj', { three: 3 }] })
    await waitUntil(() => events.length === 2, 5000, 'both raw messages')
    assert.deepEqual(events, [['legacy', 1, 'two'], ['obj', { three: 3 }]])
    assert.throws(() => client._send(undefined), TypeError)
    assert.throws(() => client._send(() => {}), TypeError)
  })

  it('client.attach(stream) speaks the protocol over a stream the application opened', T, async (t) => {
    const r = useResources(t)
    const srv = await listen(r, {}, pingPong)
    const client = new Uhura.Client()
    t.after(() => client.disconnect())
    client.attach(net.connect(srv.port, HOST))
    const pong = waitFor(client, 'pong')
    client.send('ping', 5)
    assert.deepEqual(await pong, [5])
    assert.throws(() => new Uhura.Client().attach(42), TypeError)
  })

  it('connection.disconnect() closes that connection cleanly; the client resumes its session', T, async (t) => {
    const r = useResources(t)
    const acked = []
    const srv = await listen(r, {})
    const client = r.createClient('ours', srv.port, HOST)
    client.autoReconnect(10, 50)
    client.set('k', 'v')
    const { conn } = await srv.waitConnection(0)
    await waitUntil(() => client.ready, 5000, 'client ready')
    const got = []
    client.on('last', (n) => got.push(n))
    const disconnected = waitFor(conn, 'disconnect')
    const clientDropped = waitFor(client, 'disconnect')
    conn.send('last', 1, (err) => acked.push(err || 'ok'))
    conn.disconnect()
    await disconnected
    await clientDropped
    assert.equal(conn.ready, false)
    assert.deepEqual(got, [1], 'what was sent before disconnect() is delivered first')
    const { reconnect, conn: again } = await srv.waitConnection(1)
    assert.equal(reconnect, true)
    assert.equal(again.get('k'), 'v')
    await waitUntil(() => acked.length === 1, 5000, 'the ack of the last event')
    assert.deepEqual(acked, ['ok'])
  })
})

describe('the server is a net.Server', () => {
  it('connection gives a socket per accepted connection before the handshake; getConnections counts them', T, async (t) => {
    const r = useResources(t)
    const srv = await listen(r, {})
    const server = srv.server
    assert.equal(server.listening, true)
    const sockets = []
    server.on('connection', (s) => sockets.push(s))
    const count = () => new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))))
    assert.equal(await count(), 0)

    const raw = r.rawConnect(srv.port)
    await raw.connected()
    await waitUntil(() => sockets.length === 1, 5000, 'the connection event')
    assert.equal(sockets[0].remoteAddress, HOST)
    assert.equal(sockets[0].remotePort, raw.socket.localPort)
    assert.equal(sockets[0].localPort, srv.port)
    assert.equal(await count(), 1, 'a connection still in its handshake counts')
    assert.equal(srv.connections.length, 0, 'no handshake yet')

    const client = r.createClient('ours', srv.port, HOST)
    const { conn } = await srv.waitConnection(0)
    assert.equal(sockets.length, 2)
    assert.equal(conn.socket, sockets[1], "the connection's socket is the one the connection event gave")
    assert.equal(await count(), 2)

    const closed = waitFor(sockets[0], 'close')
    raw.socket.destroy()
    await closed
    assert.equal(sockets[0].destroyed, true)
    await waitUntil(async () => (await count()) === 1, 5000, 'getConnections to drop to 1')
    client.disconnect()
    await waitUntil(async () => (await count()) === 0, 5000, 'getConnections to drop to 0')
  })

  it('maxConnections refuses connections over the limit, with a drop event', T, async (t) => {
    const r = useResources(t)
    const srv = await listen(r, {})
    const server = srv.server
    assert.equal(server.maxConnections, undefined)
    server.maxConnections = 1
    assert.equal(server.maxConnections, 1)
    const drops = []
    server.on('drop', (d) => drops.push(d))
    const first = r.createClient('ours', srv.port, HOST)
    await srv.waitConnection(0)
    const raw = r.rawConnect(srv.port)
    await raw.connected()
    const rawPort = raw.socket.localPort
    await raw.waitClosed()
    await waitUntil(() => drops.length === 1, 5000, 'the drop event')
    assert.equal(drops[0].remoteAddress, HOST)
    assert.equal(drops[0].remotePort, rawPort)
    assert.equal(drops[0].localPort, srv.port)
    assert.equal(srv.connections.length, 1, 'the refused connection made no handshake')
    // Room again once the first leaves.
    first.disconnect()
    await waitUntil(async () => (await new Promise((resolve) => server.getConnections((e, n) => resolve(n)))) === 0, 5000, 'the first to leave')
    r.createClient('ours', srv.port, HOST)
    await srv.waitConnection(1)
    assert.throws(() => { server.maxConnections = -1 }, RangeError)
  })

  it('listening, address(), ref()/unref() and close(cb) behave as net.Server', T, async (t) => {
    const server = Uhura.createServer(() => {})
    assert.equal(server.listening, false)
    const notRunning = await new Promise((resolve) => server.close(resolve))
    assert.equal(notRunning && notRunning.code, 'ERR_SERVER_NOT_RUNNING', 'close on a server that is not listening')

    const s2 = Uhura.createServer(() => {})
    await new Promise((resolve) => s2.listen(0, HOST, resolve))
    assert.equal(s2.listening, true)
    assert.equal(s2.address().address, HOST)
    assert.equal(s2.unref(), s2)
    assert.equal(s2.ref(), s2)
    const err = await new Promise((resolve) => s2.close(resolve))
    assert.equal(err, undefined)
    assert.equal(s2.listening, false)
  })
})
