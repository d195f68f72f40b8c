'use strict'
// Sends keep their call order even across two connection objects of one
// session (the old one after its disconnect, and the one that resumed it),
// also when the outbox is handed to Rust in the middle of a loop of sends.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { HOST, waitUntil, installExitWatchdog } = require('./helpers')

installExitWatchdog(10000)
const U = require('..')

/**
 * A client whose server-side session has two connection objects: the one
 * dropped (`older`) and the one that resumed it (`newer`); `got` collects
 * the client's 'o' events.
 */
async function resumedPair (t) {
  const conns = []
  const server = U.createServer((conn) => conns.push(conn))
  await new Promise((resolve) => server.listen(0, HOST, resolve))
  const client = U.createClient(server.address().port, HOST)
  client.autoReconnect(5, 20)
  t.after(() => new Promise((resolve) => { client.disconnect(); server.close(resolve) }))
  const got = []
  client.on('o', (i) => got.push(i))
  await waitUntil(() => conns.length === 1 && client.ready, 5000, 'the first connection')
  conns[0].socket.destroy()
  await waitUntil(() => conns.length === 2 && client.ready, 5000, 'the resumed connection')
  const [older, newer] = conns
  return { older, newer, got }
}

test('interleaved sends on an old and a resumed connection object arrive in call order', { timeout: 30000 }, async (t) => {
  const { older, newer, got } = await resumedPair(t)
  for (let i = 0; i < 200; i += 2) {
    older.send('o', i)
    newer.send('o', i + 1)
  }
  await waitUntil(() => got.length >= 200, 5000, 'all 200 events')
  assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => i))
})

test('runs of sends on the two objects keep call order when the outbox is flushed mid-loop', { timeout: 30000 }, async (t) => {
  const { older, newer, got } = await resumedPair(t)
  // Runs of 700 per object: the outbox's early flushes (every 1,024 lines)
  // fall inside runs and between them.
  const N = 7000
  for (let i = 0; i < N; i++) (Math.floor(i / 700) % 2 === 0 ? older : newer).send('o', i)
  await waitUntil(() => got.length >= N, 10000, `all ${N} events`)
  assert.deepEqual(got, Array.from({ length: N }, (_, i) => i))
})
