'use strict'
// Native TLS: our server and client with `tls` options (rustls inside the
// addon), against each other and against uhura@0.1.2 running over Node's tls
// module through its createServer / createConnection hooks.
// Certificates: __test__/fixtures (see gen.sh there).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const tls = require('node:tls')
const {
  HOST, SESSION_ID_RE, useResources, waitFor, waitUntil, waitHandshake, delay, installExitWatchdog, exchange,
} = require('./helpers')

installExitWatchdog()

const TEST_OPTS = { timeout: 20000 }
const WAIT = 5000

const fixture = (name) => fs.readFileSync(path.join(__dirname, 'fixtures', name))
const CA = fixture('ca-cert.pem')
const SERVER = { key: fixture('server-key.pem'), cert: fixture('server-cert.pem') }
const CLIENT = { key: fixture('client-key.pem'), cert: fixture('client-cert.pem') }
const UNTRUSTED = { key: fixture('untrusted-key.pem'), cert: fixture('untrusted-cert.pem') }

// Starts one of our servers with native TLS on 127.0.0.1.
function startOurTlsServer (r, tlsOptions, opts = {}) {
  return r.startServer('ours', { ...opts, options: { tls: tlsOptions } })
}

describe('native TLS: our server <-> our client', () => {
  it('handshakes against `ca`, carries events both ways with acks', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await startOurTlsServer(r, SERVER)
    const client = r.createClient('ours', { host: HOST, port: srv.port, tls: { ca: CA } })
    await waitHandshake('ours', client)
    const { conn, reconnect } = await srv.waitConnection(0)
    assert.ok(!reconnect, 'a new session')
    assert.match(String(client.get('sessionID')), SESSION_ID_RE)
    assert.equal(conn.get('sessionID'), client.get('sessionID'))
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('accepts PEM strings and verifies the name `localhost` via servername', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await startOurTlsServer(r, { key: SERVER.key.toString(), cert: SERVER.cert.toString() })
    const client = r.createClient('ours', { host: HOST, port: srv.port, tls: { ca: [CA.toString()], servername: 'localhost' } })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('mutual TLS: a client with a certificate from `ca` is let in', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await startOurTlsServer(r, { ...SERVER, ca: CA, requestCert: true, rejectUnauthorized: true })
    const client = r.createClient('ours', { host: HOST, port: srv.port, tls: { ca: CA, ...CLIENT } })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('mutual TLS: a client without a certificate is refused, with a TLS reason', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await startOurTlsServer(r, { ...SERVER, ca: CA, requestCert: true, rejectUnauthorized: true })
    const client = r.createClient('ours', { host: HOST, port: srv.port, tls: { ca: CA } })
    const connects = []
    client.on('connect', () => connects.push(1))
    const [err] = await waitFor(client, 'error', WAIT)
    assert.ok(err instanceof Error)
    assert.match(err.message, /CertificateRequired|certificate/i, err.message)
    await delay(100)
    assert.equal(srv.connections.length, 0, 'the server never saw a connection')
    assert.equal(connects.length, 0, 'the client never completed a handshake')
  })

  it('mutual TLS with requestCert but not rejectUnauthorized lets anyone in', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await startOurTlsServer(r, { ...SERVER, ca: CA, requestCert: true, rejectUnauthorized: false })
    const c1 = r.createClient('ours', { host: HOST, port: srv.port, tls: { ca: CA } })
    const c2 = r.createClient('ours', { host: HOST, port: srv.port, tls: { ca: CA, ...UNTRUSTED } })
    await Promise.all([waitHandshake('ours', c1), waitHandshake('ours', c2)])
    await srv.waitConnection(1)
    r.assertNoErrors()
  })

  it('an untrusted server certificate: error event naming the reason, reconnects back off, no crash', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await startOurTlsServer(r, UNTRUSTED)
    const client = r.createClient('ours', { host: HOST, port: srv.port, tls: { ca: CA } })
    client.autoReconnect(50, 200)
    const errors = []
    const reconnecting = []
    const connects = []
    client.on('error', (e) => errors.push(e))
    client.on('reconnecting', (info) => reconnecting.push(info))
    client.on('connect', () => connects.push(1))
    await waitUntil(() => errors.length >= 1 && reconnecting.length >= 2, WAIT, "an 'error' and 2 'reconnecting' events")
      .catch((e) => {
        e.message += ` (got ${errors.length} errors ${JSON.stringify(errors.map((x) => x.message))}, ` +
          `${reconnecting.length} 'reconnecting', ${connects.length} 'connect')`
        throw e
      })
    assert.match(errors[0].message, /UnknownIssuer/, errors[0].message)
    for (const info of reconnecting) {
      assert.equal(typeof info.attempt, 'number')
      assert.equal(typeof info.delay, 'number')
      assert.ok(info.delay <= 200, `delay ${info.delay} <= max`)
    }
    assert.equal(connects.length, 0)
    assert.equal(srv.connections.length, 0)
    client.disconnect()
    // Still healthy: a properly configured client gets through to a good server.
    const good = await startOurTlsServer(r, SERVER)
    const c2 = r.createClient('ours', { host: HOST, port: good.port, tls: { ca: CA } })
    await waitHandshake('ours', c2)
  })

  it('rejectUnauthorized: false takes the untrusted certificate', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await startOurTlsServer(r, UNTRUSTED)
    const client = r.createClient('ours', { host: HOST, port: srv.port, tls: { rejectUnauthorized: false } })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('a plain (non-TLS) client to a TLS server gets nowhere, and the server keeps going', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await startOurTlsServer(r, SERVER)
    const plain = r.createClient('ours', srv.port, HOST)
    plain.on('error', () => {})
    await delay(300)
    assert.equal(srv.connections.length, 0)
    plain.disconnect()
    const client = r.createClient('ours', { host: HOST, port: srv.port, tls: { ca: CA } })
    await waitHandshake('ours', client)
    await srv.waitConnection(0)
  })

  it('bad PEM is a clear error from createServer / createClient', TEST_OPTS, (t) => {
    const U = require('..')
    assert.throws(() => U.createServer({ tls: { key: 'not a key', cert: SERVER.cert } }, () => {}), /no private key found in `key`/)
    assert.throws(() => U.createServer({ tls: { key: SERVER.key, cert: 'not a cert' } }, () => {}), /no certificate found in `cert`/)
    assert.throws(() => U.createServer({ tls: { cert: SERVER.cert } }, () => {}), /`key` and `cert`/)
    assert.throws(() => U.createServer({ tls: { key: SERVER.key, cert: UNTRUSTED.cert } }, () => {}), /does not match/)
    assert.throws(() => U.createClient({ host: HOST, port: 1, tls: { ca: 'not a cert' } }), /no certificate found in `ca`/)
  })
})

