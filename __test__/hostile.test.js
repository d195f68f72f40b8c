'use strict'
// Hostile peers and unusual input: argument counts, lifecycle event names
// from the network, JSON that JSON.parse accepts, poison messages, refused
// sets and `__proto__` keys. Whatever a peer sends, the process survives and
// the other connections carry on (docs/PROTOCOL.md §2, §5, §7, §9).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const {
  HOST, MODULE_PATHS, useResources, waitFor, waitUntil, collect, delay, parseFrames, installExitWatchdog,
  CLIENT_HANDSHAKE, pingPong, roundTrip,
} = require('./helpers')

installExitWatchdog()

const U = require('..')
const SERVER_HELLO = '[\n["_set","sessionID","aaaaaaaaaaaaaaaaaaaaaaaa"]\n,\n{"args":["connect",{"objectMode":true,"enableAcks":true}],"id":"c"}'
const RESERVED = ['error', 'connect', 'disconnect', 'drop', 'reconnecting', 'newListener', 'removeListener', 'start']

function nested (depth, inner = 1) {
  let v = inner
  for (let i = 0; i < depth; i++) v = [v]
  return v
}
function nestedText (depth) {
  return '['.repeat(depth) + '1' + ']'.repeat(depth)
}

// Runs `script` in a child process (so a crash cannot take the test runner
// down) and resolves with { code, out }.
function runChild (r, script, ms = 15000) {
  return new Promise((resolve, reject) => {
    const child = r.trackChild(spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] }))
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { out += d })
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`child timed out:\n${out}`)) }, ms)
    child.on('exit', (code) => { clearTimeout(t); resolve({ code, out }) })
  })
}

// A server of ours, a good client answering ping, and a raw socket past its handshake.
async function serverAndRaw (r, options = {}, onConnection) {
  const srv = await r.startServer('ours', {
    options,
    onConnection: (conn) => {
      pingPong(conn)
      if (onConnection) onConnection(conn)
    },
  })
  const good = await r.connectClient('ours', srv.port)
  await srv.waitConnection(0)
  const raw = r.rawConnect(srv.port)
  await raw.connected()
  raw.socket.write(CLIENT_HANDSHAKE)
  await raw.waitText(/"connect"/)
  const { conn } = await srv.waitConnection(1)
  return { srv, good, raw, conn }
}

// A raw server that completes the handshake of any client, then writes `after`.
function hostileServer (r, after) {
  return r.rawServerAfterStart((s) => s.write(SERVER_HELLO + after))
}

function tooManyArgs (n = 200000) {
  return JSON.stringify(['x', ...new Array(n).fill(1)])
}

