'use strict'
// The default in-memory session store: idle expiry (sessionTTL) and the cap
// on the number of sessions (maxSessions).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  installExitWatchdog, HOST, SESSION_ID_RE, useResources, waitFor, waitHandshake, delay, pingPong,
  roundTripMatching, assertNoStoreOrProtocolErrors, entryOf,
} = require('./helpers')

installExitWatchdog(15000)

const T = { timeout: 20000 }

describe('2. session stores', () => {
  it('the default store with sessionTTL: 200 forgets an idle session', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { options: { sessionTTL: 200 }, onConnection: pingPong })
    const client = await r.connectClient('ours', srv.port)
    const sid = client.get('sessionID')
    const { conn } = await srv.waitConnection(0)

    // Control: back within the TTL, it resumes.
    let disc = waitFor(client, 'disconnect', 5000, { label: 'client (disconnect)' })
    conn.socket.destroy()
    await disc
    await delay(30)
    let hs = waitHandshake('ours', client)
    client.reconnect()
    await hs
    const { conn: conn2, reconnect: quick } = await srv.waitConnection(1)
    assert.equal(quick, true, 'resumed within the TTL')
    assert.equal(client.get('sessionID'), sid)

    // Idle for 400 ms: gone.
    disc = waitFor(client, 'disconnect', 5000, { label: 'client (disconnect)' })
    conn2.socket.destroy()
    await disc
    await delay(400)
    hs = waitHandshake('ours', client)
    client.reconnect()
    await hs
    const { conn: conn3, reconnect: late } = await srv.waitConnection(2)
    assert.notEqual(late, true, 'not resumed after 400 ms idle with sessionTTL 200')
    const sid2 = client.get('sessionID')
    assert.match(String(sid2), SESSION_ID_RE)
    assert.notEqual(sid2, sid, 'a new session id')
    assert.equal(conn3.get('sessionID'), sid2)
    await roundTripMatching(client, 1)
    assertNoStoreOrProtocolErrors(r)
  })

  it('the default store with maxSessions caps the number of sessions: the earliest can no longer resume', T, async (t) => {
    const r = useResources(t)
    const CAP = 5
    const srv = await r.startServer('ours', { options: { maxSessions: CAP }, onConnection: pingPong })
    const sids = []
    const secrets = new Map()
    for (let i = 0; i < CAP + 5; i++) {
      const c = await r.connectClient('ours', srv.port)
      sids.push(c.get('sessionID'))
      secrets.set(c.get('sessionID'), c.resumeSecret)
      await entryOf(srv, c.get('sessionID')) // counted before the next step
      c.disconnect()
    }
    assert.equal(new Set(sids).size, sids.length)
    // A new client object for each, as a restarted process: id and secret.
    const resume = async (sid) => {
      const c = r.createClient('ours', { port: srv.port, host: HOST, resumeSecret: secrets.get(sid) })
      c.set('sessionID', sid)
      const n = srv.connections.length
      await waitHandshake('ours', c)
      const entry = await srv.waitConnection(n)
      const got = c.get('sessionID')
      c.disconnect()
      return { reconnect: entry.reconnect, sid: got }
    }
    const last = await resume(sids[sids.length - 1])
    assert.equal(last.reconnect, true, 'the most recent session still resumes')
    assert.equal(last.sid, sids[sids.length - 1])
    const first = await resume(sids[0])
    assert.notEqual(first.reconnect, true, `the earliest of ${sids.length} sessions (cap ${CAP}) was evicted`)
    assert.notEqual(first.sid, sids[0], 'it gets a new id')
    assertNoStoreOrProtocolErrors(r)
  })
})