describe('native TLS interop with uhura@0.1.2 over node:tls', () => {
  it('a 0.1.2 client (createConnection -> tls.connect) talks to our TLS server', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await startOurTlsServer(r, SERVER)
    const port = srv.port
    const client = r.createClient('v0.1.2', {
      host: HOST,
      port,
      createConnection: (o, cb) => cb(null, tls.connect({ host: HOST, port, ca: CA })),
    })
    await waitHandshake('v0.1.2', client)
    const { conn } = await srv.waitConnection(0)
    assert.match(String(client.get('sessionID')), SESSION_ID_RE)
    assert.equal(conn.get('sessionID'), client.get('sessionID'))
    assert.equal(client.socket.authorized, true, 'node:tls verified our certificate')
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('our TLS client talks to a 0.1.2 server (createServer: tls.createServer)', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('v0.1.2', { options: { createServer: tls.createServer, ...SERVER } })
    const client = r.createClient('ours', { host: HOST, port: srv.port, tls: { ca: CA } })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    const sid = client.get('sessionID')
    assert.match(String(sid), SESSION_ID_RE)
    assert.equal(conn.get('sessionID'), sid)
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('mutual TLS against a 0.1.2 server that requires client certificates', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('v0.1.2', {
      options: { createServer: tls.createServer, ...SERVER, ca: CA, requestCert: true, rejectUnauthorized: true },
    })
    const client = r.createClient('ours', { host: HOST, port: srv.port, tls: { ca: CA, ...CLIENT } })
    await waitHandshake('ours', client)
    const { conn } = await srv.waitConnection(0)
    assert.equal(conn.socket.authorized, true, 'node:tls accepted our client certificate')
    assert.equal(conn.socket.getPeerCertificate().subject.CN, 'uhura test client')
    await exchange(client, conn)
    r.assertNoErrors()
  })

  it('a 0.1.2 client with a client certificate passes our mutual-TLS server', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await startOurTlsServer(r, { ...SERVER, ca: CA, requestCert: true, rejectUnauthorized: true })
    const port = srv.port
    const client = r.createClient('v0.1.2', {
      host: HOST,
      port,
      createConnection: (o, cb) => cb(null, tls.connect({ host: HOST, port, ca: CA, ...CLIENT })),
    })
    await waitHandshake('v0.1.2', client)
    const { conn } = await srv.waitConnection(0)
    await exchange(client, conn)
    r.assertNoErrors()
  })
})
