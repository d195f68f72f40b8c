'use strict'
// Native sockets read on Node's loop (src/node/uv.rs): once reading moves
// there, tokio hears of the socket only when it is writable
// (src/engine/transport/native.rs). Writes that find the socket's buffer
// full must still finish (the writer task waits on that registration), and
// a peer's close must still end the connection.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const {
  HOST, CLIENT_HANDSHAKE, useResources, waitFor, waitUntil, delay, installExitWatchdog,
} = require('./helpers')

installExitWatchdog()

const T = { timeout: 60000 }
// 12.5 MiB each way, sent in one synchronous loop: more than the kernel
// buffers of a loopback connection hold, so writes block.
const COUNT = 400
const BODY = 'x'.repeat(32 * 1024)

describe('native sockets read on Node\'s loop', () => {
  it('writes that block finish both ways, then the peer\'s close ends the connection', T, async (t) => {
    const r = useResources(t)
    let atServer = 0
    const srv = await r.startServer('ours', {
      onConnection: (conn) => conn.on('big', (i, body) => {
        if (i === atServer && body.length === BODY.length) atServer++
      }),
    })
    const client = await r.connectClient('ours', srv.port, HOST)
    const { conn } = await srv.waitConnection(0)
    let atClient = 0
    client.on('big', (i, body) => {
      if (i === atClient && body.length === BODY.length) atClient++
    })
    // Past the handshake: both sides read on Node's loop by now.
    await delay(100)
    for (let i = 0; i < COUNT; i++) {
      conn.send('big', i, BODY)
      client.send('big', i, BODY)
    }
    await waitUntil(() => atServer === COUNT && atClient === COUNT, 30000,
      `${COUNT} events each way in order (server has ${atServer}, client ${atClient})`)
    const gone = waitFor(conn, 'disconnect', 10000)
    client.disconnect()
    await gone
    assert.equal(atServer, COUNT)
    assert.equal(atClient, COUNT)
    r.assertNoErrors()
  })
})

// Once Node's loop reads an idle server-side connection, no task waits for
// it (src/engine/link/io.rs, `read_loop`): the events that end it (the
// peer's close, destroy(), end() and its grace timer) resume its reader.
describe('an idle connection read on Node\'s loop, its reader parked', () => {
  // A raw client past the handshake, idle long enough for its server-side
  // reader to park; `allowHalfOpen` keeps it from answering our FIN.
  async function idleRaw (r, srv, { allowHalfOpen = false } = {}) {
    const socket = net.connect({ port: srv.port, host: HOST, allowHalfOpen })
    r.sockets.push(socket)
    let text = ''
    let ended = false
    socket.on('data', (d) => { text += d })
    socket.on('end', () => { ended = true })
    socket.on('error', () => {})
    const closed = new Promise((resolve) => socket.once('close', resolve))
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.write(CLIENT_HANDSHAKE)
    await waitUntil(() => /"connect"/.test(text), 5000, 'the server\'s connect')
    const { conn } = await srv.waitConnection(0)
    await delay(200)
    return { socket, conn, closed, get ended () { return ended } }
  }

  it('the peer\'s close ends it', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours')
    const raw = await idleRaw(r, srv)
    const gone = waitFor(raw.conn, 'disconnect', 5000)
    raw.socket.end()
    await gone
    await raw.closed
  })

  it('destroy() ends it at once', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours')
    const raw = await idleRaw(r, srv)
    const gone = waitFor(raw.conn, 'disconnect', 5000)
    raw.conn.socket.destroy()
    await gone
    await raw.closed
  })

  it('disconnect() sends FIN; a peer that never closes is dropped after the grace period', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours')
    const raw = await idleRaw(r, srv, { allowHalfOpen: true })
    const started = Date.now()
    const gone = waitFor(raw.conn, 'disconnect', 15000)
    raw.conn.disconnect()
    await waitUntil(() => raw.ended, 5000, 'our FIN at the peer')
    await gone
    assert.ok(Date.now() - started >= 4000, `dropped after ${Date.now() - started} ms, before the grace period`)
  })

  it('events and the session still flow after it parked, and a resume finds the session', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', {
      onConnection: (conn) => conn.on('ping', (n) => conn.send('pong', n)),
    })
    const client = await r.connectClient('ours', srv.port, HOST)
    client.autoReconnect(20, 200)
    const { conn } = await srv.waitConnection(0)
    await delay(200)
    client.set('k', 'v')
    const pong = waitFor(client, 'pong', 5000)
    client.send('ping', 7)
    assert.deepEqual(await pong, [7])
    await waitUntil(() => conn.get('k') === 'v', 5000, 'the session\'s k at the server')
    await delay(200)
    const sid = client.get('sessionID')
    const gone = waitFor(conn, 'disconnect', 5000)
    conn.socket.destroy()
    await gone
    const { conn: again, reconnect } = await srv.waitConnection(1, 10000)
    assert.equal(reconnect, true)
    assert.equal(again.get('sessionID'), sid)
    assert.equal(again.get('k'), 'v')
    r.assertNoErrors()
  })
})