describe('1. argument counts (maxArgs)', () => {
  // Each in a child process: before the fix the whole process died of a RangeError.
  const MANY = "JSON.stringify(['x', ...new Array(200000).fill(1)])"
  const MANY_SET = "JSON.stringify(['_set', 'k', ...new Array(200000).fill(1)])"
  for (const [what, msg] of [['an event', MANY], ['a _set', MANY_SET]]) {
    it(`server: ${what} with 200,000 arguments is a protocol error of that connection`, { timeout: 30000 }, async (t) => {
      const r = useResources(t)
      const script = `
        const U = require(${JSON.stringify(MODULE_PATHS.ours())})
        const net = require('net')
        const errors = []
        const srv = U.createServer({ logErrors: true }, (conn) => {
          conn.on('error', (e) => errors.push(e.message))
          conn.on('disconnect', () => {
            console.log('RESULT ' + JSON.stringify(errors))
            process.exit(0)
          })
        })
        srv.listen(0, '127.0.0.1', () => {
          const s = net.connect(srv.address().port, '127.0.0.1')
          s.on('error', () => {})
          s.write(${JSON.stringify(CLIENT_HANDSHAKE)} + '\\n,\\n' + ${msg})
        })`
      const { code, out } = await runChild(r, script)
      assert.equal(code, 0, out)
      const errors = JSON.parse(out.match(/RESULT (.*)/)[1])
      assert.equal(errors.length, 1, out)
      assert.match(errors[0], /maxArgs/)
    })
  }

  it('client: a hostile server sending 200,000 arguments gets an error, not a crash', { timeout: 30000 }, async (t) => {
    const r = useResources(t)
    const rs = await hostileServer(r, '\n,\n' + tooManyArgs())
    const client = r.createClient('ours', { port: rs.port, host: HOST, logErrors: false })
    const xs = collect(client, 'x')
    const [err] = await waitFor(client, 'error', 10000)
    assert.match(err.message, /maxArgs/)
    await waitFor(client, 'disconnect', 5000)
    assert.equal(xs.length, 0)
  })

  it('maxArgs is configurable on both sides; send() refuses more at once', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const { raw, conn, good } = await serverAndRaw(r, { maxArgs: 3 })
    const got = collect(conn, 'x')
    raw.socket.write('\n,\n["x",1,2,3]')
    await waitUntil(() => got.length === 1, 5000, 'the 3-argument event')
    raw.socket.write('\n,\n["x",1,2,3,4]')
    const [err] = await waitFor(conn, 'error', 5000)
    assert.match(err.message, /maxArgs/)
    await raw.waitClosed()
    await roundTrip(good, 1, 'the good client')

    const client = r.createClient('ours', { port: 1, host: HOST, maxArgs: 2 })
    assert.throws(() => client.send('e', 1, 2, 3), (e) => e instanceof TypeError && /maxArgs \(2\)/.test(e.message))
    client.send('e', 1, 2) // within the limit: queued
    const server = await r.startServer('ours', { options: { maxArgs: 1 } })
    await r.connectClient('ours', server.port)
    const { conn: conn2 } = await server.waitConnection(0)
    assert.throws(() => conn2.send('e', 1, 2), TypeError)
  })
})

