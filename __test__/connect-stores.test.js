'use strict'
// One file (over 400 lines): its three suites share the store setups (KINDS, setUp) and checks below.
// Real, unmodified connect stores behind our server (README "Sessions and
// stores"), each as its users would set it up:
//
//   connect-redis 1.x   require('connect-redis-1')(Uhura), its own redis 0.10 client
//   connect-redis 10    with a redis 5 client
//   connect 2.x         MemoryStore (express-session 1.11's)
//   session-file-store  require('session-file-store')(Uhura), in a temp dir
//
// For each: a server up longer than the cookie's maxAge still stores new
// sessions (the cookie is made per session); the client's keys reach the
// store; a reconnecting client resumes (reconnect === true, every key);
// saves slide the expiry; after maxAge without saves the store drops the
// session and the client gets a new one; invalidateSession() destroys it.
// Then what 0.1.2 stores with the same store is compared with ours, and a
// fleet mixing our native redisStore with connect-redis must see only
// sessions under the session prefix.
//
// The Redis stores need redis-server (see helpers/redis.js); without it those
// tests FAIL unless UHURA_SKIP_REDIS=1.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const {
  HOST, SESSION_ID_RE, useResources, waitFor, waitUntil, waitHandshake, delay, errorsOf, installExitWatchdog,
  needRedis, redisCommand, redisGetJSON, startRedis, pingPong,
} = require('./helpers')

installExitWatchdog(15000)

const U = require('..')
const U012 = require('uhura-0.1.2')

/** Keys of a connect Cookie's JSON, in order. */
const COOKIE_KEYS = ['originalMaxAge', 'expires', 'httpOnly', 'path']

/** Closes a redis client of either generation. */
function quit (client) {
  try {
    if (typeof client.destroy === 'function') client.destroy() // redis 5
    else client.quit() // redis 0.10
  } catch (_) {}
}

/**
 * A test's setting: `env.redis` when the kind needs Redis (undefined: skipped),
 * `env.closers` run before anything else is torn down (store clients quit
 * while Redis is still up).
 */
async function setUp (t, needsRedis) {
  const env = { closers: [] }
  t.after(async () => { for (const close of env.closers) await close() })
  if (needsRedis) {
    if (!needRedis(t)) return null
    env.redis = await startRedis(t)
  }
  return env
}

/**
 * Each store kind: `open(t, Uhura, env, prefix)` -> { store, raw(sid) (what the
 * store holds, as JSON, bypassing its expiry), ttl(sid) (Redis seconds, when
 * Redis) }. `maxAge` is what the scenario uses (connect-redis 1.x takes
 * floor(maxAge / 1000) s as its TTL, and refuses 0).
 */
const KINDS = [
  {
    name: 'connect-redis 1.x (redis 0.10 client)',
    redis: true,
    maxAge: 3000,
    minLife: 2000, // its TTL: floor(cookie.maxAge / 1000), and cookie.maxAge is a few ms under 3000
    open (t, Uhura, env, prefix = 'sess:') {
      const RedisStore = require('connect-redis-1')(Uhura === U012 ? Uhura.session : Uhura)
      const store = new RedisStore({ host: HOST, port: env.redis.port, prefix })
      env.closers.push(() => quit(store.client))
      return {
        store,
        raw: (sid) => redisGetJSON(env.redis.port, prefix + sid),
        ttl: (sid) => redisCommand(env.redis.port, 'TTL', prefix + sid),
      }
    },
  },
  {
    name: 'connect-redis 10 (redis 5 client)',
    redis: true,
    maxAge: 1500,
    async open (t, Uhura, env, prefix = 'sess:') {
      const { createClient } = require('redis')
      const client = createClient({ url: env.redis.url, socket: { reconnectStrategy: false } })
      client.on('error', () => {})
      await client.connect()
      env.closers.push(() => quit(client))
      const { RedisStore } = require('connect-redis')
      const store = new RedisStore({ client, prefix })
      return {
        store,
        raw: (sid) => redisGetJSON(env.redis.port, prefix + sid),
        ttl: (sid) => redisCommand(env.redis.port, 'TTL', prefix + sid),
      }
    },
  },
  {
    name: "connect 2.x's MemoryStore",
    maxAge: 600,
    open () {
      const store = new (require('connect-2').session.MemoryStore)()
      return {
        store,
        raw: async (sid) => (store.sessions[sid] == null ? null : JSON.parse(store.sessions[sid])),
      }
    },
  },
  {
    name: 'session-file-store',
    maxAge: 600,
    open (t, Uhura) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uhura-fstore-'))
      t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
      const FileStore = require('session-file-store')(Uhura === U012 ? Uhura.session : Uhura)
      // No retries: an unknown id answers ENOENT at once. No reaping: expiry is read on get.
      const store = new FileStore({ path: dir, retries: 0, reapInterval: -1, logFn () {} })
      return {
        store,
        raw: async (sid) => {
          try {
            return JSON.parse(fs.readFileSync(path.join(dir, sid + '.json'), 'utf8'))
          } catch (e) {
            if (e.code === 'ENOENT') return null
            throw e
          }
        },
      }
    },
  },
]

