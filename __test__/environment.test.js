'use strict'
// The addon serves the first Node environment that loads it; a worker thread
// that loads it as well gets a clear error instead of silently lost events.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { Worker } = require('node:worker_threads')
const path = require('node:path')

test('loading in a second environment (worker thread) throws a clear error; the first keeps working', { timeout: 20000 }, async () => {
  const U = require('..')
  const root = path.join(__dirname, '..')
  const message = await new Promise((resolve, reject) => {
    const w = new Worker(`
      const { parentPort } = require('node:worker_threads')
      try { require(${JSON.stringify(root)}); parentPort.postMessage('loaded') } catch (e) { parentPort.postMessage(e.message) }
    `, { eval: true })
    w.once('message', resolve)
    w.once('error', reject)
  })
  assert.match(message, /one Node environment per process/)
  const server = U.createServer((conn) => conn.on('ping', () => conn.send('pong')))
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const client = U.createClient(server.address().port, '127.0.0.1')
  await new Promise((resolve) => { client.once('pong', resolve); client.send('ping') })
  client.disconnect()
  await new Promise((resolve) => server.close(resolve))
})