describe('2. lifecycle names from the peer', () => {
  it('server (logErrors on): reserved names are acked and ignored; nothing crashes or is faked', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const { raw, conn, good } = await serverAndRaw(r, { logErrors: true })
    const seen = []
    // Adding listeners raises newListener locally: those (with a function argument) are not counted.
    const names = [...RESERVED, 'invalidateSession', '_uhura_hb', 'ok']
    names.sort((a, b) => Number(/Listener$/.test(a)) - Number(/Listener$/.test(b)))
    for (const name of names) conn.on(name, (...a) => { if (!a.some((x) => typeof x === 'function')) seen.push([name, ...a]) })
    let msgs = ''
    for (const name of [...RESERVED, 'invalidateSession']) {
      msgs += `\n,\n["${name}"]\n,\n["${name}",null]\n,\n{"args":["${name}",null],"id":"id-${name}"}`
    }
    msgs += '\n,\n["ok",1]'
    raw.socket.write(msgs)
    await waitUntil(() => seen.some((e) => e[0] === 'ok'), 5000, "the 'ok' event")
    await delay(100)
    assert.deepStrictEqual(seen, [['ok', 1]])
    assert.equal(conn.ready, true)
    // Acked, so an old peer never resends them.
    await waitUntil(() => parseFrames(raw.text()).filter((m) => m.args && /^ack::id-/.test(m.args[0])).length === RESERVED.length + 1, 5000, 'the acks')
    await roundTrip(good, 2, 'the good client')
  })

  it('client (logErrors on): a hostile server cannot raise lifecycle events', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    let msgs = ''
    for (const name of RESERVED) msgs += `\n,\n["${name}",null]\n,\n{"args":["${name}"],"id":"i-${name}"}`
    msgs += '\n,\n["ok",1]'
    const rs = await hostileServer(r, msgs)
    const client = r.createClient('ours', { port: rs.port, host: HOST, logErrors: true })
    const seen = []
    const names = [...RESERVED, 'ok'].sort((a, b) => Number(/Listener$/.test(a)) - Number(/Listener$/.test(b)))
    for (const name of names) client.on(name, (...a) => { if (!a.some((x) => typeof x === 'function')) seen.push(name) })
    await waitUntil(() => seen.includes('ok'), 5000, "the 'ok' event")
    await delay(100)
    assert.deepStrictEqual(seen, ['connect', 'ok'], 'one connect (the handshake), then ok')
  })

  it('a listener that throws gets an error event (ERR_UHURA_LISTENER), the process carries on', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const { raw, conn } = await serverAndRaw(r, { logErrors: true })
    conn.on('boom', (v) => { throw v === 'null' ? null : new Error('listener bug') })
    const errors = collect(conn, 'error')
    const after = collect(conn, 'after')
    raw.socket.write('\n,\n["boom","x"]\n,\n["boom","null"]\n,\n["after",1]')
    await waitUntil(() => after.length === 1 && errors.length === 2, 5000, 'two listener errors and the next event')
    assert.equal(errors[0][0].code, 'ERR_UHURA_LISTENER')
    assert.match(errors[0][0].message, /"boom".*listener bug/)
    assert.equal(errors[0][0].cause.message, 'listener bug')
    assert.equal(errors[1][0].cause, null)
    assert.equal(conn.ready, true)
  })

  it('disconnect() inside a disconnect listener does not crash', { timeout: 30000 }, async (t) => {
    const r = useResources(t)
    const script = `
      const U = require(${JSON.stringify(MODULE_PATHS.ours())})
      process.on('exit', (c) => { if (c === 0) console.log('SURVIVED') })
      const srv = U.createServer((conn) => {
        conn.on('disconnect', () => conn.disconnect())
        setTimeout(() => conn.disconnect(), 20)
      })
      srv.listen(0, '127.0.0.1', () => {
        const port = srv.address().port
        let left = 3
        const done = () => { if (--left === 0) setTimeout(() => process.exit(0), 300) }
        // Disconnected by the server; by itself; and with the stop landing in the same drain.
        const a = U.createClient(port, '127.0.0.1')
        a.on('disconnect', () => { a.disconnect(); done() })
        const b = U.createClient(port, '127.0.0.1')
        b.on('connect', () => b.disconnect())
        b.on('disconnect', () => { b.disconnect(); b.disconnect(); done() })
        const c = U.createClient(port, '127.0.0.1')
        c.on('disconnect', () => { const t = Date.now() + 200; while (Date.now() < t); c.disconnect(); done() })
      })`
    const { code, out } = await runChild(r, script)
    assert.equal(code, 0, out)
    assert.match(out, /SURVIVED/)
  })

  it('invalidateSession from the server still works with the old packages (0.1.2 client)', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: (conn) => setTimeout(() => conn.invalidateSession(), 50) })
    const client = r.createClient('v0.1.2', srv.port, HOST)
    const inv = waitFor(client, 'invalidateSession', 5000)
    await inv
    assert.deepStrictEqual(client.session, {})
  })
})