/** The store's own answer to get(sid) (honouring its expiry), callback style. */
function storeGet (store, sid) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`store.get(${sid}) did not answer within 3000 ms`)), 3000)
    const r = store.get(sid, (err, sess) => {
      clearTimeout(timer)
      // connect's contract (express-session): ENOENT is no session.
      if (err && err.code !== 'ENOENT') reject(err)
      else resolve(err ? null : sess || null)
    })
    if (r && typeof r.catch === 'function') r.catch(() => {})
  })
}

function expiresOf (sess) {
  assert.ok(sess && sess.cookie, `a stored session with a cookie: ${JSON.stringify(sess)}`)
  const at = Date.parse(sess.cookie.expires)
  assert.ok(Number.isFinite(at), `cookie.expires is a date: ${JSON.stringify(sess.cookie)}`)
  return at
}

/** No error events on our server's connections or clients. */
function assertNoErrors (srv, clients) {
  const found = []
  for (const { conn } of srv.connections) for (const e of errorsOf(conn)) found.push(`server connection: ${e.code} ${e.message}`)
  for (const c of clients) for (const e of errorsOf(c)) found.push(`client: ${e.code} ${e.message}`)
  assert.deepEqual(found, [], 'no error events (a store answering ENOENT for an unknown id is no error)')
}

/** A client that asks to resume session `sid`, connected. */
// A new client object (a restarted process) that resumes `sid`; sessions
// made by our clients need the resume secret their client was given.
async function resumer (r, port, sid, resumeSecret) {
  const client = r.createClient('ours', { port, host: HOST, resumeSecret })
  client.set('sessionID', sid)
  await waitHandshake('ours', client, 5000)
  return client
}

async function disconnectOf (client) {
  const gone = waitFor(client, 'disconnect', 5000, { label: 'our client (disconnect)' })
  client.disconnect()
  await gone
}

