'use strict'
// Cumulative acks (docs/PROTOCOL.md §9, extensions version 2): between
// peers of ours the acks of one handled batch are one `["_uhura_ack",id]`;
// peers that did not negotiate version 2 keep one ack per message. A raw
// socket plays the other side, so what goes over the wire is checked byte by
// byte. (Old packages both ways: interop.test.js.)

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const { HOST, useResources, waitUntil, delay, parseFrames } = require('./helpers')

const SENDER = '0123456789ab-'
const ID_RE = /^[0-9a-f]{12}-\d+$/

// What our client sends before the server's `connect`, from a peer offering `uhura`.
function clientHandshake (uhura) {
  const config = { objectMode: true, enableAcks: true }
  if (uhura) config.uhura = uhura
  return `[\n["_set",{}]\n,\n["start",${JSON.stringify(config)}]`
}

// `n` events ('e', i) with ids of one sender of ours, from `from`, as one write.
function events (n, from = 1) {
  let text = ''
  for (let i = 0; i < n; i++) text += `\n,\n{"args":["e",${i}],"id":"${SENDER}${from + i}"}`
  return text
}

// The acks in a server's output (its frames after the handshake).
function acksIn (text) {
  return parseFrames(text).filter((m) => (Array.isArray(m) && m[0] === '_uhura_ack') || (m.args && /^ack::/.test(m.args[0])))
}

// A server of ours counting 'e' events, and a raw client that completed the
// handshake offering extensions `uhura`.
async function serverAndRawClient (r, uhura) {
  const got = []
  const srv = await r.startServer('ours', { onConnection: (conn) => conn.on('e', (i) => got.push(i)) })
  const raw = r.rawConnect(srv.port)
  await raw.connected()
  raw.socket.write(clientHandshake(uhura))
  await raw.waitText(/"connect"/)
  return { srv, raw, got }
}

describe('cumulative acks: our receiver', () => {
  it('acks a batch of events from a version-2 peer with one ["_uhura_ack", last id], after the listeners ran', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const { raw, got } = await serverAndRawClient(r, 2)
    assert.match(raw.text(), /"uhura":2/, 'the server echoes version 2')
    raw.socket.write(events(50))
    await waitUntil(() => acksIn(raw.text()).length > 0, 5000, 'the ack')
    await delay(200)
    assert.equal(got.length, 50)
    assert.deepStrictEqual(acksIn(raw.text()), [['_uhura_ack', `${SENDER}50`]], 'one cumulative ack for the batch')
    // A duplicate (a resend of a delivered message) gets its own ack.
    raw.socket.write(events(1, 50) + events(2, 51))
    await waitUntil(() => acksIn(raw.text()).length >= 3, 5000, 'the acks of the second batch')
    await delay(200)
    assert.deepStrictEqual(acksIn(raw.text()).slice(1), [{ args: [`ack::${SENDER}50`] }, ['_uhura_ack', `${SENDER}52`]])
    assert.equal(got.length, 52, 'the duplicate was not delivered')
  })

  for (const [what, uhura] of [['version 1 (our older releases)', 1], ['no extensions (0.1.x)', 0]]) {
    it(`acks each event of a peer of ${what} on its own`, { timeout: 20000 }, async (t) => {
      const r = useResources(t)
      const { raw, got } = await serverAndRawClient(r, uhura)
      raw.socket.write(events(50))
      await waitUntil(() => acksIn(raw.text()).length === 50, 5000, '50 acks')
      await delay(200)
      assert.equal(got.length, 50)
      const acks = acksIn(raw.text())
      assert.deepStrictEqual(acks, Array.from({ length: 50 }, (_, i) => ({ args: [`ack::${SENDER}${i + 1}`] })))
      assert.doesNotMatch(raw.text(), /_uhura_ack/)
    })
  }
})

