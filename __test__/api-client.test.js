'use strict'
// The public API of ours: client creation forms, handshake state and
// queueing before connect.
//
// UHURA_TEST_OLD_ONLY=1 runs the same bodies against 0.1.2 to validate the
// test logic; what 0.1.2 cannot do is skipped with the reason (its
// createClient(..., cb) throws, it emits a local `connect` per socket).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  OLD_ONLY, HOST, useResources, waitUntil, waitHandshake, collect, delay, installExitWatchdog, pingPong, roundTrip,
} = require('./helpers')

installExitWatchdog()

const IMPL = OLD_ONLY ? 'v0.1.2' : 'ours'
const OLD = IMPL !== 'ours'
const T = { timeout: 20000 }
const oldSkip = (reason) => ({ ...T, skip: OLD ? `0.1.2: ${reason}` : false })

describe(`${IMPL}: createClient forms`, () => {
  const FORMS = [
    { name: 'createClient(port)', args: (p) => [p] },
    { name: 'createClient(String(port), host)', args: (p) => [String(p), HOST] },
    { name: 'createClient(port, host)', args: (p) => [p, HOST] },
    { name: 'createClient(port, host, cb)', args: (p, cb) => [p, HOST, cb], cb: true },
    { name: 'createClient({port, host})', args: (p) => [{ port: p, host: HOST }] },
    { name: 'createClient({port, host}, cb)', args: (p, cb) => [{ port: p, host: HOST }, cb], cb: true },
  ]
  for (const f of FORMS) {
    it(`${f.name} connects${f.cb ? ' and calls cb once on connect' : ''}`, f.cb ? oldSkip('createClient(..., cb) throws (undefined `self`)') : T, async (t) => {
      const r = useResources(t)
      const srv = await r.startServer(IMPL, { onConnection: pingPong })
      let cbCalls = 0
      const client = r.createClient(IMPL, ...f.args(srv.port, () => cbCalls++))
      await waitHandshake(IMPL, client)
      if (f.cb) {
        await waitUntil(() => cbCalls >= 1, 5000, 'the createClient callback')
      }
      await roundTrip(client, 2)
      await delay(100)
      assert.equal(cbCalls, f.cb ? 1 : 0)
      assert.equal(client.socket.remotePort, srv.port)
    })
  }
})

describe(`${IMPL}: client state and handshake`, () => {
  it('ready, objectMode and enableAcks are true after connecting to our server', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer(IMPL, { onConnection: pingPong })
    const client = r.createClient(IMPL, srv.port, HOST)
    // 0.1.2 sets ready as soon as the socket exists (local connect).
    if (!OLD) assert.equal(client.ready, false, 'ready is false before the handshake')
    await waitHandshake(IMPL, client)
    assert.equal(client.ready, true)
    assert.equal(client.objectMode, true)
    assert.equal(client.enableAcks, true)
    assert.equal(typeof client.maxQueueLength, 'number')
    assert.deepStrictEqual(client.session, client.get(), 'client.session is the session object')
    const { conn } = await srv.waitConnection(0)
    assert.equal(conn.ready, true)
    assert.equal(conn.objectMode, true)
    assert.equal(conn.enableAcks, true)
    assert.equal(conn.get('sessionID'), client.get('sessionID'))
  })

  it('sends and sets issued before connect are queued and arrive in order', T, async (t) => {
    const r = useResources(t)
    const got = []
    const srv = await r.startServer(IMPL, {
      onConnection: (conn) => {
        conn.on('q', (i, s) => got.push([i, s]))
        conn.on('done', () => got.push('done'))
      },
    })
    const client = r.createClient(IMPL, srv.port, HOST)
    client.set('early', { v: 1 })
    for (let i = 0; i < 50; i++) client.send('q', i, `s${i}`)
    client.send('done')
    await waitUntil(() => got.includes('done'), 5000, "the server to get 'done'")
    const expected = Array.from({ length: 50 }, (_, i) => [i, `s${i}`]).concat(['done'])
    assert.deepStrictEqual(got, expected)
    const { conn } = await srv.waitConnection(0)
    await waitUntil(() => conn.get('early'), 5000, "the server to see the queued set('early')")
    assert.deepStrictEqual(conn.get('early'), { v: 1 })
  })

  it("'connect' fires exactly once per handshake", T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer(IMPL, { onConnection: pingPong })
    const client = r.createClient(IMPL, srv.port, HOST)
    const connects = collect(client, 'connect')
    await waitUntil(() => connects.length >= 1, 5000, "the first 'connect'")
    await delay(300)
    assert.equal(connects.length, 1, `'connect' fired ${connects.length} times for one handshake`)
    if (OLD) return // 0.1.2 emits a local connect per socket, then the server's (known defect).
    client.reconnect()
    await waitUntil(() => connects.length >= 2, 5000, "'connect' after reconnect()")
    await delay(300)
    assert.equal(connects.length, 2, `'connect' fired ${connects.length - 1} times for the reconnection's handshake`)
  })
})