describe('real connect stores behind our server', () => {
  for (const kind of KINDS) {
    it(`${kind.name}: stored per session, resumed, expiry sliding with maxAge, dropped, invalidated`, { timeout: 40000 }, async (t) => {
      const env = await setUp(t, kind.redis)
      if (!env) return
      const { store, raw, ttl } = await kind.open(t, U, env)
      const M = kind.maxAge
      const r = useResources(t)
      const srv = await r.startServer('ours', {
        options: { store, cookie: { maxAge: M } },
        onConnection: pingPong,
      })
      // Up for longer than maxAge: a cookie made once at start would be born expired.
      await delay(M + M / 2)

      // 1. A new session is stored, with a cookie of its own.
      const client = await r.connectClient('ours', srv.port)
      const t0 = Date.now()
      const sid = client.get('sessionID')
      assert.match(sid, SESSION_ID_RE)
      const { conn, reconnect: first } = await srv.waitConnection(0)
      assert.equal(first, undefined, 'a new session')
      client.set('k', 'v1')
      const saved = await waitUntil(async () => {
        const s = await raw(sid)
        return s && s.k === 'v1' && s
      }, 3000, "the store to hold the client's key")
      assert.equal(saved.sessionID, sid)
      assert.deepEqual(Object.keys(saved.cookie).filter((k) => COOKIE_KEYS.includes(k)), COOKIE_KEYS, `cookie fields: ${JSON.stringify(saved.cookie)}`)
      assert.equal(saved.cookie.originalMaxAge, M)
      let expires = expiresOf(saved)
      assert.ok(expires >= t0 + M - 50 && expires <= Date.now() + M + 50,
        `expires is maxAge from the save (${expires - t0} ms after connecting, maxAge ${M})`)
      assert.ok(await storeGet(store, sid), 'the store itself still has it (not born expired)')
      if (ttl) {
        const secs = await ttl(sid)
        assert.ok(secs >= 1 && secs <= Math.ceil(M / 1000), `Redis TTL ${secs} s for maxAge ${M} ms`)
      }

      // 2. Saves push the expiry forward.
      await delay(M / 2)
      conn.set('k2', 2)
      const slid = await waitUntil(async () => {
        const s = await raw(sid)
        return s && s.k2 === 2 && s
      }, 3000, "the store to hold the server's key")
      const expires2 = expiresOf(slid)
      assert.ok(expires2 - expires >= M / 2 - 50, `a save slides the expiry (${expires} -> ${expires2})`)
      expires = expires2
      await delay(M / 2)
      const lastSet = Date.now()
      client.set('k3', 3)
      const slid2 = await waitUntil(async () => {
        const s = await raw(sid)
        return s && s.k3 === 3 && s
      }, 3000, "the store to hold the client's second key")
      assert.ok(expiresOf(slid2) - expires >= M / 2 - 50, 'and again')
      if (ttl) {
        const secs = await ttl(sid)
        assert.ok(secs >= 1 && secs <= Math.ceil(M / 1000), `Redis TTL ${secs} s after the last save`)
      }
      assert.ok(Date.now() > expiresOf(saved), 'past the first expiry')
      assert.ok(await storeGet(store, sid), 'still in the store past the first expiry, thanks to the saves')

      // 3. A client that lost its connection comes back and resumes it.
      client.autoReconnect(20, 200)
      const back = waitHandshake('ours', client, 5000)
      conn.socket.destroy()
      await back
      const { conn: conn2, reconnect } = await srv.waitConnection(1)
      assert.equal(reconnect, true, 'the connection callback gets reconnect === true')
      assert.equal(client.get('sessionID'), sid)
      for (const [k, v] of Object.entries({ sessionID: sid, k: 'v1', k2: 2, k3: 3 })) {
        assert.deepEqual(conn2.get(k), v, `the server side sees ${k}`)
        assert.deepEqual(client.get(k), v, `the client sees ${k}`)
      }
      const pong = waitFor(client, 'pong', 3000)
      client.send('ping', 7)
      assert.deepEqual(await pong, [7])

      // 4. Left alone for maxAge, the store drops it; coming back starts a new session.
      await disconnectOf(client)
      await waitUntil(async () => (await storeGet(store, sid)) == null, M + 3000, 'the store to drop the idle session')
      const life = kind.minLife || M
      assert.ok(Date.now() - lastSet >= life - 20, `not dropped before maxAge (${Date.now() - lastSet} ms after the last save, maxAge ${M})`)
      const late = await resumer(r, srv.port, sid)
      const { conn: conn3, reconnect: again } = await srv.waitConnection(2)
      assert.equal(again, undefined, 'a new session, not a resume')
      const sid2 = late.get('sessionID')
      assert.match(sid2, SESSION_ID_RE)
      assert.notEqual(sid2, sid)
      assert.equal(conn3.get('k'), undefined, 'nothing of the expired session')

      // 5. invalidateSession() destroys it in the store.
      late.set('fresh', true)
      await waitUntil(async () => {
        const s = await raw(sid2)
        return s && s.fresh === true
      }, 3000, 'the store to hold the new session')
      const invalidated = waitFor(late, 'invalidateSession', 3000)
      conn3.invalidateSession()
      await invalidated
      await waitUntil(async () => (await raw(sid2)) == null, 3000, 'the store to destroy the invalidated session')
      assert.equal(await storeGet(store, sid2), null)
      // Asking for it again (a file store answers ENOENT now): a new session, and no error.
      const stranger = await resumer(r, srv.port, sid2)
      const { reconnect: none } = await srv.waitConnection(3)
      assert.equal(none, undefined, 'an invalidated session is not resumed')
      assert.notEqual(stranger.get('sessionID'), sid2)
      await delay(50)
      assertNoErrors(srv, [client, late, stranger])
    })
  }
})