describe('cumulative acks: our sender', () => {
  // A raw server of extensions `uhura`: completes each handshake (the same
  // session on a reconnect) and hands each connection to onPeer.
  async function rawServer (r, uhura, onPeer) {
    const config = { objectMode: true, enableAcks: true, uhura }
    const hello = `[\n["_set","sessionID","aaaaaaaaaaaaaaaaaaaaaaaa"]\n,\n{"args":["connect",${JSON.stringify(config)}],"id":"c"}`
    return r.rawServerAfterStart((s, peer) => {
      s.write(hello)
      onPeer(s, peer)
    })
  }
  const eventIds = (peer) => peer.frames().filter((m) => m.args && m.args[0] === 'e').map((m) => m.id)

  it('settles every callback up to the acked id, in order, once each, across a reconnect with events unacknowledged', { timeout: 30000 }, async (t) => {
    const r = useResources(t)
    const rs = await rawServer(r, 2, () => {})
    const client = r.createClient('ours', { port: rs.port, host: HOST })
    client.autoReconnect(10, 50)
    const calls = []
    for (let i = 0; i < 20; i++) client.send('e', i, (err) => calls.push(err ? `${i}:${err.code}` : i))
    await waitUntil(() => rs.peers.length === 1 && eventIds(rs.peers[0]).length === 20, 5000, 'the 20 events')
    const first = eventIds(rs.peers[0])
    assert.ok(first.every((id) => ID_RE.test(id)), 'ids of ours')
    // Half of them acknowledged by one cumulative ack, then the connection drops.
    rs.peers[0].socket.write(`\n,\n["_uhura_ack",${JSON.stringify(first[9])}]`)
    await waitUntil(() => calls.length === 10, 5000, 'the first 10 callbacks')
    assert.deepStrictEqual(calls, Array.from({ length: 10 }, (_, i) => i))
    rs.peers[0].socket.destroy()
    await waitUntil(() => rs.peers.length === 2, 5000, 'the reconnect')
    for (let i = 20; i < 25; i++) client.send('e', i, (err) => calls.push(err ? `${i}:${err.code}` : i))
    // The 10 unacknowledged ones again, with their ids, then the 5 new ones.
    await waitUntil(() => eventIds(rs.peers[1]).length === 15, 5000, 'the resent and new events')
    const second = eventIds(rs.peers[1])
    assert.deepStrictEqual(second.slice(0, 10), first.slice(10))
    rs.peers[1].socket.write(`\n,\n["_uhura_ack",${JSON.stringify(second[14])}]`)
    await waitUntil(() => calls.length === 25, 5000, 'every callback')
    // A stale cumulative ack, and one per-message ack, change nothing.
    rs.peers[1].socket.write(`\n,\n["_uhura_ack",${JSON.stringify(second[3])}]\n,\n{"args":["ack::${second[14]}"]}`)
    await delay(300)
    assert.deepStrictEqual(calls, Array.from({ length: 25 }, (_, i) => i), 'each callback once, in send order')
  })

  it('never sends ["_uhura_ack"] to a server of version 1, and takes it from one as an ordinary event', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const rs = await rawServer(r, 1, (s) => {
      let text = ''
      for (let i = 0; i < 30; i++) text += `\n,\n{"args":["s2c",${i}],"id":"${SENDER}${i + 1}"}`
      s.write(text + `\n,\n["_uhura_ack","${SENDER}1"]`)
    })
    const client = r.createClient('ours', { port: rs.port, host: HOST })
    const got = []
    const odd = []
    client.on('s2c', (i) => got.push(i))
    client.on('_uhura_ack', (id) => odd.push(id))
    await waitUntil(() => got.length === 30 && odd.length === 1, 5000, 'the events')
    const acks = () => rs.peers[0].frames().filter((m) => m.args && /^ack::0123/.test(m.args[0]))
    await waitUntil(() => acks().length === 30, 5000, 'an ack per event')
    assert.doesNotMatch(rs.peers[0].text, /_uhura_ack/)
  })
})