describe('7. what JSON.parse accepts is accepted', () => {
  it('lone surrogates, 1e400 and deep nesting in _set, event names and ids', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const { raw, conn, good } = await serverAndRaw(r)
    const sets = collect(conn, '_set')
    const events = collect(conn, '\ud800name')
    const errors = collect(conn, 'error')
    raw.socket.write(
      '\n,\n["_set","lone","\\ud800"]' +
      `\n,\n["_set",{"big":1e400,"deep":${nestedText(600)}}]` +
      '\n,\n["_set","\\udc00key",1]' +
      `\n,\n{"args":["\\ud800name","\\udfff",1e400,${nestedText(998)}],"id":"id\\ud800"}`)
    await waitUntil(() => events.length === 1 && sets.length === 3, 5000, 'the sets and the event')
    assert.deepStrictEqual(errors, [])
    assert.equal(events[0][0], '\udfff')
    assert.equal(events[0][1], Infinity)
    assert.equal(conn.get('lone'), '\ud800', 'the application sees the exact string')
    assert.equal(conn.get('big'), Infinity)
    assert.deepStrictEqual(conn.get('deep'), nested(600))
    assert.equal(conn.get('\udc00key'), 1)
    await raw.waitText(/ack::id\\ud800/)
    assert.equal(conn.ready, true)
    await roundTrip(good, 3, 'the good client')
  })

  it('maxDepth is configurable and applied by the framing and the session alike', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const { raw, conn } = await serverAndRaw(r, { maxDepth: 10 })
    const sets = collect(conn, '_set')
    // `["_set","k",[[...]]]`: the message array is level 1.
    raw.socket.write(`\n,\n["_set","k",${nestedText(9)}]\n,\n{"args":["e",${nestedText(9)}]}`)
    await waitUntil(() => sets.length === 1, 5000, 'the 10-deep set')
    raw.socket.write(`\n,\n["_set","k",${nestedText(10)}]`)
    const [err] = await waitFor(conn, 'error', 5000)
    assert.match(err.message, /maxDepth/)
    await raw.waitClosed()
  })

  for (const [what, setup] of [
    ['a lone surrogate', "c.session.lone = '\\ud800'; c.session['\\udc00k'] = 1"],
    ['a value nested 600 deep', 'let v = 1; for (let i = 0; i < 600; i++) v = [v]; c.session.deep = v'],
  ]) {
    it(`a uhura 0.1.2 client whose session holds ${what} connects once and delivers`, { timeout: 20000 }, async (t) => {
      const r = useResources(t)
      const srv = await r.startServer('ours')
      const clientErrors = collect(srv.server, 'clientError')
      const got = []
      srv.events.on('connection', ({ conn }) => conn.on('hello', (v) => got.push(v)))
      const U012 = require('uhura-0.1.2')
      const c = U012.createClient(srv.port, HOST)
      r.clients.push({ impl: 'v0.1.2', client: c })
      c.on('error', () => {})
      new Function('c', setup)(c) // eslint-disable-line no-new-func
      c.autoReconnect(10, 50)
      // The session goes out again on the reconnect: still one handshake each.
      c.send('hello', 1)
      await waitUntil(() => got.length === 1, 5000, 'the event')
      // The server has the event; the client must also have read its
      // session id, or its reconnect is a new session, not a resume.
      await waitUntil(() => c.get('sessionID') != null, 5000, 'the client to know its session id')
      c.socket.destroy()
      await waitUntil(() => srv.connections.length === 2, 5000, 'the reconnect')
      await delay(500)
      assert.equal(srv.connections.length, 2, 'one handshake per connection, no loop')
      assert.deepStrictEqual(clientErrors, [])
      assert.equal(srv.connections[1].reconnect, true, 'the session resumed')
    })
  }
})

describe('8. poison messages', () => {
  it('send() and set() refuse synchronously what our own limits would refuse', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const oks = []
    const srv = await r.startServer('ours', { options: { maxMessageSize: 4096 }, onConnection: (conn) => conn.on('ok', (v) => oks.push(v)) })
    const client = r.createClient('ours', { port: srv.port, host: HOST, maxDepth: 50, maxMessageSize: 4096 })
    assert.throws(() => client.send('deep', nested(50)), /maxDepth \(50\)/)
    assert.throws(() => client.send('big', 'x'.repeat(5000)), /maxMessageSize/)
    assert.throws(() => client.set('deep', nested(50)), /maxDepth/)
    assert.throws(() => client.set({ deep: nested(49) }), /maxDepth/)
    assert.equal(client.get('deep'), undefined, 'a refused set changes nothing')
    client.send('ok', nested(48), 'y'.repeat(3000))
    client.set('fine', nested(48))
    await waitUntil(() => oks.length === 1, 5000, "the 'ok' event")
    assert.deepStrictEqual(oks[0], nested(48))
    const { conn } = await srv.waitConnection(0)
    await waitUntil(() => conn.get('fine') !== undefined, 5000, 'the set')
  })

  it('a message the peer refuses is dropped after 3 refusals (drop + ERR_UHURA_REFUSED), what follows is delivered', { timeout: 30000 }, async (t) => {
    const r = useResources(t)
    // The server's reader refuses more than 20 levels; our client's own limit is 1000.
    const srv = await r.startServer('ours', { options: { maxDepth: 20 } })
    const after = []
    srv.events.on('connection', ({ conn }) => conn.on('after', (v) => after.push(v)))
    const client = r.createClient('ours', { port: srv.port, host: HOST })
    client.autoReconnect(10, 50)
    const drops = collect(client, 'drop')
    let cbErr
    client.send('poison', nested(40), (err) => { cbErr = err || 'acked' })
    client.send('after', 1)
    await waitUntil(() => after.length === 1, 15000, 'the event behind the poison to arrive')
    assert.equal(cbErr.code, 'ERR_UHURA_REFUSED')
    assert.equal(drops.length, 1)
    assert.equal(drops[0][0].code, 'ERR_UHURA_REFUSED')
    const handshakes = srv.connections.length
    assert.ok(handshakes >= 3 && handshakes <= 5, `3 refusals, then delivery: ${handshakes} connections`)
    await delay(300)
    assert.equal(srv.connections.length, handshakes, 'no more reconnects')
  })
})

