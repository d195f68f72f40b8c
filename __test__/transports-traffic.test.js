'use strict'
// 20,000 acked events over the factory path: the JavaScript byte pump and
// its back-pressure, over an in-memory pair and a net factory.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  installExitWatchdog, useResources, waitUntil, waitHandshake, delay, exchange, FACTORY_TRANSPORTS,
} = require('./helpers')

installExitWatchdog()

const BIG_OPTS = { timeout: 60000 }

const N = 20000
const PAD = 1024 // bytes of padding per event: ~20 MB each way, enough to make the pump pause

async function largeTraffic (env, r) {
  const { srv } = env
  const toServer = []
  const toClient = []
  const client = r.createClient('ours', env.clientOptions())
  client.on('s2c', (i, pad) => toClient.push(pad.length === PAD ? i : -1))
  await waitHandshake('ours', client)
  const { conn } = await srv.waitConnection(0)
  conn.on('c2s', (i, pad) => toServer.push(pad.length === PAD ? i : -1))
  // Count pause()s of the streams: back-pressure of the pump at work.
  let pauses = 0
  for (const s of [client.socket, conn.socket]) s.on('pause', () => pauses++)

  const pad = 'é'.repeat(PAD / 2) + 'x'.repeat(PAD / 2)
  let acksC = 0
  let acksS = 0
  const ackedC = new Uint8Array(N)
  const ackedS = new Uint8Array(N)
  const ackErrors = []
  const started = Date.now()
  for (let i = 0; i < N; i++) {
    client.send('c2s', i, pad, (err) => {
      if (err) ackErrors.push(err)
      ackedC[i]++
      acksC++
    })
    conn.send('s2c', i, pad, (err) => {
      if (err) ackErrors.push(err)
      ackedS[i]++
      acksS++
    })
  }
  let maxBuffered = 0
  const sampler = setInterval(() => {
    maxBuffered = Math.max(maxBuffered, client.socket.writableLength || 0, conn.socket.writableLength || 0)
  }, 5)
  await waitUntil(() => (toServer.length === N && toClient.length === N && acksC === N && acksS === N) || ackErrors.length,
    50000, `${N} events and acks each way`).catch((e) => {
    e.message += ` (server got ${toServer.length}, client got ${toClient.length}, acks ${acksC}/${acksS})`
    throw e
  }).finally(() => clearInterval(sampler))
  assert.deepEqual(ackErrors, [])
  const inOrder = (list) => list.every((v, i) => v === i)
  assert.ok(inOrder(toServer), 'client -> server in order')
  assert.ok(inOrder(toClient), 'server -> client in order')
  assert.ok(ackedC.every((n) => n === 1), 'every client ack fired once')
  assert.ok(ackedS.every((n) => n === 1), 'every server ack fired once')
  await delay(50)
  assert.equal(toServer.length, N, 'no duplicates to the server')
  assert.equal(toClient.length, N, 'no duplicates to the client')
  // Still usable afterwards.
  await exchange(client, conn)
  r.assertNoErrors()
  return { ms: Date.now() - started, pauses, maxBuffered }
}

describe('large traffic over the factory path', () => {
  it(`${N} acked events each way over an in-memory pair (small buffers)`, BIG_OPTS, async (t) => {
    const r = useResources(t)
    const env = await FACTORY_TRANSPORTS.memory.setup(r, t, { pairOpts: { highWaterMark: 1024 } })
    const { ms, pauses, maxBuffered } = await largeTraffic(env, r)
    t.diagnostic(`${ms} ms, ${pauses} pause()s of an input stream, at most ${maxBuffered} bytes in a stream's write buffer`)
  })

  it('output back-pressure: a stream that stops taking writes does not get the whole backlog', BIG_OPTS, async (t) => {
    // The addon stops producing output past 8 MiB not yet taken by JavaScript
    // (OUTPUT_HIGH_WATER); the pump must not defeat that by writing into a
    // stream whose write() already returned false. ~21 MB are sent while the
    // network takes nothing: at most ~8 MiB (+ slack) may sit in the stream.
    const r = useResources(t)
    const got = []
    const env = await FACTORY_TRANSPORTS.memory.setup(r, t, {
      onConnection: (conn) => conn.on('c2s', (i, pad) => got.push(pad.length === PAD ? i : -1)),
    })
    const client = r.createClient('ours', env.clientOptions())
    await waitHandshake('ours', client)
    await env.srv.waitConnection(0)
    const stream = client.socket
    stream.stall()
    const pad = 'é'.repeat(PAD / 2) + 'x'.repeat(PAD / 2)
    let acks = 0
    for (let i = 0; i < N; i++) client.send('c2s', i, pad, () => acks++)
    // Let the pump run until the buffered amount stops growing.
    let last = -1
    const deadline = Date.now() + 10000
    while (Date.now() < deadline) {
      await delay(200)
      if (stream.writableLength === last) break
      last = stream.writableLength
    }
    const buffered = stream.writableLength
    t.diagnostic(`${buffered} bytes in the stalled stream's write buffer`)
    stream.release()
    await waitUntil(() => got.length === N && acks === N, 30000, `${N} events and acks after the release`).catch((e) => {
      e.message += ` (server got ${got.length}, acks ${acks})`
      throw e
    })
    assert.ok(got.every((v, i) => v === i), 'in order')
    assert.ok(buffered <= 12 * 1024 * 1024,
      `the stalled stream's write buffer holds ${buffered} bytes: the pump keeps writing after write() returned false`)
    r.assertNoErrors()
  })

  it(`${N} acked events each way over a net factory`, BIG_OPTS, async (t) => {
    const r = useResources(t)
    const env = await FACTORY_TRANSPORTS.net.setup(r, t)
    const { ms, pauses, maxBuffered } = await largeTraffic(env, r)
    t.diagnostic(`${ms} ms, ${pauses} pause()s of an input stream, at most ${maxBuffered} bytes in a stream's write buffer`)
  })
})
