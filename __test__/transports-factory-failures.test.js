'use strict'
// The original's factory hooks when they fail: createConnection errors
// (called back, thrown, a stream that fails), and a factory server whose
// listen fails.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const { spawn } = require('node:child_process')
const {
  installExitWatchdog, HOST, ROOT, useResources, waitFor, waitUntil, waitHandshake, withTimeout, delay,
  exchange,
} = require('./helpers')

installExitWatchdog()

const TEST_OPTS = { timeout: 20000 }
const WAIT = 5000

describe('factory hooks: createServer / createConnection', () => {
  it('createConnection errors reach the client as error events, no crash; autoReconnect calls the factory again', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { createServer: net.createServer } })
    // 1. Failing, synchronously: an 'error' carrying the factory's own error; no retry without autoReconnect.
    const boom = new Error('factory boom')
    let calls1 = 0
    const c1 = r.createClient('ours', { createConnection: (o, cb) => { calls1++; cb(boom) } })
    const connects1 = []
    c1.on('connect', () => connects1.push(1))
    const [err1] = await waitFor(c1, 'error', WAIT)
    assert.equal(err1, boom, "the error event carries the factory's error")

    // 2. Failing asynchronously twice, then succeeding: with autoReconnect the
    //    factory is called again, and the client connects in the end.
    let calls2 = 0
    const errors2 = []
    const c2 = r.createClient('ours', {
      createConnection: (o, cb) => {
        calls2++
        const n = calls2
        setImmediate(() => (n <= 2 ? cb(new Error(`async boom ${n}`)) : cb(null, net.connect(srv.port, HOST))))
      },
    })
    c2.on('error', (e) => errors2.push(e.message))
    c2.autoReconnect(10, 50)
    await waitHandshake('ours', c2, WAIT)
    assert.deepEqual([...new Set(errors2)], ['async boom 1', 'async boom 2'])
    assert.equal(calls2, 3)
    const { conn } = await srv.waitConnection(0)
    await exchange(c2, conn)

    // 3. A factory that throws: also an 'error' event, not an exception.
    const thrown = new Error('factory threw')
    const c3 = r.createClient('ours', { createConnection: () => { throw thrown } })
    const [err3] = await waitFor(c3, 'error', WAIT)
    assert.equal(err3, thrown)

    // 4. A stream that fails (nothing listens): the stream's error reaches the client, once.
    const dead = net.createServer()
    await new Promise((resolve) => dead.listen(0, HOST, resolve))
    const deadPort = dead.address().port
    await new Promise((resolve) => dead.close(resolve))
    const c4 = r.createClient('ours', { createConnection: (o, cb) => cb(null, net.connect(deadPort, HOST)) })
    const errors4 = []
    c4.on('error', (e) => errors4.push(e))
    await waitUntil(() => errors4.length > 0, WAIT, "c4's error event")
    await delay(100)
    assert.equal(errors4[0].code, 'ECONNREFUSED')
    assert.equal(errors4.length, 1)

    assert.equal(connects1.length, 0, 'c1 never connected')
    assert.equal(calls1, 1, 'no retry without autoReconnect')
    for (const c of [c1, c3, c4]) c.disconnect()
  })

  it('one error event per failed createConnection attempt', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const seen = {}
    const record = (name, client) => { seen[name] = []; client.on('error', (e) => seen[name].push(e)) }
    const boom = new Error('factory boom')
    const thrown = new Error('factory threw')
    const cbSync = r.createClient('ours', { createConnection: (o, cb) => cb(boom) })
    const cbAsync = r.createClient('ours', { createConnection: (o, cb) => setImmediate(cb, boom) })
    const throws = r.createClient('ours', { createConnection: () => { throw thrown } })
    record('callback', cbSync)
    record('async callback', cbAsync)
    record('throw', throws)
    await waitUntil(() => Object.values(seen).every((l) => l.length > 0), WAIT, 'an error on each client')
    await delay(150)
    const summary = {}
    for (const [name, list] of Object.entries(seen)) {
      summary[name] = list.map((e) => (e === boom || e === thrown ? 'the factory error' : `another Error(${JSON.stringify(e.message)})`))
    }
    assert.deepEqual(summary, {
      callback: ['the factory error'],
      'async callback': ['the factory error'],
      throw: ['the factory error'],
    })
    for (const c of [cbSync, cbAsync, throws]) c.disconnect()
  })

  it("the factory server's 'error' (EADDRINUSE) is the uhura server's 'error'; a failed listen does not keep the process alive", TEST_OPTS, async (t) => {
    const r = useResources(t)
    const taken = await r.rawServer(() => {})
    const srv = r.createServer('ours', { options: { createServer: net.createServer } })
    srv.server.listen(taken.port, HOST)
    const [err] = await waitFor(srv.server, 'error', WAIT, { label: 'uhura server' })
    assert.equal(err.code, 'EADDRINUSE')
    assert.equal(srv.server.listening, false)
    srv.errors.length = 0 // expected; the helper's close() releases the server

    // After a failed listen, nothing else keeps the process alive: it exits
    // (checked in child processes; the native path as the reference).
    const script = (options) => `
      const U = require(${JSON.stringify(ROOT)}); const net = require('net')
      const taken = net.createServer().listen(0, '127.0.0.1', () => {
        const s = U.createServer(${options}, () => {})
        s.on('error', (e) => { console.log(e.code); taken.close() })
        s.listen(taken.address().port, '127.0.0.1')
      })`
    const run = (options) => {
      const child = r.trackChild(spawn(process.execPath, ['-e', script(options)], { stdio: ['ignore', 'pipe', 'inherit'] }))
      let out = ''
      child.stdout.on('data', (d) => { out += d })
      return withTimeout(new Promise((resolve) => child.once('exit', (code) => resolve({ code, out: out.trim() }))), 4000,
        `a process whose uhura server (${options}) failed to listen to exit`)
        .catch((e) => ({ code: null, out: out.trim(), timedOut: e.message }))
    }
    const [native, factory] = await Promise.all([run('{}'), run('{ createServer: net.createServer }')])
    assert.deepEqual(native, { code: 0, out: 'EADDRINUSE' }, 'native path')
    assert.deepEqual(factory, { code: 0, out: 'EADDRINUSE' }, 'factory path: the server still holds the process open')
  })
})