describe('what 0.1.2 stores, ours stores', () => {
  for (const kind of KINDS) {
    it(`${kind.name}: the same session JSON and expiry as uhura@0.1.2`, { timeout: 20000 }, async (t) => {
      const env = await setUp(t, kind.redis)
      if (!env) return
      const M = kind.maxAge
      const r = useResources(t)
      const seen = {}
      for (const [impl, Uhura] of [['v0.1.2', U012], ['ours', U]]) {
        const { store, raw, ttl } = await kind.open(t, Uhura, env, impl + ':')
        const srv = await r.startServer(impl, { options: { store, cookie: { maxAge: M } } })
        const client = await r.connectClient('ours', srv.port)
        const sid = client.get('sessionID')
        assert.match(sid, SESSION_ID_RE)
        const t0 = Date.now()
        client.set('a', 1)
        const sess = await waitUntil(async () => {
          const s = await raw(sid)
          return s && s.a === 1 && s
        }, 3000, `${impl}: the store to hold the session`)
        const t1 = Date.now()
        const expires = expiresOf(sess)
        assert.ok(expires >= t0 + M - 2 && expires <= t1 + M, `${impl}: expires maxAge after the save (${expires - t0} ms after the set)`)
        // connect's Cookie takes originalMaxAge from its maxAge getter, which can be a ms short.
        const orig = sess.cookie.originalMaxAge
        if (impl === 'ours') assert.match(sess['uhura:resume'], /^[0-9a-f]{64}$/, 'ours adds the digest of the resume secret')
        seen[impl] = {
          // uhura:resume: ours, on purpose (README "Security").
          keys: Object.keys(sess).filter((k) => k !== '__lastAccess' && k !== 'uhura:resume').sort(),
          cookie: { ...sess.cookie, expires: typeof sess.cookie.expires, originalMaxAge: orig === M - 1 ? M : orig },
          ttl: ttl ? await ttl(sid) : null,
        }
      }
      const [orig, ours] = [seen['v0.1.2'], seen.ours]
      assert.deepEqual(ours.keys, orig.keys, 'the same session fields')
      assert.deepEqual(ours.cookie, orig.cookie, 'the same cookie fields')
      if (kind.redis) {
        const want = kind.name.startsWith('connect-redis 1') ? [2, 3] : [1, Math.ceil(M / 1000)]
        for (const [impl, s] of Object.entries(seen)) {
          assert.ok(s.ttl >= want[0] && s.ttl <= want[1], `${impl}: Redis TTL ${s.ttl} s for maxAge ${M} ms`)
        }
      }
    })
  }
})