describe('9. a refused set() fails nothing else', () => {
  it('pending ack callbacks survive a set() the limits refuse, and a deep one they allow', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: (conn) => conn.on('x', () => {}) })
    const client = await r.connectClient('ours', srv.port)
    const results = []
    for (let i = 0; i < 5; i++) client.send('x', i, (err) => results.push(err ? err.code : 'ok'))
    // 200 levels: beyond serde_json's default of 128, within maxDepth.
    client.set('deep', nested(200))
    assert.throws(() => client.set('deeper', nested(1000)), TypeError)
    assert.equal(client.get('deeper'), undefined)
    for (let i = 0; i < 5; i++) client.send('x', i, (err) => results.push(err ? err.code : 'ok'))
    await waitUntil(() => results.length === 10, 5000, 'every ack')
    assert.deepStrictEqual(results, new Array(10).fill('ok'))
    const { conn } = await srv.waitConnection(0)
    await waitUntil(() => conn.get('deep') !== undefined, 5000, 'the deep set on the server')
    assert.deepStrictEqual(conn.get('deep'), nested(200))
  })
})

describe('10. __proto__ and friends are plain session data', () => {
  const SETS = '\n,\n["_set","__proto__",{"polluted":1}]' +
    '\n,\n["_set",{"__proto__":{"polluted":2},"constructor":{"c":1},"prototype":3}]' +
    '\n,\n["_set","constructor","k"]\n,\n["done"]'

  function assertPlain (session) {
    assert.equal(Object.getPrototypeOf(session), Object.prototype)
    assert.equal(session.polluted, undefined)
    assert.ok(Object.prototype.hasOwnProperty.call(session, '__proto__'))
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(session, '__proto__').value, { polluted: 2 })
    assert.equal(session.constructor, 'k')
    assert.equal(session.prototype, 3)
    assert.equal({}.polluted, undefined)
  }

  it('server: a client _set of __proto__ (key and object form)', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const { raw, conn } = await serverAndRaw(r)
    raw.socket.write(SETS)
    await waitFor(conn, 'done', 5000)
    assertPlain(conn.session)
    assert.deepStrictEqual(conn.get('__proto__'), { polluted: 2 })
  })

  it('client: a server _set of __proto__', { timeout: 20000 }, async (t) => {
    const r = useResources(t)
    const rs = await hostileServer(r, SETS)
    const client = r.createClient('ours', rs.port, HOST)
    await waitFor(client, 'done', 5000)
    assertPlain(client.session)
  })

  it('a session loaded from a store (connect Session) keeps its prototype', () => {
    const data = JSON.parse('{"__proto__":{"polluted":1},"constructor":2,"a":1}')
    const sess = new U.session.Session({ sessionID: 'x', sessionStore: null }, data)
    assert.equal(typeof sess.save, 'function', 'the Session methods are still there')
    assert.equal(sess.polluted, undefined)
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(sess, '__proto__').value, { polluted: 1 })
    assert.equal(sess.constructor, 2)
  })
})
