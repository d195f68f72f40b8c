'use strict'
// Traffic between a client and a server connection, checked: ping/pong
// round trips, acked sends, a full exchange of events and session keys, and
// a disconnect seen by both sides.

const assert = require('node:assert/strict')
const { DEFAULT_WAIT, waitFor, waitUntil, withTimeout } = require('./wait')
const { SESSION_ID_RE } = require('./wire')

// Text that exercises the JSON escaping and UTF-8 of both sides.
const UNICODE = 'héllo ☃ 😀 "q" \\ \n \u2028 𝄞 👨‍👩‍👧 ключ 鍵'

/** A server connection handler: answers each `ping` with a `pong` of the same argument. */
function pingPong (conn) {
  conn.on('ping', (n) => conn.send('pong', n))
}

/** Sends `ping` n; the very next `pong` the client gets must carry n. */
async function roundTrip (client, n, label = 'client') {
  const pong = waitFor(client, 'pong', DEFAULT_WAIT, { label: `${label} (pong)` })
  client.send('ping', n)
  assert.deepStrictEqual(await pong, [n], `${label} must round-trip an event`)
}

/**
 * Sends `ping` n and waits for the `pong` that carries n, passing over
 * pongs of other round trips (a client that resumed, or talks to 0.1.2,
 * may see an earlier one again).
 */
async function roundTripMatching (client, n, label = 'client') {
  const pong = waitFor(client, 'pong', DEFAULT_WAIT, { label: `${label} (pong)`, filter: (m) => m === n })
  client.send('ping', n)
  assert.deepStrictEqual(await pong, [n], `${label} must round-trip an event`)
}

/** A send with an ack callback: resolves once it is called without error, rejects with its error. */
function sendAcked (emitter, event, ...args) {
  return withTimeout(new Promise((resolve, reject) => {
    emitter.send(event, ...args, (err) => (err ? reject(err) : resolve()))
  }), DEFAULT_WAIT, `ack of '${event}'`)
}

/** Events both ways (unicode, large, acked), set/get both ways, sessionID, an acked burst in order. */
async function exchange (client, conn) {
  const sid = client.get('sessionID')
  assert.match(String(sid), SESSION_ID_RE)
  assert.equal(conn.get('sessionID'), sid)

  const gotByServer = waitFor(conn, 'to-server')
  await sendAcked(client, 'to-server', { s: UNICODE, n: 1 }, [1, null, true])
  assert.deepEqual(await gotByServer, [{ s: UNICODE, n: 1 }, [1, null, true]])

  const gotByClient = waitFor(client, 'to-client')
  await sendAcked(conn, 'to-client', UNICODE, 'é😀'.repeat(30000))
  const [s, big] = await gotByClient
  assert.equal(s, UNICODE)
  assert.equal(big, 'é😀'.repeat(30000))

  // A unicode event name, without an ack callback.
  const named = waitFor(conn, 'ëvent 😀')
  client.send('ëvent 😀', 'x')
  assert.deepEqual(await named, ['x'])

  // The session, both ways.
  client.set('fromClient', { v: UNICODE })
  await waitUntil(() => conn.get('fromClient') !== undefined, DEFAULT_WAIT, "the server to see client.set('fromClient')")
  assert.deepEqual(conn.get('fromClient'), { v: UNICODE })
  conn.set({ fromServer: 'ß', n: 2 })
  await waitUntil(() => client.get('fromServer') !== undefined, DEFAULT_WAIT, 'the client to see conn.set({ fromServer })')
  assert.equal(client.get('fromServer'), 'ß')
  assert.equal(client.get('n'), 2)
  assert.equal(client.get().sessionID, sid)
  assert.equal(conn.get('sessionID'), sid)

  // A burst, in order, every ack.
  const seen = []
  const onBurst = (i) => seen.push(i)
  conn.on('burst', onBurst)
  const acks = []
  for (let i = 0; i < 300; i++) acks.push(sendAcked(client, 'burst', i))
  await Promise.all(acks)
  await waitUntil(() => seen.length === 300, DEFAULT_WAIT, '300 burst events')
  assert.deepEqual(seen, Array.from({ length: 300 }, (_, i) => i))
  conn.removeListener('burst', onBurst)
}

/** client.disconnect(): both sides see 'disconnect', the given streams close, the client is not ready. */
async function disconnectAndCheck (client, conn, { clientStream, serverStream } = {}) {
  const serverSaw = waitFor(conn, 'disconnect', DEFAULT_WAIT, { label: 'server connection' })
  const clientSaw = waitFor(client, 'disconnect', DEFAULT_WAIT, { label: 'client' })
  client.disconnect()
  await Promise.all([serverSaw, clientSaw])
  assert.equal(client.ready, false)
  if (clientStream) await waitUntil(() => clientStream.destroyed, DEFAULT_WAIT, 'the client stream to be closed')
  if (serverStream) await waitUntil(() => serverStream.destroyed, DEFAULT_WAIT, 'the server stream to be closed')
}

module.exports = { UNICODE, pingPong, roundTrip, roundTripMatching, sendAcked, exchange, disconnectAndCheck }
