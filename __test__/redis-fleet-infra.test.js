'use strict'
// redisStore's production options against real redis-servers on loopback:
// rediss:// with `tls: { ca, cert, key }`, a Redis Cluster (`cluster: [urls]`)
// that loses a master and gets it back, and a Redis stopped mid-run whose
// queued session saves land when it returns, and a pub/sub connection gone
// half-open. Each test runs a fleet of two of
// our servers and clients that fail over from one to the other.
//
// Needs redis-server and, for the cluster, redis-cli (Debian: redis-tools);
// without them the tests FAIL unless UHURA_SKIP_REDIS=1.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const {
  installExitWatchdog, HOST, freePort, useResources, waitUntil, waitHandshake, withTimeout, errorsOf, killServer, tryConnect,
  needRedis, redisCommand, startRedis, pingPong, roundTripMatching, hasAll, assertHasAll, holdingProxy, delay, fleetOfTwo, failOver,
} = require('./helpers')

installExitWatchdog(15000)

const U = require('..')
const FIXTURES = path.join(__dirname, 'fixtures')
const fixture = (name) => fs.readFileSync(path.join(FIXTURES, name))

/**
 * A redis-server with TLS on `tlsPort` (the fixture server certificate, the
 * fixture CA for clients) and a plain port the test reads the store with.
 */
async function startTlsRedis (t, authClients) {
  const tlsPort = await freePort()
  const node = await startRedis(t, {
    args: [
      '--tls-port', String(tlsPort), '--save', '', '--appendonly', 'no',
      '--tls-cert-file', path.join(FIXTURES, 'server-cert.pem'), '--tls-key-file', path.join(FIXTURES, 'server-key.pem'),
      '--tls-ca-cert-file', path.join(FIXTURES, 'ca-cert.pem'), '--tls-auth-clients', authClients ? 'yes' : 'no',
    ]
  })
  node.tlsUrl = `rediss://${HOST}:${tlsPort}`
  return node
}

/** Free ports whose cluster bus port (+10000) is free too, and no node's port another's bus port. */
async function clusterPorts (n) {
  const ports = []
  const taken = (p) => ports.some((q) => q === p || q === p + 10000 || q + 10000 === p)
  while (ports.length < n) {
    const p = await freePort()
    if (p < 55000 && !taken(p) && (await tryConnect(p + 10000)) !== null) ports.push(p)
  }
  return ports
}

/**
 * Three masters, no replicas, each with its nodes.conf and append-only file
 * in a private directory (a node restarted comes back with its slots and
 * data), serving their slots while another is down.
 */
