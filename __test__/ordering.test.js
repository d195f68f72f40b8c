'use strict'
// Sends keep their call order even across two connection objects of one
// session (the old one after its disconnect, and the one that resumed it).
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { HOST, waitUntil, installExitWatchdog } = require('./helpers')

installExitWatchdog(10000)
const U = require('..')

test('interleaved sends on an old and a resumed connection object arrive in call order', { timeout: 30000 }, async (t) => {
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
  for (let i = 0; i < 200; i += 2) {
    older.send('o', i)
    newer.send('o', i + 1)
  }
  await waitUntil(() => got.length >= 200, 5000, 'all 200 events')
  assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => i))
})
