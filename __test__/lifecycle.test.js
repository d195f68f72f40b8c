'use strict'
// API lifecycle: calls in any order after disconnect() or close() do what
// the original (and net) did, or fail with a clear error where they are
// made; numeric options are validated and huge ones saturate.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const { HOST, IMPLS, useResources, waitFor, waitUntil, delay, withTimeout, installExitWatchdog, pingPong } = require('./helpers')

installExitWatchdog()

const T = { timeout: 20000 }
const Uhura = IMPLS.ours()

describe('client lifecycle', () => {
  it('reconnect() after disconnect() starts the client again and resumes its session', T, async (t) => {
    const r = useResources(t)
    const got = []
    const srv = await r.startServer('ours', { onConnection: (conn) => conn.on('n', (n) => got.push(n)) })
    const client = r.createClient('ours', srv.port, HOST)
    client.set('k', 'v')
    client.send('n', 1)
    await srv.waitConnection(0)
    await waitUntil(() => got.length === 1, 5000, 'the first event')

    const down = waitFor(client, 'disconnect')
    client.disconnect()
    await down
    assert.doesNotThrow(() => client.disconnect(), 'a second disconnect() is a no-op')
    // Sent while stopped: held, and delivered after the reconnect.
    let acked = false
    client.send('n', 2, (err) => { acked = !err })
    await delay(100)
    assert.equal(srv.connections.length, 1, 'no reconnect until reconnect()')

    const up = new Promise((resolve) => client.reconnect(resolve))
    await withTimeout(up, 5000, 'the reconnect callback')
    const { reconnect, conn } = await srv.waitConnection(1)
    assert.equal(reconnect, true, 'the session was resumed')
    assert.equal(conn.get('k'), 'v')
    await waitUntil(() => got.length === 2 && acked, 5000, 'the event sent while stopped, and its ack')
    assert.deepEqual(got, [1, 2])
  })

  it('disconnect() and reconnect() inside listeners do not throw out of the event loop', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', {})
    const client = r.createClient('ours', srv.port, HOST)
    await srv.waitConnection(0)
    let disconnects = 0
    client.on('disconnect', () => {
      disconnects++
      client.disconnect()
      if (disconnects === 1) client.reconnect()
    })
    client.disconnect()
    await srv.waitConnection(1)
    client.disconnect()
    await waitUntil(() => disconnects === 2, 5000, 'the second disconnect')
    await delay(100)
    assert.equal(srv.connections.length, 2)
  })

  it('reconnect() before connect() throws a clear error', T, () => {
    assert.throws(() => new Uhura.Client().reconnect(), /before connect/)
    assert.doesNotThrow(() => new Uhura.Client().disconnect())
  })

  it('invalidateSession() on a connection gone for good is an error event on it, not a throw', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { resumeWindow: 50 } })
    const client = r.createClient('ours', srv.port, HOST)
    const { conn } = await srv.waitConnection(0)
    const gone = waitFor(conn, 'disconnect')
    client.disconnect()
    await gone
    await delay(400) // past the resume window: the session's state is released
    const errored = waitFor(conn, 'error')
    assert.doesNotThrow(() => conn.invalidateSession())
    const [err] = await errored
    assert.equal(err.code, 'ERR_UHURA_CLOSED')
    assert.match(err.message, /invalidate/)
    assert.doesNotThrow(() => conn.disconnect(), 'disconnect() of a closed connection is a no-op')
    // A send with a callback gets the error there; one without, as an error event.
    const cbErr = await new Promise((resolve) => conn.send('x', 1, resolve))
    assert.equal(cbErr && cbErr.code, 'ERR_UHURA_CLOSED')
    const lost = waitFor(conn, 'error')
    conn.send('x', 2)
    const [sendErr] = await lost
    assert.equal(sendErr.code, 'ERR_UHURA_CLOSED')
  })
})

