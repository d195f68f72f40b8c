'use strict'
// Code written against uhura 0.1.x (2013-2014) runs unchanged: ES5
// subclasses made with `Ctor.call(this)` plus `util.inherits` (and ES
// classes) of the client, the server and the stores. The public surface is
// in compat-surface.test.js.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const util = require('node:util')
const {
  HOST, IMPLS, SESSION_ID_RE, useResources, waitFor, waitUntil, delay, withTimeout, installExitWatchdog, pingPong,
} = require('./helpers')

installExitWatchdog()

const T = { timeout: 20000 }
const Uhura = IMPLS.ours()

/** Starts one of our servers on 127.0.0.1:0 with `options`; resolves to { server, port, conns }. */
async function listen (r, options, onConnection) {
  const srv = await r.startServer('ours', { options, onConnection })
  return srv
}

describe('ES5 subclasses (Ctor.call(this) + util.inherits)', () => {
  it('no exported constructor is a class that refuses Ctor.call(this)', T, () => {
    const ctors = {
      Client: Uhura.Client,
      Server: Uhura.Server,
      Connection: Uhura.Connection,
      RedisStore: Uhura.RedisStore,
      'session.Store': Uhura.session.Store,
      'session.MemoryStore': Uhura.session.MemoryStore,
      'session.Cookie': Uhura.session.Cookie,
      'session.Session': Uhura.session.Session,
    }
    for (const [name, C] of Object.entries(ctors)) {
      assert.equal(typeof C, 'function', `Uhura.${name} is a function`)
      assert.doesNotMatch(Function.prototype.toString.call(C), /^class\b/, `Uhura.${name} must not be a class constructor`)
    }
  })

  it('an agent-like ES5 client connects, sets its session, sends on connect, reconnects after a drop and disconnects', T, async (t) => {
    const r = useResources(t)
    const received = []
    const handshakes = []
    const srv = await listen(r, {}, (conn, reconnect) => {
      handshakes.push({ conn, reconnect, session: { ...conn.get() } })
      conn.on('hello', (name, n, cb) => received.push({ name, n, sid: conn.sessionID }))
    })

    // As an application of 2013 wrote it.
    function Agent (opts) {
      Uhura.Client.call(this)
      this.opts = opts
      this.connects = 0
      this.disconnects = 0
      this.acked = 0
      this.on('connect', function () {
        this.connects++
        this.send('hello', this.opts.name, this.connects, () => { this.acked++ })
      })
      this.on('disconnect', function () { this.disconnects++ })
    }
    util.inherits(Agent, Uhura.Client)
    Agent.prototype.start = function () {
      this.set('agent', this.opts.name)
      this.set({ version: 2, pid: 42 })
      this.connect(this.opts.port, this.opts.host)
      this.autoReconnect(10, 50)
      return this
    }
    Agent.prototype.describe = function () { return `agent ${this.opts.name}` }

    const agent = new Agent({ name: 'a1', port: srv.port, host: HOST }).start()
    t.after(() => agent.disconnect())
    assert.ok(agent instanceof Uhura.Client && agent instanceof Agent)
    assert.equal(agent.describe(), 'agent a1', 'own prototype methods are kept')
    assert.equal(agent.opts.name, 'a1', 'own fields are kept')

    await waitUntil(() => received.length === 1 && agent.acked === 1, 5000, 'the first hello and its ack')
    assert.equal(agent.ready, true)
    assert.equal(handshakes[0].reconnect, undefined, 'a new session')
    assert.equal(handshakes[0].session.agent, 'a1')
    assert.equal(handshakes[0].session.version, 2)
    assert.match(agent.get('sessionID'), SESSION_ID_RE)
    assert.equal(agent.get('agent'), 'a1')

    // The server drops it; autoReconnect brings it back on the same session.
    handshakes[0].conn.socket.destroy()
    await waitUntil(() => received.length === 2 && agent.acked === 2, 5000, 'the hello after the reconnect')
    assert.equal(agent.disconnects, 1)
    assert.equal(handshakes[1].reconnect, true, 'the session was resumed')
    assert.equal(handshakes[1].session.agent, 'a1', 'the session keys survived the reconnect')
    assert.equal(received[1].sid, received[0].sid)
    assert.deepEqual(received.map((e) => e.n), [1, 2])

    // ref/unref keep working on the subclass.
    assert.equal(agent.unref(), agent)
    assert.equal(agent.ref(), agent)

    agent.disconnect()
    await waitUntil(() => agent.disconnects === 2, 5000, 'the disconnect event')
    await delay(150)
    assert.equal(handshakes.length, 2, 'no reconnect after disconnect()')
    assert.equal(agent.ready, false)
  })

  it('connect(options, cb) works on an ES5 subclass instance', T, async (t) => {
    const r = useResources(t)
    const srv = await listen(r, {}, pingPong)
    function Worker () { Uhura.Client.call(this) }
    util.inherits(Worker, Uhura.Client)
    const w = new Worker()
    const connected = new Promise((resolve) => w.connect({ port: srv.port, host: HOST }, resolve))
    t.after(() => w.disconnect())
    await withTimeout(connected, 5000, 'connect callback')
    const pong = waitFor(w, 'pong')
    w.send('ping', 7)
    assert.deepEqual(await pong, [7])
  })

  it('an ES class extends Client as well', T, async (t) => {
    const r = useResources(t)
    const srv = await listen(r, {}, pingPong)
    class Modern extends Uhura.Client {
      constructor () {
        super()
        this.kind = 'modern'
      }
    }
    const m = new Modern()
    m.connect(srv.port, HOST)
    t.after(() => m.disconnect())
    const pong = waitFor(m, 'pong')
    m.send('ping', 3)
    assert.deepEqual(await pong, [3])
    assert.equal(m.kind, 'modern')
  })

  it('an ES5 subclass of Server, and new Server(options).start(options, cb) as createServer did', T, async (t) => {
    const r = useResources(t)
    function Hub (options) {
      Uhura.Server.call(this, options, this.onPeer.bind(this))
      this.peers = []
    }
    util.inherits(Hub, Uhura.Server)
    Hub.prototype.onPeer = function (conn) {
      this.peers.push(conn)
      conn.on('ping', (n) => conn.send('pong', n * 2))
    }
    const hub = new Hub({})
    t.after(() => hub.close())
    await new Promise((resolve) => hub.listen(0, HOST, resolve))
    const c = r.createClient('ours', hub.address().port, HOST)
    const pong = waitFor(c, 'pong')
    c.send('ping', 21)
    assert.deepEqual(await pong, [42])
    assert.equal(hub.peers.length, 1)
    assert.ok(hub instanceof Uhura.Server)

    const started = new Uhura.Server({})
    let called = 0
    assert.equal(started.start({}, (conn) => { called++; conn.on('x', () => conn.send('y')) }), started, 'start returns the server')
    t.after(() => started.close())
    await new Promise((resolve) => started.listen(0, HOST, resolve))
    const c2 = r.createClient('ours', started.address().port, HOST)
    const y = waitFor(c2, 'y')
    c2.send('x')
    await y
    assert.equal(called, 1)
  })

  it('subclassed stores (Store and MemoryStore, the connect way) keep and resume sessions', T, async (t) => {
    const r = useResources(t)
    const { Store, MemoryStore, Cookie, Session } = Uhura.session

    function HashStore () {
      Store.call(this)
      this.data = {}
      this.calls = []
    }
    util.inherits(HashStore, Store)
    HashStore.prototype.get = function (sid, cb) {
      this.calls.push('get')
      const v = this.data[sid]
      setImmediate(cb, null, v ? JSON.parse(v) : undefined)
    }
    HashStore.prototype.set = function (sid, sess, cb) {
      this.calls.push('set')
      this.data[sid] = JSON.stringify(sess)
      setImmediate(cb)
    }
    HashStore.prototype.destroy = function (sid, cb) {
      this.calls.push('destroy')
      delete this.data[sid]
      setImmediate(cb)
    }

    function CountingStore () {
      MemoryStore.call(this)
      this.sets = 0
    }
    util.inherits(CountingStore, MemoryStore)
    CountingStore.prototype.set = function (sid, sess, cb) {
      this.sets++
      MemoryStore.prototype.set.call(this, sid, sess, cb)
    }

    for (const store of [new HashStore(), new CountingStore()]) {
      assert.ok(store instanceof Store)
      assert.equal(typeof store.regenerate, 'function', 'Store.prototype methods are inherited')
      const seen = []
      const srv = await listen(r, { store }, (conn, reconnect) => seen.push({ reconnect, who: conn.get('who') }))
      const c = r.createClient('ours', srv.port, HOST)
      c.autoReconnect(10, 50)
      c.set('who', 'me')
      await waitUntil(() => seen.length === 1, 5000, 'the first handshake')
      // The server's handshake event can come before the client has its id.
      const sid = await waitUntil(() => c.get('sessionID'), 5000, 'the client to know its session id')
      await waitUntil(() => {
        const text = store instanceof HashStore ? store.data[sid] : store.sessions[sid]
        return text && JSON.parse(text).who === 'me'
      }, 5000, 'the session saved in the subclassed store')
      srv.connections[0].conn.socket.destroy()
      await waitUntil(() => seen.length === 2, 5000, 'the resumed handshake')
      assert.deepEqual(seen[1], { reconnect: true, who: 'me' })
      if (store instanceof CountingStore) assert.ok(store.sets >= 1)
      else assert.ok(store.calls.includes('get') && store.calls.includes('set'))
    }

    // Cookie and Session, the connect way.
    function LongCookie (opts) {
      Cookie.call(this, opts)
      this.long = true
    }
    util.inherits(LongCookie, Cookie)
    const cookie = new LongCookie({ maxAge: 1000 })
    assert.equal(cookie.long, true)
    assert.equal(cookie.originalMaxAge, 1000)
    assert.ok(cookie.maxAge > 900 && cookie.maxAge <= 1000)
    function MySession (req, data) { Session.call(this, req, data) }
    util.inherits(MySession, Session)
    const s = new MySession({ sessionID: 'abc' }, { a: 1 })
    assert.equal(s.id, 'abc')
    assert.equal(s.a, 1)
  })
})
