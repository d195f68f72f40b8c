'use strict'
// The public API of ours: acks and the handshake on the wire, seen from a
// raw peer.
//
// UHURA_TEST_OLD_ONLY=1 runs the same bodies against 0.1.2 to validate the
// test logic.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  OLD_ONLY, HOST, useResources, waitFor, waitUntil, delay, installExitWatchdog,
} = require('./helpers')

installExitWatchdog()

const IMPL = OLD_ONLY ? 'v0.1.2' : 'ours'
const T = { timeout: 20000 }

describe(`${IMPL}: the wire, seen from a raw peer`, () => {
  // A raw server that records the client's frames and answers its start
  // with a session id and `connectMsg`.
  async function rawPeer (r, { connectMsg }) {
    const rs = await r.rawServerAfterStart((s) => s.write('[\n["_set","sessionID","AbCdEfGhIjKlMnOpQrStUv12"]\n,\n' + connectMsg))
    const last = () => rs.peers[rs.peers.length - 1]
    return { rs, state: { get socket () { return last().socket }, frames: () => last().frames() } }
  }

  it('the client handshakes with _set then start, and its send callback waits for the peer\'s ack', T, async (t) => {
    const r = useResources(t)
    const { rs, state } = await rawPeer(r, {
      connectMsg: '{"args":["connect",{"objectMode":true,"enableAcks":true}],"id":"c-1"}',
    })
    const client = await r.connectClient(IMPL, rs.port)
    assert.equal(client.get('sessionID'), 'AbCdEfGhIjKlMnOpQrStUv12')
    const frames = state.frames()
    assert.deepStrictEqual(frames[0], ['_set', {}], 'first message: the client session')
    // Extra config fields are allowed (ours adds "uhura" and "heartbeat"; old servers ignore them).
    assert.equal(frames[1][0], 'start', 'second message: start')
    assert.equal(frames[1][1].objectMode, true, 'start asks for objectMode')
    assert.equal(frames[1][1].enableAcks, true, 'start asks for enableAcks')

    let cbCalls = 0
    client.send('needsAck', 1, { k: 'ü' }, () => cbCalls++)
    const msg = await waitUntil(() => state.frames().find((f) => f && f.args && f.args[0] === 'needsAck'), 5000, 'the needsAck message')
    assert.deepStrictEqual(msg.args, ['needsAck', 1, { k: 'ü' }])
    assert.equal(typeof msg.id, 'string')
    assert.ok(msg.id.length > 0, 'object-mode message carries a non-empty id')
    await delay(300)
    assert.equal(cbCalls, 0, 'the callback must wait for the ack')
    state.socket.write(`\n,\n{"args":["ack::${msg.id}"]}`)
    await waitUntil(() => cbCalls >= 1, 5000, 'the callback after the ack')
    // The client acks the peer's object messages that carry an id, and never acks an ack.
    const hello = waitFor(client, 'hello', 5000, { label: 'client (hello)' })
    state.socket.write('\n,\n{"args":["hello","x"],"id":"srv-1"}')
    assert.deepStrictEqual(await hello, ['x'])
    const ack = await waitUntil(() => state.frames().find((f) => f && f.args && f.args[0] === 'ack::srv-1'), 5000, 'the client to ack srv-1')
    assert.deepStrictEqual(ack, { args: ['ack::srv-1'] }, 'an ack has no id')
    await delay(100)
    assert.equal(cbCalls, 1)
    assert.equal(state.frames().filter((f) => f && f.args && f.args[0] === `ack::${msg.id}`).length, 0, 'never ack an ack')
  })

  it('a server that answers ["connect"] without config gets array-mode events and no acks', T, async (t) => {
    const r = useResources(t)
    const { rs, state } = await rawPeer(r, { connectMsg: '["connect"]' })
    const client = await r.connectClient(IMPL, rs.port, HOST, 5000, { requireConfig: false })
    assert.equal(client.objectMode, false)
    assert.equal(client.enableAcks, false)
    let cbCalls = 0
    client.send('arr', 1, 'ü', () => cbCalls++)
    const msg = await waitUntil(() => state.frames().find((f) => Array.isArray(f) && f[0] === 'arr'), 5000, 'the arr message')
    assert.deepStrictEqual(msg, ['arr', 1, 'ü'])
    await waitUntil(() => cbCalls >= 1, 5000, 'the callback (acks off: right after writing)')
    const hello = waitFor(client, 'hello', 5000, { label: 'client (hello)' })
    state.socket.write('\n,\n["hello",{"a":1}]')
    assert.deepStrictEqual(await hello, [{ a: 1 }])
  })
})
