'use strict'
// The resume credential. A session made for one of our clients resumes only
// with the secret our server issued to that client; anyone presenting just
// the id gets a new session and touches nothing of the victim's. Sessions
// made by old clients resume by id, as in the original.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const { HOST, SESSION_ID_RE, useResources, waitFor, waitUntil, delay, parseFrames, installExitWatchdog } = require('./helpers')

installExitWatchdog()

const T = { timeout: 20000 }

/** A raw client that asks to resume `sid` with `config` as its start config. */
async function intruder (r, port, sid, config) {
  const raw = r.rawConnect(port, HOST)
  await raw.connected()
  raw.socket.write(`[\n["_set",{"sessionID":"${sid}"}]\n,\n["start",${JSON.stringify(config)}]`)
  await raw.waitText(/"connect"/)
  const frames = parseFrames(raw.text())
  const set = frames.find((f) => Array.isArray(f) && f[0] === '_set')
  return { raw, frames, sessionID: set && (typeof set[1] === 'string' ? set[2] : set[1].sessionID) }
}

describe('resume secret', () => {
  for (const [label, config] of [
    ['only the id, as one of ours', { objectMode: true, enableAcks: true, uhura: 1 }],
    ['a wrong secret', { objectMode: true, enableAcks: true, uhura: 1, resume: 'A'.repeat(24) }],
    ['only the id, as an old client', { objectMode: true, enableAcks: true }],
  ]) {
    it(`an intruder with ${label} gets a new session; the victim keeps its connection and its events`, T, async (t) => {
      const r = useResources(t)
      const got = []
      const srv = await r.startServer('ours', {
        onConnection: (conn) => conn.on('n', (n) => got.push({ n, sid: conn.sessionID })),
      })
      const victim = r.createClient('ours', srv.port, HOST)
      victim.set('private', 'victim data')
      const { conn: victimConn } = await srv.waitConnection(0)
      await waitUntil(() => SESSION_ID_RE.test(victim.get('sessionID') || ''), 5000, 'the victim session id')
      const sid = victim.get('sessionID')
      let victimDrops = 0
      victim.on('disconnect', () => victimDrops++)

      const errors = []
      srv.server.on('handshake', (conn) => conn.on('error', (e) => errors.push(e)))
      const bad = await intruder(r, srv.port, sid, config)
      const { conn: badConn, reconnect } = await srv.waitConnection(1)
      assert.equal(reconnect, undefined, 'not a resume')
      assert.notEqual(badConn.sessionID, sid)
      assert.equal(bad.sessionID, badConn.sessionID, 'the intruder was told its new id')
      assert.doesNotMatch(bad.raw.text(), /victim data/, "the intruder never sees the victim's session")
      await waitUntil(() => errors.some((e) => e.code === 'ERR_UHURA_RESUME_REFUSED'), 5000, 'the refusal error')

      victim.send('n', 1)
      await waitUntil(() => got.length === 1, 5000, "the victim's event")
      assert.deepEqual(got, [{ n: 1, sid }])
      assert.equal(victimDrops, 0, 'the victim was not disconnected')
      assert.equal(victimConn.ready, true)
      assert.equal(victimConn.get('private'), 'victim data')
    })
  }

  it('our client resumes with its secret, across drops; the secret is in no session either side sees', T, async (t) => {
    const r = useResources(t)
    const seen = []
    const srv = await r.startServer('ours', { onConnection: (conn, reconnect) => seen.push({ reconnect, keys: Object.keys(conn.get()) }) })
    const client = r.createClient('ours', srv.port, HOST)
    client.autoReconnect(10, 50)
    client.set('k', 1)
    await srv.waitConnection(0)
    for (let i = 1; i <= 3; i++) {
      srv.connections[i - 1].conn.socket.destroy()
      const { reconnect, conn } = await srv.waitConnection(i)
      assert.equal(reconnect, true, `resume #${i}`)
      assert.equal(conn.get('k'), 1)
    }
    for (const { keys } of seen) assert.ok(!keys.some((k) => k.startsWith('uhura:')), `server-side session keys: ${keys}`)
    assert.ok(!Object.keys(client.get()).some((k) => k.startsWith('uhura:')), 'client-side session keys')
  })

  it('an old client (0.1.2) still resumes by id, and so does anyone with that id, as in the original', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', {})
    const old = r.createClient('v0.1.2', srv.port, HOST)
    old.autoReconnect(10, 50)
    const { conn } = await srv.waitConnection(0)
    await waitUntil(() => SESSION_ID_RE.test(old.get('sessionID') || ''), 5000, 'the old client session id')
    const sid = old.get('sessionID')
    conn.socket.destroy()
    const second = await srv.waitConnection(1)
    assert.equal(second.reconnect, true, 'the old client resumed')
    assert.equal(second.conn.sessionID, sid)
    await delay(50)
    await intruder(r, srv.port, sid, { objectMode: true, enableAcks: true })
    const third = await srv.waitConnection(2)
    assert.equal(third.reconnect, true, 'a session without a secret resumes by id')
  })

  it('the store keeps a digest of the secret, never the secret', T, async (t) => {
    const r = useResources(t)
    const data = {}
    const store = {
      get: (sid, cb) => cb(null, data[sid] ? JSON.parse(data[sid]) : undefined),
      set: (sid, sess, cb) => { data[sid] = JSON.stringify(sess); cb() },
      destroy: (sid, cb) => { delete data[sid]; cb() },
    }
    const srv = await r.startServer('ours', { options: { store } })
    const client = r.createClient('ours', srv.port, HOST)
    await waitFor(client, 'connect')
    const sid = client.get('sessionID')
    await waitUntil(() => data[sid], 5000, 'the stored session')
    const stored = JSON.parse(data[sid])
    assert.match(stored['uhura:resume'], /^[0-9a-f]{64}$/)
  })
})
