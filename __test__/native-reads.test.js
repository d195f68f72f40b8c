'use strict'
// Native sockets read on Node's loop (src/node/uv.rs): once reading moves
// there, tokio hears of the socket only when it is writable
// (src/engine/transport/native.rs). Writes that find the socket's buffer
// full must still finish (the writer task waits on that registration), and
// a peer's close must still end the connection.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const { HOST, useResources, waitFor, waitUntil, delay, installExitWatchdog } = require('./helpers')

installExitWatchdog()

const T = { timeout: 60000 }
// 12.5 MiB each way, sent in one synchronous loop: more than the kernel
// buffers of a loopback connection hold, so writes block.
const COUNT = 400
const BODY = 'x'.repeat(32 * 1024)

describe('native sockets read on Node\'s loop', () => {
  it('writes that block finish both ways, then the peer\'s close ends the connection', T, async (t) => {
    const r = useResources(t)
    let atServer = 0
    const srv = await r.startServer('ours', {
      onConnection: (conn) => conn.on('big', (i, body) => {
        if (i === atServer && body.length === BODY.length) atServer++
      }),
    })
    const client = await r.connectClient('ours', srv.port, HOST)
    const { conn } = await srv.waitConnection(0)
    let atClient = 0
    client.on('big', (i, body) => {
      if (i === atClient && body.length === BODY.length) atClient++
    })
    // Past the handshake: both sides read on Node's loop by now.
    await delay(100)
    for (let i = 0; i < COUNT; i++) {
      conn.send('big', i, BODY)
      client.send('big', i, BODY)
    }
    await waitUntil(() => atServer === COUNT && atClient === COUNT, 30000,
      `${COUNT} events each way in order (server has ${atServer}, client ${atClient})`)
    const gone = waitFor(conn, 'disconnect', 10000)
    client.disconnect()
    await gone
    assert.equal(atServer, COUNT)
    assert.equal(atClient, COUNT)
    r.assertNoErrors()
  })
})
