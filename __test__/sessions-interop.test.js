'use strict'
// Sessions with uhura@0.1.2: resume and invalidateSession, both ways.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const {
  installExitWatchdog, SESSION_ID_RE, useResources, waitFor, waitUntil, waitHandshake, delay, pingPong,
  roundTripMatching, DEFAULT_COOKIE, clone, recordingStore, hasAll, assertHasAll,
  assertNoStoreOrProtocolErrors,
} = require('./helpers')

installExitWatchdog(15000)

const T = { timeout: 20000 }

// ============================================================= 3. interop

describe('3. sessions with uhura@0.1.2', () => {
  it('a 0.1.2 client resumes its session on our server (autoReconnect)', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours', { onConnection: pingPong })
    const client = await r.connectClient('v0.1.2', srv.port)
    client.autoReconnect()
    const sid = client.get('sessionID')
    assert.match(String(sid), SESSION_ID_RE)
    const { conn } = await srv.waitConnection(0)
    // One side after the other (saves that cross are tested in section 1).
    await delay(30)
    client.set('fromOld', { a: 1 })
    await waitUntil(() => conn.get('fromOld'), 5000, "the server to have the client's key")
    await delay(30)
    conn.set('fromOurs', [1, 2])
    const all = { fromOld: { a: 1 }, fromOurs: [1, 2], sessionID: sid }
    await waitUntil(() => hasAll(client.get(), all) && hasAll(conn.get(), all), 5000, 'both sides to have both keys')
    await delay(50)
    const hs = waitHandshake('v0.1.2', client)
    conn.socket.destroy()
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    await hs
    assert.equal(reconnect, true, 'our callback gets reconnect === true')
    assert.equal(client.get('sessionID'), sid, 'the 0.1.2 client keeps its sessionID')
    assert.equal(conn2.get('sessionID'), sid)
    assertHasAll(conn2.get(), all, 'resumed session on our server')
    assertHasAll(client.get(), all, '0.1.2 client session')
    assert.deepStrictEqual(client.get('cookie'), DEFAULT_COOKIE, 'the 0.1.2 client got the cookie field, as from a 0.1.2 server')
    await roundTripMatching(client, 1, '0.1.2 client')
    assertNoStoreOrProtocolErrors(r)
  })

  it('our client resumes its session on a 0.1.2 server', T, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('v0.1.2', { onConnection: pingPong })
    const client = await r.connectClient('ours', srv.port)
    client.autoReconnect(20, 200)
    const sid = client.get('sessionID')
    assert.match(String(sid), SESSION_ID_RE)
    const { conn } = await srv.waitConnection(0)
    client.set('fromOurs', { a: 1 })
    conn.set('fromOld', 'x')
    const all = { fromOurs: { a: 1 }, fromOld: 'x', sessionID: sid }
    await waitUntil(() => hasAll(client.get(), all) && hasAll(conn.get(), all), 5000, 'both sides to have both keys')
    await delay(50)
    const hs = waitHandshake('ours', client)
    conn.socket.destroy()
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    await hs
    assert.equal(reconnect, true, 'the 0.1.2 server resumed the session')
    assert.equal(client.get('sessionID'), sid)
    assertHasAll(conn2.get(), all, 'resumed session on the 0.1.2 server')
    assertHasAll(client.get(), all, 'our client session')
    assert.ok(client.get('cookie') && client.get('cookie').path === '/', 'the 0.1.2 cookie field reached our client')
    await roundTripMatching(client, 1)
    assertNoStoreOrProtocolErrors(r)
  })

  // The server invalidates; the client empties its session, drops, and
  // comes back (autoReconnect) with a new session id and none of the old values.
  async function invalidateAcross (t, { serverImpl, clientImpl, label, reconnectArgs, store }) {
    const r = useResources(t)
    const srv = await r.startServer(serverImpl, { options: store ? { store } : undefined, onConnection: pingPong })
    const client = await r.connectClient(clientImpl, srv.port)
    client.autoReconnect(...reconnectArgs)
    const sid = client.get('sessionID')
    const { conn } = await srv.waitConnection(0)
    client.set('k', 'v')
    await waitUntil(() => conn.get('k') === 'v', 5000, 'the server to see k')
    let sessionAtEvent
    client.on('invalidateSession', () => { sessionAtEvent = clone(client.get()) })
    const got = waitFor(client, 'invalidateSession', 5000, { label: `${label} (invalidateSession)` })
    conn.invalidateSession()
    await got
    assert.deepStrictEqual(sessionAtEvent, {}, `the ${label} emptied its session`)
    const { conn: conn2, reconnect } = await srv.waitConnection(1)
    await waitUntil(() => client.get('sessionID') && client.get('sessionID') !== sid, 5000, `the ${label} to get a new sessionID`)
    assert.notEqual(reconnect, true)
    const sid2 = client.get('sessionID')
    assert.match(String(sid2), SESSION_ID_RE)
    assert.equal(conn2.get('sessionID'), sid2)
    assert.equal(conn2.get('k'), undefined, 'the old values are gone on the server')
    assert.equal(client.get('k'), undefined, 'the old values are gone on the client')
    if (store) assert.ok(store.calls.some((c) => c.op === 'destroy' && c.sid === sid), 'the stored session was destroyed')
    await roundTripMatching(client, 1, label)
    assertNoStoreOrProtocolErrors(r)
  }

  it('invalidateSession: our server -> 0.1.2 client (emptied, back with a new id)', T, (t) =>
    invalidateAcross(t, { serverImpl: 'ours', clientImpl: 'v0.1.2', label: '0.1.2 client', reconnectArgs: [], store: recordingStore() }))

  it('invalidateSession: 0.1.2 server -> our client (emptied, back with a new id)', T, (t) =>
    invalidateAcross(t, { serverImpl: 'v0.1.2', clientImpl: 'ours', label: 'our client', reconnectArgs: [20, 200] }))
})
