'use strict'
// Unix sockets: listen(path), listen({ path }), createClient({ path }), stale
// and live socket files, close() removing the file, 0.1.2 interop. Sockets
// live under os.tmpdir().

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const {
  installExitWatchdog, useResources, waitFor, waitUntil, waitHandshake, withTimeout, exchange,
  disconnectAndCheck, listenAndWait,
} = require('./helpers')

installExitWatchdog()

const TEST_OPTS = { timeout: 20000 }
const WAIT = 5000

let sockSeq = 0
function sockPath (t) {
  const p = path.join(os.tmpdir(), `uhura-tx-${process.pid}-${++sockSeq}.sock`)
  try { fs.unlinkSync(p) } catch (_) {}
  t.after(() => { try { fs.unlinkSync(p) } catch (_) {} })
  return p
}

async function closeServer (srv) {
  await withTimeout(new Promise((resolve) => srv.server.close(resolve)), WAIT, 'server.close(cb)')
  srv.closed = true
}

const isSocketFile = (p) => {
  try { return fs.statSync(p).isSocket() } catch (_) { return false }
}

describe('Unix sockets', () => {
  it("listen('/path.sock'): address() is the path; createClient({ path }); close() removes the file", TEST_OPTS, async (t) => {
    const r = useResources(t)
    const p = sockPath(t)
    const srv = r.createServer('ours')
    await listenAndWait(srv.server, p)
    assert.equal(srv.server.address(), p)
    assert.equal(srv.server.listening, true)
    assert.ok(isSocketFile(p), 'the socket file exists')
    const client = r.createClient('ours', { path: p })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    await exchange(client, conn)
    await disconnectAndCheck(client, conn)
    await closeServer(srv)
    assert.equal(fs.existsSync(p), false, 'close() removed the socket file')
    r.assertNoErrors()
  })

  it('listen({ path }, cb) and a client with autoReconnect over the Unix socket', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const p = sockPath(t)
    const srv = r.createServer('ours')
    await listenAndWait(srv.server, { path: p })
    assert.equal(srv.server.address(), p)
    const client = r.createClient('ours', { path: p })
    client.autoReconnect(10, 50)
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    const sid = client.get('sessionID')
    await exchange(client, conn)
    conn.socket.destroy()
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    assert.equal(reconnect, true)
    assert.equal(conn2.sessionID, sid)
    await waitUntil(() => client.ready, WAIT, 'client.ready')
    await exchange(client, conn2)
    // close() stops listening and removes the file at once; as with net, its
    // callback waits for the open connection to end.
    const closed = withTimeout(new Promise((resolve) => srv.server.close(resolve)), WAIT, 'server.close(cb)')
    await waitUntil(() => !fs.existsSync(p), WAIT, 'the socket file to be removed by close()')
    const probe = net.connect(p)
    const [probeErr] = await waitFor(probe, 'error', WAIT)
    assert.equal(probeErr.code, 'ENOENT')
    assert.equal(srv.connections.length, 2, 'the probe was not let in')
    client.disconnect()
    await closed
    srv.closed = true
    r.assertNoErrors()
  })

  it('a stale socket file left by a SIGKILLed process does not stop listen()', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const p = sockPath(t)
    const child = r.trackChild(spawn(process.execPath, ['-e',
      `require('net').createServer().listen(${JSON.stringify(p)}, () => console.log('ready'))`,
    ], { stdio: ['ignore', 'pipe', 'inherit'] }))
    await waitUntil(() => child.stdout.read() !== null || isSocketFile(p), WAIT, 'the child to listen')
    await waitUntil(() => isSocketFile(p), WAIT, 'the socket file')
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await withTimeout(exited, WAIT, 'the child to exit')
    assert.ok(isSocketFile(p), 'the dead process left its socket file behind')
    // Nobody listens on it: connecting is refused.
    const probe = net.connect(p)
    const [probeErr] = await waitFor(probe, 'error', WAIT)
    assert.equal(probeErr.code, 'ECONNREFUSED')

    const srv = r.createServer('ours')
    await listenAndWait(srv.server, p)
    assert.equal(srv.server.address(), p)
    const client = r.createClient('ours', { path: p })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('a live socket gives EADDRINUSE and is left alone (ours and a net server)', TEST_OPTS, async (t) => {
    const r = useResources(t)
    // 1. Ours listening; a second uhura server on the same path.
    const p = sockPath(t)
    const srv1 = r.createServer('ours')
    await listenAndWait(srv1.server, p)
    const srv2 = r.createServer('ours')
    srv2.server.listen(p)
    const [err] = await waitFor(srv2.server, 'error', WAIT, { label: 'second server' })
    assert.equal(err.code, 'EADDRINUSE')
    assert.equal(srv2.server.listening, false)
    srv2.errors.length = 0
    srv2.closed = true
    assert.ok(isSocketFile(p), 'the live socket file is still there')
    const client = r.createClient('ours', { path: p })
    await waitHandshake('ours', client)
    const { conn } = await srv1.waitConnection(0)
    await exchange(client, conn)

    // 2. A live net server in this process: the same.
    const p2 = sockPath(t)
    const accepted = []
    const netServer = net.createServer((s) => {
      accepted.push(s)
      s.on('error', () => {}) // a liveness probe may hang up first
      s.end('hi')
    })
    t.after(() => new Promise((resolve) => { for (const s of accepted) s.destroy(); netServer.close(() => resolve()) }))
    await new Promise((resolve) => netServer.listen(p2, resolve))
    const srv3 = r.createServer('ours')
    srv3.server.listen(p2)
    const [err3] = await waitFor(srv3.server, 'error', WAIT, { label: 'third server' })
    assert.equal(err3.code, 'EADDRINUSE')
    srv3.errors.length = 0
    srv3.closed = true
    const s = net.connect(p2)
    s.setEncoding('utf8')
    const [data] = await waitFor(s, 'data', WAIT)
    assert.equal(data, 'hi', 'the net server still accepts connections')
    s.destroy()
    r.assertNoErrors()
  })

  it('a uhura@0.1.2 client (createConnection -> net.connect(path)) talks to our Unix server', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const p = sockPath(t)
    const srv = r.createServer('ours')
    await listenAndWait(srv.server, p)
    const client = r.createClient('v0.1.2', { path: p, createConnection: (o, cb) => cb(null, net.connect(p)) })
    await waitHandshake('v0.1.2', client)
    const { conn } = await srv.waitConnection(0)
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('our client ({ path }) talks to a uhura@0.1.2 server on a Unix socket', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const p = sockPath(t)
    const srv = r.createServer('v0.1.2')
    await listenAndWait(srv.server, p)
    const client = r.createClient('ours', { path: p })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('our server with a net factory on a Unix socket: listen(path) and address() delegate', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const p = sockPath(t)
    const srv = r.createServer('ours', { options: { createServer: net.createServer } })
    await listenAndWait(srv.server, p)
    assert.equal(srv.server.address(), p)
    const client = r.createClient('ours', { path: p })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    assert.ok(conn.socket instanceof net.Socket)
    await exchange(client, conn)
    await disconnectAndCheck(client, conn)
    await closeServer(srv)
    assert.equal(fs.existsSync(p), false)
  })
})