async function startCluster (t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uhura-cluster-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const nodes = []
  for (const port of await clusterPorts(3)) {
    nodes.push(await startRedis(t, {
      port,
      args: [
        '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--dir', dir,
        '--cluster-require-full-coverage', 'no', '--cluster-node-timeout', '2000',
        '--save', '', '--appendonly', 'yes', '--appendfsync', 'always',
      ]
    }))
  }
  const made = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`),
    '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 20000 })
  assert.equal(made.status, 0, `redis-cli --cluster create: ${made.error || made.stdout + made.stderr}`)
  const cluster = {
    nodes,
    async ok () {
      for (const n of nodes) {
        await waitUntil(async () => /cluster_state:ok/.test(await redisCommand(n.port, 'CLUSTER', 'INFO').catch(() => '')),
          20000, `node ${n.port} to say cluster_state:ok`)
      }
    },
    /** The session under `key`, from whichever node holds it (the others answer MOVED). */
    async get (key) {
      for (const n of nodes) {
        const v = await redisCommand(n.port, 'GET', key).catch(() => null)
        if (v != null) return JSON.parse(v)
      }
      return null
    },
    /** Which node's slots `key` is in. */
    async holder (key) {
      for (const n of nodes) {
        const moved = await redisCommand(n.port, 'GET', key).then(() => false, (e) => /MOVED/.test(e.message))
        if (!moved) return n
      }
      throw new Error(`no node serves ${key}`)
    },
  }
  await cluster.ok()
  return cluster
}

/**
 * `fleetOfTwo` on a store made by `makeStore()`, a key set and saved, then
 * A dies: the client resumes on B with the key.
 */
async function failsOverThrough (t, makeStore, peek) {
  const fleet = await fleetOfTwo(t, makeStore, peek)
  const { client, conn, sid } = fleet
  client.set('k', 'through the store')
  await waitUntil(async () => hasAll(await peek(sid), { k: 'through the store' }), 5000, 'the store to hold k')
  const connB = await failOver(fleet)
  assert.equal(connB.get('k'), 'through the store')
  await roundTripMatching(client, 1)
  assert.deepStrictEqual([...errorsOf(conn), ...errorsOf(connB)].map(String), [], 'no store errors')
}

/** `fn(cb)` (a sendTo or broadcast) as a Promise. */
function sent (fn) {
  return withTimeout(new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve()))), 5000, 'a sendTo callback')
}

/**
 * `server.sendTo` across servers A and B sharing a store made by
 * `makeStore()` (a client on each, each sent to from the other server),
 * then a `broadcast` from A reaching both.
 */
async function sendsAcross (t, makeStore, isStored) {
  const r = useResources(t)
  const A = await r.startServer('ours', { options: { store: makeStore() } })
  const B = await r.startServer('ours', { options: { store: makeStore() } })
  const clients = []
  for (const srv of [A, B]) {
    const client = await r.connectClient('ours', srv.port)
    const got = []
    for (const name of ['to', 'all']) client.on(name, (...args) => got.push([name, ...args]))
    const sid = client.get('sessionID')
    await waitUntil(() => isStored(sid), 5000, `session ${sid} in Redis`)
    clients.push({ got, sid })
  }
  const [onA, onB] = clients
  await sent((cb) => B.server.sendTo(onA.sid, 'to', 'from B', cb))
  await sent((cb) => A.server.sendTo(onB.sid, 'to', 'from A', cb))
  await sent((cb) => A.server.broadcast('all', 'everyone', cb))
  await waitUntil(() => onA.got.length === 2 && onB.got.length === 2, 8000, 'the sendTo and broadcast events')
  assert.deepEqual(onA.got.sort(), [['all', 'everyone'], ['to', 'from B']])
  assert.deepEqual(onB.got.sort(), [['all', 'everyone'], ['to', 'from A']])
  assert.equal(A.errors.length + B.errors.length, 0, 'no server error')
}

describe('redisStore over TLS (rediss://)', () => {
  it('server TLS checked against tls.ca (PEM strings): a fleet resumes through it', { timeout: 30000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startTlsRedis(t, false)
    const tls = { ca: fixture('ca-cert.pem').toString() }
    await failsOverThrough(t, () => U.redisStore({ url: redis.tlsUrl, tls }), async (sid) => {
      const v = await redisCommand(redis.port, 'GET', 'sess:' + sid)
      return v == null ? null : JSON.parse(v)
    })
  })

  it('mutual TLS (tls-auth-clients yes) with tls.cert and tls.key (Buffers)', { timeout: 30000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startTlsRedis(t, true)
    const tls = { ca: [fixture('ca-cert.pem')], cert: fixture('client-cert.pem'), key: fixture('client-key.pem') }
    await failsOverThrough(t, () => U.redisStore({ url: redis.tlsUrl, tls }), async (sid) => {
      const v = await redisCommand(redis.port, 'GET', 'sess:' + sid)
      return v == null ? null : JSON.parse(v)
    })
  })

  it('a wrong CA: an error event on the connection says why; nothing crashes, events flow', { timeout: 30000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startTlsRedis(t, false)
    const r = useResources(t)
    const store = U.redisStore({ url: redis.tlsUrl, tls: { ca: fixture('untrusted-cert.pem') } })
    const srv = await r.startServer('ours', { options: { store }, onConnection: pingPong })
    const client = await r.connectClient('ours', srv.port)
    const { conn } = await srv.waitConnection(0)
    await waitUntil(() => errorsOf(conn).length > 0, 8000, "a store 'error' on the connection")
    const err = errorsOf(conn)[0]
    t.diagnostic(`${err.code}: ${err.message}`)
    assert.equal(err.code, 'ESTORE')
    assert.match(err.message, /certificate|UnknownIssuer/, 'the error says the certificate was not trusted')
    await roundTripMatching(client, 1, 'the client, with its sessions unsaved')
    assert.equal(srv.errors.length, 0, 'no server error')
  })

  it('sendTo and broadcast across the fleet (the fleet bus subscribes over TLS too)', { timeout: 30000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startTlsRedis(t, true)
    const tls = { ca: [fixture('ca-cert.pem')], cert: fixture('client-cert.pem'), key: fixture('client-key.pem') }
    await sendsAcross(t, () => U.redisStore({ url: redis.tlsUrl, tls }),
      async (sid) => (await redisCommand(redis.port, 'EXISTS', 'sess:' + sid)) === 1)
  })

  it('bad tls options are refused when the server is made', () => {
    assert.throws(() => U.createServer({ store: U.redisStore({ url: 'rediss://127.0.0.1:1', tls: { ca: 'not PEM' } }) }), /ca/)
    assert.throws(() => U.createServer({ store: U.redisStore({ url: 'redis://127.0.0.1:1', tls: {} }) }), /rediss:\/\//)
    assert.throws(() => U.createServer({ store: U.redisStore({ url: 'rediss://127.0.0.1:1', tls: { key: fixture('client-key.pem') } }) }), /cert/)
  })
})

describe('redisStore on a Redis Cluster', () => {
  it('options: cluster is a non-empty array of urls, not with url', () => {
    assert.deepStrictEqual(U.redisStore({ cluster: ['redis://127.0.0.1:7000'] }).cluster, ['redis://127.0.0.1:7000'])
    assert.throws(() => U.redisStore({ cluster: 'redis://127.0.0.1:7000' }), /cluster/)
    assert.throws(() => U.redisStore({ cluster: [] }), /cluster/)
    assert.throws(() => U.redisStore({ url: 'redis://127.0.0.1', cluster: ['redis://127.0.0.1:7000'] }), /url or cluster/)
    assert.throws(() => U.createServer({ store: U.redisStore({ cluster: ['redis://127.0.0.1:7000'], auxPrefix: '{a}x:' }) }), /cluster/)
  })

  it('a fleet on three masters; one master lost: the other slots keep serving, its sessions return with it', { timeout: 90000 }, async (t) => {
    if (!needRedis(t)) return
    const cluster = await startCluster(t)
    const r = useResources(t)
    const store = () => U.redisStore({ cluster: cluster.nodes.map((n) => n.url) })
    const A = await r.startServer('ours', { options: { store: store() }, onConnection: pingPong })
    const B = await r.startServer('ours', { options: { store: store() }, onConnection: pingPong })
    const clients = []
    for (let i = 0; i < 12; i++) {
      const c = r.createClient('ours', { servers: [{ host: HOST, port: A.port }, { host: HOST, port: B.port }] })
      c.autoReconnect(20, 200)
      await waitHandshake('ours', c)
      c.set('i', i)
      clients.push(c)
    }
    const byNode = new Map(cluster.nodes.map((n) => [n, []]))
    for (const c of clients) {
      const key = 'sess:' + c.get('sessionID')
      await waitUntil(async () => hasAll(await cluster.get(key), { i: c.get('i') }), 5000, `${key} saved`)
      byNode.get(await cluster.holder(key)).push(c)
    }
    const victim = cluster.nodes.find((n) => byNode.get(n).length > 0 && byNode.get(n).length < clients.length)
    assert.ok(victim, 'sessions on more than one master')
    const lost = byNode.get(victim)
    const kept = clients.filter((c) => !lost.includes(c))
    t.diagnostic(`${lost.length} sessions on the lost master, ${kept.length} on the others`)
    // The lost master's clients wait (parked) for it to return.
    for (const c of lost) c.disconnect()

    await victim.kill()
    const n0 = B.connections.length
    const resumed = kept.map((c) => waitHandshake('ours', c, 15000))
    await killServer(A)
    await Promise.all(resumed)
    await waitUntil(() => B.connections.length >= n0 + kept.length, 10000, 'the kept sessions on B')
    for (const c of kept) {
      const { conn, reconnect } = await waitUntil(() => B.connections.find((e) => e.conn.sessionID === c.get('sessionID')), 5000, 'its connection')
      assert.equal(reconnect, true, 'a session in a live slot resumed on B')
      assert.equal(conn.get('i'), c.get('i'))
      await roundTripMatching(c, c.get('i'))
    }

    await victim.start()
    await cluster.ok()
    for (const c of lost) {
      const sid = c.get('sessionID')
      const hs = waitHandshake('ours', c, 15000)
      // disconnect() turned auto-reconnection off: A is gone, B is next.
      c.autoReconnect(20, 200)
      c.reconnect()
      await hs
      const { conn, reconnect } = await waitUntil(() => B.connections.find((e) => e.conn.sessionID === sid), 5000, 'its connection')
      assert.equal(reconnect, true, 'the session came back with its master')
      assert.equal(conn.get('i'), c.get('i'))
      await roundTripMatching(c, 100 + c.get('i'))
    }
    assert.equal(B.errors.length, 0, 'no server error')
  })

  it('saves queued on two masters: one returns, its sessions\' saves land while the other is still down', { timeout: 90000 }, async (t) => {
    if (!needRedis(t)) return
    const cluster = await startCluster(t)
    const r = useResources(t)
    const A = await r.startServer('ours', { options: { store: U.redisStore({ cluster: cluster.nodes.map((n) => n.url) }) }, onConnection: pingPong })
    // A session on each of two masters.
    const on = new Map()
    for (let i = 0; i < 30 && on.size < 2; i++) {
      const c = r.createClient('ours', { port: A.port, host: HOST })
      await waitHandshake('ours', c)
      const key = 'sess:' + c.get('sessionID')
      c.set('v', 0)
      await waitUntil(async () => hasAll(await cluster.get(key), { v: 0 }), 5000, `${key} saved`)
      const node = await cluster.holder(key)
      if (!on.has(node)) on.set(node, { c, key })
    }
    assert.equal(on.size, 2, 'sessions on two masters')
    const [[stillDown, first], [returns, second]] = [...on]
    // The first save queued is the one whose master stays down.
    await stillDown.kill()
    first.c.set('v', 1)
    await waitUntil(() => A.errors.length + A.connections.reduce((n, e) => n + errorsOf(e.conn).length, 0) > 0, 10000, 'a store error for the first save')
    await returns.kill()
    second.c.set('v', 1)
    await delay(500)
    await returns.start()
    await waitUntil(async () => hasAll(await cluster.get(second.key), { v: 1 }), 20000,
      'the save of the session whose master returned, queued behind one whose master is still down')
    await stillDown.start()
    await waitUntil(async () => hasAll(await cluster.get(first.key), { v: 1 }), 20000, 'the other save, once its master is back')
  })

  it('sendTo and broadcast across the fleet: queues in the session\'s slot, wake-ups by pub/sub', { timeout: 60000 }, async (t) => {
    if (!needRedis(t)) return
    const cluster = await startCluster(t)
    await sendsAcross(t, () => U.redisStore({ cluster: cluster.nodes.map((n) => n.url) }),
      async (sid) => (await cluster.get('sess:' + sid)) != null)
  })
})

describe('Redis stopped mid-run', () => {
  it('events keep flowing, saves queue, land when Redis is back, and the next resume finds the latest session', { timeout: 45000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startRedis(t)
    const saved = (sid) => redisCommand(redis.port, 'GET', 'sess:' + sid).catch(() => null)
    const fleet = await fleetOfTwo(t, () => U.redisStore({ url: redis.url }), saved)
    const { client, conn, sid } = fleet

    await redis.kill()
    for (let i = 0; i < 5; i++) {
      client.set('during', i)
      await roundTripMatching(client, i, 'events with Redis down')
    }
    conn.set('server', 'also during')
    await waitUntil(() => errorsOf(conn).some((e) => /queued/.test(e.message)), 8000, "an 'error' saying the save is queued")
    t.diagnostic(errorsOf(conn)[0].message)
    assert.equal(errorsOf(conn)[0].code, 'ESTORE')

    // Back, empty (no persistence): what lands is the queued save, the newest.
    await redis.start()
    await waitUntil(async () => hasAll(JSON.parse(await redisCommand(redis.port, 'GET', 'sess:' + sid) || 'null'), { during: 4, server: 'also during' }),
      10000, 'the queued save to land')
    const connB = await failOver(fleet)
    assertHasAll(connB.get(), { during: 4, server: 'also during' }, 'the latest session')
    await roundTripMatching(client, 9)
  })

  it('maxQueuedBytes: its default is Rust\'s, and it is checked', () => {
    const defaults = require('../lib/defaults')
    assert.equal(U.redisStore().maxQueuedBytes, defaults.redisMaxQueuedBytes)
    assert.equal(U.redisStore({ maxQueuedBytes: 1000 }).maxQueuedBytes, 1000)
    assert.throws(() => U.redisStore({ maxQueuedBytes: -1 }), /maxQueuedBytes/)
  })
})

describe('a half-open pub/sub connection', () => {
  it('the fleet bus PINGs a silent subscription, finds it dead, subscribes again: a sendTo still arrives', { timeout: 45000 }, async (t) => {
    if (!needRedis(t)) return
    const redis = await startRedis(t)
    // Server A reaches Redis through a proxy that can stop passing Redis's
    // replies while keeping the connections open (no FIN, no RST), as a
    // vanished peer or a stalled middlebox would.
    const proxy = await holdingProxy(t, redis.port)
    const r = useResources(t)
    const A = await r.startServer('ours', { options: { store: U.redisStore({ url: `redis://${HOST}:${proxy.port}` }) } })
    const B = await r.startServer('ours', { options: { store: U.redisStore({ url: `redis://${HOST}:${redis.port}` }) } })
    const client = await r.connectClient('ours', A.port)
    const got = []
    client.on('to', (...args) => got.push(args))
    const sid = client.get('sessionID')
    await waitUntil(async () => (await redisCommand(redis.port, 'EXISTS', 'sess:' + sid)) === 1, 5000, `session ${sid} in Redis`)
    // A's subscription is up once a sendTo from B wakes it.
    await sent((cb) => B.server.sendTo(sid, 'to', 'before', cb))
    await waitUntil(() => got.length === 1, 8000, 'the first sendTo')
    proxy.hold()
    await sent((cb) => B.server.sendTo(sid, 'to', 'while half-open', cb))
    await waitUntil(() => got.length === 2, 20000, 'the sendTo published while A\'s subscription was half-open')
    assert.deepEqual(got, [['before'], ['while half-open']])
    assert.equal(B.errors.length, 0, 'no error on B')
  })
})