describe('our native redisStore beside connect-redis', () => {
  it('one Redis, one session prefix: connect-redis sees only sessions; sessions move between the two', { timeout: 30000 }, async (t) => {
    const env = await setUp(t, true)
    if (!env) return
    const redis = env.redis
    const { store: cr } = await KINDS[1].open(t, U, env, 'sess:')
    const r = useResources(t)
    const cookie = { maxAge: 60000 }
    const A = await r.startServer('ours', { options: { store: U.redisStore({ url: redis.url }), cookie }, onConnection: pingPong })
    const B = await r.startServer('ours', { options: { store: cr, cookie }, onConnection: pingPong })

    // A session on A with delivery state: events from the client (duplicate
    // suppression), then one for the client while it is away (pending).
    const a = await r.connectClient('ours', A.port)
    const sidA = a.get('sessionID')
    a.set('on', 'A')
    for (let i = 0; i < 3; i++) {
      const pong = waitFor(a, 'pong', 3000, { filter: (n) => n === i })
      a.send('ping', i)
      await pong
    }
    const { conn: connA } = await A.waitConnection(0)
    await disconnectOf(a)
    connA.send('later', 1)
    await waitUntil(async () => Number(await redisCommand(redis.port, 'EXISTS', `uhura:seen:${sidA}`, `uhura:out:${sidA}`)) === 2, 3000,
      "the native store's delivery state, under uhura:")
    // A session on B, through connect-redis.
    const b = await r.connectClient('ours', B.port)
    const sidB = b.get('sessionID')
    b.set('on', 'B')
    await waitUntil(async () => {
      const [sa, sb] = [await redisGetJSON(redis.port, 'sess:' + sidA), await redisGetJSON(redis.port, 'sess:' + sidB)]
      return sa && sa.on === 'A' && sb && sb.on === 'B'
    }, 3000, 'both sessions in Redis')

    // Under the session prefix: sessions only.
    const want = ['sess:' + sidA, 'sess:' + sidB].sort()
    assert.deepEqual((await cr.client.keys('sess:*')).sort(), want, 'KEYS sess:* finds the two sessions and nothing else')
    assert.deepEqual((await cr.ids()).sort(), [sidA, sidB].sort(), "connect-redis's ids()")
    assert.equal(await cr.length(), 2, "connect-redis's length()")
    const all = await cr.all()
    assert.deepEqual(all.map((s) => s.on).sort(), ['A', 'B'], "connect-redis's all() reads every key as a session")
    for (const key of ['sess:' + sidA, `uhura:seen:${sidA}`, `uhura:out:${sidA}`]) {
      const secs = await redisCommand(redis.port, 'TTL', key)
      assert.ok(secs > 50 && secs <= 60, `${key}: the native store's TTL follows the cookie's maxAge (${secs} s)`)
    }

    // A's session resumes on B: connect-redis reads what the native store wrote.
    const c = await resumer(r, B.port, sidA, a.resumeSecret)
    const { reconnect } = await B.waitConnection(1)
    assert.equal(reconnect, true, "B resumed A's session through connect-redis")
    assert.equal(c.get('on'), 'A')
    await disconnectOf(c)

    // Back on A: the pending event arrives; invalidateSession removes the
    // session and its delivery state.
    const a2 = r.createClient('ours', { port: A.port, host: HOST, resumeSecret: a.resumeSecret })
    a2.set('sessionID', sidA)
    const later = waitFor(a2, 'later', 5000)
    await waitHandshake('ours', a2, 5000)
    const { conn: connA2, reconnect: back } = await A.waitConnection(1)
    assert.equal(back, true)
    assert.deepEqual(await later, [1])
    const gone = waitFor(a2, 'invalidateSession', 3000)
    connA2.invalidateSession()
    await gone
    // (Not uhura:out: the invalidateSession event itself is persisted as
    // pending, and may land after the destroy; it expires with its TTL.)
    const keysOfA = ['sess:' + sidA, `uhura:seen:${sidA}`]
    await waitUntil(async () => Number(await redisCommand(redis.port, 'EXISTS', ...keysOfA)) === 0, 3000,
      'the session and its delivery state to be gone').catch(async (e) => {
      const left = []
      for (const k of keysOfA) if (Number(await redisCommand(redis.port, 'EXISTS', k))) left.push(k)
      throw new Error(`${e.message}; left: ${left.join(', ')}`)
    })
    assert.equal(await cr.length(), 1)
    assertNoErrors(A, [a, a2, b, c])
    assertNoErrors(B, [])
  })

  it('auxPrefix: configurable, and never under the session prefix', () => {
    assert.equal(U.redisStore().auxPrefix, 'uhura:')
    assert.equal(U.redisStore({ auxPrefix: '{app}:aux:' }).auxPrefix, '{app}:aux:')
    assert.throws(() => U.redisStore({ prefix: 'sess:', auxPrefix: 'sess:aux:' }), /auxPrefix/)
    assert.throws(() => U.redisStore({ prefix: 'uhura:' }), /auxPrefix/)
    assert.equal(U.redisStore({ prefix: 'uhura:', auxPrefix: 'uhura-aux:' }).auxPrefix, 'uhura-aux:')
  })
})