describe('server lifecycle', () => {
  it('listen() twice throws ERR_SERVER_ALREADY_LISTEN, as net does', T, async (t) => {
    const server = Uhura.createServer(() => {})
    t.after(() => server.close())
    await new Promise((resolve) => server.listen(0, HOST, resolve))
    assert.throws(() => server.listen(0, HOST), (err) => err.code === 'ERR_SERVER_ALREADY_LISTEN')
  })

  it('listen() after close() serves again, and both close callbacks run', T, async (t) => {
    const r = useResources(t)
    const server = Uhura.createServer(pingPong)
    await withTimeout(new Promise((resolve) => server.listen(0, HOST, resolve)), 5000, 'first listen')
    await withTimeout(new Promise((resolve) => server.close(resolve)), 5000, 'first close')
    assert.equal(server.listening, false)
    await withTimeout(new Promise((resolve) => server.listen(0, HOST, resolve)), 5000, 'listen after close')
    assert.equal(server.listening, true)
    const client = r.createClient('ours', server.address().port, HOST)
    const pong = waitFor(client, 'pong')
    client.send('ping', 9)
    assert.deepEqual(await pong, [9])
    client.disconnect()
    const err = await withTimeout(new Promise((resolve) => server.close(resolve)), 5000, 'second close')
    assert.equal(err, undefined)
  })

  it('close() right after listen() closes, and a listen() right after close() serves', T, async (t) => {
    const r = useResources(t)
    const server = Uhura.createServer(() => {})
    const closed = new Promise((resolve) => server.once('close', resolve))
    server.listen(0, HOST)
    server.close()
    await withTimeout(closed, 5000, 'close')
    server.listen(0, HOST)
    await withTimeout(new Promise((resolve) => server.once('listening', resolve)), 5000, 'listening again')
    const client = r.createClient('ours', server.address().port, HOST)
    await waitFor(client, 'connect')
    client.disconnect()
    await withTimeout(new Promise((resolve) => server.close(resolve)), 5000, 'final close')
  })
})

describe('numeric options', () => {
  it('negative or NaN is a RangeError, a non-number a TypeError, each naming the option', T, () => {
    for (const k of ['ackTimeout', 'heartbeatInterval', 'heartbeatTimeout', 'handshakeTimeout', 'maxMessageSize', 'maxQueueLength', 'maxQueueBytes']) {
      assert.throws(() => Uhura.createServer({ [k]: -1 }), (e) => e instanceof RangeError && e.message.includes(k), `${k}: -1`)
      assert.throws(() => Uhura.createServer({ [k]: NaN }), (e) => e instanceof RangeError && e.message.includes(k), `${k}: NaN`)
      assert.throws(() => Uhura.createServer({ [k]: {} }), (e) => e instanceof TypeError && e.message.includes(k), `${k}: {}`)
    }
    for (const k of ['resumeWindow', 'sessionTTL', 'maxSessions']) {
      assert.throws(() => Uhura.createServer({ [k]: -5 }), (e) => e instanceof RangeError && e.message.includes(k), k)
    }
    const c = new Uhura.Client()
    assert.throws(() => { c.maxQueueLength = -1 }, RangeError)
    assert.throws(() => c.connect({ port: 1, host: HOST, ackTimeout: 'soon' }), TypeError)
  })

  it('huge timeouts (1e300 ms, Infinity) saturate instead of panicking', T, async (t) => {
    const r = useResources(t)
    const huge = { ackTimeout: 1e300, heartbeatInterval: 1e300, heartbeatTimeout: Infinity, handshakeTimeout: 1e300, resumeWindow: 1e300, sessionTTL: 1e300 }
    const srv = await r.startServer('ours', { options: huge, onConnection: pingPong })
    const client = r.createClient('ours', { port: srv.port, host: HOST, ...huge })
    client.autoReconnect(1e300, Infinity)
    const pong = waitFor(client, 'pong')
    let acked = false
    client.send('ping', 1, (err) => { acked = !err })
    assert.deepEqual(await pong, [1])
    await waitUntil(() => acked, 5000, 'the ack')
  })
})
