'use strict'
// The public API of ours: process lifetime (ref, unref, exit).
//
// UHURA_TEST_OLD_ONLY=1 runs the same bodies against 0.1.2 to validate the
// test logic.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  OLD_ONLY, MODULE_PATHS, useResources, delay, withTimeout, installExitWatchdog, spawnNode,
} = require('./helpers')

installExitWatchdog()

const IMPL = OLD_ONLY ? 'v0.1.2' : 'ours'

describe(`${IMPL}: process lifetime`, () => {
  const MOD = JSON.stringify(MODULE_PATHS[IMPL]())

  const runChild = (t, code) => spawnNode(t, ['-e', code], { timeout: 15000, stdio: ['ignore', 'pipe', 'pipe'] })

  async function assertExitsByItself (c, ms = 15000) {
    const res = await withTimeout(c.exited, ms + 1000, 'the child to exit')
    assert.deepStrictEqual(res, { code: 0, signal: null },
      `the child must exit by itself with code 0 (a SIGTERM means it was still alive after 15 s); stdout: ${JSON.stringify(c.out())}; stderr: ${JSON.stringify(c.err())}`)
  }

  it('(a) server + client in one process: after close() and disconnect() the process exits by itself', { timeout: 25000 }, async (t) => {
    const c = runChild(t, `
      const U = require(${MOD})
      const server = U.createServer((conn) => { conn.on('ping', (x) => conn.send('pong', x)) })
      server.listen(0, '127.0.0.1', () => {
        const c = U.createClient(server.address().port, '127.0.0.1')
        c.on('error', (e) => console.error('client error', e && e.message))
        c.on('pong', (x) => { console.log('pong ' + x); server.close(); c.disconnect() })
        c.send('ping', 42)
      })
    `)
    await assertExitsByItself(c)
    assert.match(c.out(), /pong 42/)
  })

  it('(b) a connected client that calls unref() lets its process exit', { timeout: 25000 }, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer(IMPL)
    const c = runChild(t, `
      const U = require(${MOD})
      const c = U.createClient(${srv.port}, '127.0.0.1')
      c.on('error', (e) => console.error('client error', e && e.message))
      c.once('connect', () => { c.unref(); console.log('unref ' + c.get('sessionID')) })
    `)
    await assertExitsByItself(c)
    const { conn } = await srv.waitConnection(0)
    assert.match(c.out(), new RegExp(`unref ${conn.get('sessionID')}`), 'the child had completed the handshake')
  })

  it('(c) a connected, ref\'d client keeps its process alive', { timeout: 25000 }, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer(IMPL)
    const c = runChild(t, `
      const U = require(${MOD})
      const c = U.createClient(${srv.port}, '127.0.0.1')
      c.on('error', (e) => console.error('client error', e && e.message))
      c.once('connect', () => console.log('connected'))
    `)
    await c.waitOut(/connected/)
    await delay(1000)
    assert.equal(c.child.exitCode, null, `the child exited (code ${c.child.exitCode}); stderr: ${c.err()}`)
    assert.equal(c.child.signalCode, null)
    c.child.kill('SIGKILL')
    const res = await withTimeout(c.exited, 5000, 'the killed child to exit')
    assert.equal(res.signal, 'SIGKILL')
  })

  it('(d) unref() persists across an automatic reconnect', { timeout: 25000 }, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer(IMPL)
    const c = runChild(t, `
      const U = require(${MOD})
      const c = U.createClient(${srv.port}, '127.0.0.1')
      c.on('error', (e) => console.error('client error', e && e.message))
      c.once('connect', () => {
        c.autoReconnect(10, 50)
        c.unref()
        console.log('ready')
        // Keeps the process alive long enough for the parent to force a reconnect.
        setTimeout(() => console.log('timer done'), 2000)
      })
    `)
    await c.waitOut(/ready/)
    const { conn } = await srv.waitConnection(0)
    conn.socket.destroy()
    const { reconnect } = await srv.waitConnection(1)
    assert.equal(reconnect, true, 'the child reconnected and resumed')
    await assertExitsByItself(c)
    assert.match(c.out(), /timer done/)
  })
})
