'use strict'
// The receive path: the messages of one read reach JavaScript as one
// MESSAGES entry, each as its number of elements and the elements, or as 0
// and the whole array when the parser did not count them
// (src/engine/events.rs `Messages`, lib/native.js `receiveRun`); a run longer
// than a delivery segment (64 KiB) goes on in another entry.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const { HOST, CLIENT_HANDSHAKE, useResources, waitUntil, installExitWatchdog } = require('./helpers')

installExitWatchdog(30000)

// Every event of a connection, as [name, ...arguments], in order.
function recordAll (conn, names, got) {
  for (const name of names) {
    conn.on(name, function () {
      got.push([name, ...arguments])
      if (name === 'boom') throw new Error('listener boom')
    })
  }
}

// The raw client's opening and then `messages` in one write, so that the
// server reads them in one chunk, as one run.
async function oneRun (t, messages) {
  const r = useResources(t)
  const got = []
  const errors = []
  const names = new Set(messages.map((m) => {
    const parsed = typeof m === 'string' ? JSON.parse(m) : m
    return (Array.isArray(parsed) ? parsed : parsed.args)[0]
  }))
  const srv = await r.startServer('ours', {
    onConnection: (conn) => {
      conn.on('error', (err) => errors.push(err))
      recordAll(conn, names, got)
    },
  })
  const raw = r.rawConnect(srv.port, HOST)
  await raw.connected()
  raw.socket.write(CLIENT_HANDSHAKE)
  await raw.waitText(/"connect"/, 5000)
  raw.socket.write(messages.map((m) => '\n,\n' + (typeof m === 'string' ? m : JSON.stringify(m))).join(''))
  return { raw, got, errors }
}

describe('a run of received messages', () => {
  it('emits each event with exactly its arguments, counted or not, and goes on past a listener that throws', { timeout: 20000 }, async (t) => {
    const messages = [
      { args: ['none'], id: 'a1' },
      { args: ['two', 1, 'x,y]"z\\'], id: 'a2' },
      // Array-shaped (a 0.0.x peer): counted by the framing's commas.
      ['six', 1, [2, 3], { a: { b: [4, ','] } }, null, true],
      // Whitespace around the members: split by serde, not counted (0, [...]).
      '{ "args" : [ "one" , 7 ] , "id" : "a3" }',
      { args: ['boom', 1], id: 'a4' },
      // The id first: not the usual shape either.
      { id: 'a5', args: ['four', 1, 2, 3] },
      { args: ['three', 1, 2], id: 'a6' },
      { args: ['four', 'a', 'b', 'c'], id: 'a7' },
      { args: ['five', 1, 2, 3, { k: [] }], id: 'a8' },
    ]
    const { raw, got, errors } = await oneRun(t, messages)
    await waitUntil(() => got.length === messages.length, 5000, 'every event')
    assert.deepEqual(got, [
      ['none'],
      ['two', 1, 'x,y]"z\\'],
      ['six', 1, [2, 3], { a: { b: [4, ','] } }, null, true],
      ['one', 7],
      ['boom', 1],
      ['four', 1, 2, 3],
      ['three', 1, 2],
      ['four', 'a', 'b', 'c'],
      ['five', 1, 2, 3, { k: [] }],
    ])
    await waitUntil(() => errors.length === 1, 5000, 'the listener error')
    assert.equal(errors[0].code, 'ERR_UHURA_LISTENER')
    assert.match(errors[0].message, /"boom" event threw: listener boom/)
    // Every event with an id is acked once its listeners ran.
    await waitUntil(() => ['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8'].every((id) => raw.text().includes(`ack::${id}`)), 5000, 'the acks')
  })

  it('goes on in the next entry past a delivery segment, in order', { timeout: 20000 }, async (t) => {
    // 40 messages of ~10 KB in one write: ~400 KB, more than six segments.
    const big = 'b'.repeat(10000)
    const messages = []
    for (let i = 0; i < 40; i++) messages.push({ args: ['big', i, big], id: `m${i}` })
    const { raw, got } = await oneRun(t, messages)
    await waitUntil(() => got.length === 40, 10000, 'every event')
    assert.deepEqual(got.map((e) => e[1]), messages.map((m) => m.args[1]))
    assert.ok(got.every((e) => e.length === 3 && e[2] === big))
    await waitUntil(() => raw.text().includes('ack::m39'), 5000, 'the last ack')
  })
})
