'use strict'
// Per-test resources: servers and clients of any implementation, raw
// sockets and servers, child processes; all closed when the test ends.

const net = require('node:net')
const { EventEmitter } = require('node:events')
const { DEFAULT_WAIT, waitFor, waitUntil, withTimeout } = require('./wait')
const { HOST, listenAndWait } = require('./net')
const { parseFrames } = require('./wire')
const { IMPLS, waitHandshake, closeClient } = require('./legacy')

// Errors seen on each tracked emitter (server connections, clients).
const ERRORS = new WeakMap()
function trackErrors (emitter) {
  if (ERRORS.has(emitter)) return ERRORS.get(emitter)
  const list = []
  ERRORS.set(emitter, list)
  emitter.on('error', (err) => list.push(err))
  return list
}
function errorsOf (emitter) {
  return ERRORS.get(emitter) || []
}

class Resources {
  constructor () {
    this.servers = []
    this.clients = []
    this.sockets = []
    this.rawServers = []
    this.children = []
  }

  // Creates a server of `impl` without listening. Returns a handle:
  // { impl, U, server, port (after listen), connections: [{conn, reconnect}],
  //   events ('connection'), errors (server 'error' events), waitConnection(n),
  //   close() }. opts.onConnection(conn, reconnect) runs synchronously inside
  // the createServer callback (attach listeners there to miss nothing).
  createServer (impl, opts = {}) {
    const U = IMPLS[impl]()
    const connections = []
    const events = new EventEmitter()
    const rawSockets = new Set()
    const errors = []
    const onConn = (conn, reconnect) => {
      trackErrors(conn)
      const entry = { conn, reconnect }
      connections.push(entry)
      if (opts.onConnection) opts.onConnection(conn, reconnect)
      events.emit('connection', entry)
    }
    const server = opts.options ? U.createServer(opts.options, onConn) : U.createServer(onConn)
    if (server instanceof net.Server) {
      // Old servers: keep the raw sockets so close() can end them, and stop an
      // ECONNRESET on a 0.0.10 connection (no error forwarding) from crashing.
      server.on('connection', (s) => {
        rawSockets.add(s)
        s.on('error', () => {})
        s.once('close', () => rawSockets.delete(s))
      })
    }
    server.on('error', (err) => errors.push(err))
    const srv = {
      impl,
      U,
      server,
      host: undefined,
      port: undefined,
      connections,
      events,
      errors,
      // Resolves with the n-th (0-based) connection entry {conn, reconnect}.
      async waitConnection (n = 0, ms = DEFAULT_WAIT) {
        if (connections.length > n) return connections[n]
        await waitFor(events, 'connection', ms, {
          filter: () => connections.length > n,
          label: `${impl} server (waiting for connection #${n + 1})`,
        })
        return connections[n]
      },
      close: async () => {
        for (const { conn } of connections) {
          try { if (conn.socket) conn.socket.destroy() } catch (_) {}
        }
        for (const s of rawSockets) s.destroy()
        if (srv.closed) return
        await withTimeout(new Promise((resolve) => {
          try {
            server.close(() => resolve())
          } catch (_) {
            resolve()
          }
        }), DEFAULT_WAIT, `${impl} server.close() callback`)
        srv.closed = true
      },
      closed: false,
    }
    this.servers.push(srv)
    return srv
  }

  // Creates a server of `impl` listening on 127.0.0.1:0 (or opts.host).
  async startServer (impl, opts = {}) {
    const srv = this.createServer(impl, opts)
    const host = opts.host || HOST
    await listenAndWait(srv.server, opts.port || 0, host)
    srv.host = host
    srv.port = srv.server.address().port
    return srv
  }

  // Creates a client; extra args are passed to createClient as given
  // (port, host) or (options). Never passes a callback to old clients.
  createClient (impl, ...args) {
    const U = IMPLS[impl]()
    if (impl !== 'ours' && args.some((a) => typeof a === 'function')) {
      throw new Error(`test bug: never pass a callback to an old (${impl}) createClient`)
    }
    const client = U.createClient(...args)
    trackErrors(client)
    this.clients.push({ impl, client })
    return client
  }

  // Creates a client and waits for its completed handshake.
  async connectClient (impl, port, host = HOST, ms = DEFAULT_WAIT, waitOpts) {
    const client = this.createClient(impl, port, host)
    await waitHandshake(impl, client, ms, waitOpts)
    return client
  }

  // A raw TCP connection: records what it receives.
  rawConnect (port, host = HOST) {
    const socket = net.connect(port, host)
    const chunks = []
    const errors = []
    let closed = false
    const closedP = new Promise((resolve) => socket.once('close', () => { closed = true; resolve() }))
    socket.on('data', (d) => chunks.push(d))
    socket.on('error', (e) => errors.push(e))
    this.sockets.push(socket)
    const raw = {
      socket,
      errors,
      get closed () { return closed },
      text: () => Buffer.concat(chunks).toString('utf8'),
      connected: () => withTimeout(new Promise((resolve, reject) => {
        if (!socket.connecting && !socket.destroyed) return resolve()
        socket.once('connect', resolve)
        socket.once('error', reject)
      }), DEFAULT_WAIT, 'raw socket to connect'),
      waitText: (re, ms = DEFAULT_WAIT) =>
        waitUntil(() => re.test(raw.text()), ms, `raw socket to receive ${re}`),
      waitClosed: (ms = DEFAULT_WAIT) =>
        withTimeout(closedP, ms, 'the raw socket to be closed by the peer'),
      write: (data) => new Promise((resolve) => socket.write(data, () => resolve())),
    }
    return raw
  }

  // A raw TCP server that calls onStart(socket, peer) once per connection,
  // when the client's `start` has arrived (a server's turn in the
  // handshake). Each connection is a `peer` { socket, text (all the client
  // wrote), frames() } in the server's `peers`, in order.
  async rawServerAfterStart (onStart) {
    const peers = []
    const rs = await this.rawServer((s) => {
      const peer = { socket: s, text: '', frames: () => parseFrames(peer.text) }
      peers.push(peer)
      let started = false
      s.setEncoding('utf8')
      s.on('data', (d) => {
        peer.text += d
        if (!started && /"start"/.test(peer.text)) {
          started = true
          onStart(s, peer)
        }
      })
    })
    rs.peers = peers
    return rs
  }

  // A raw TCP server on 127.0.0.1:0; onSocket(socket) per connection.
  async rawServer (onSocket) {
    const sockets = new Set()
    const server = net.createServer((s) => {
      sockets.add(s)
      s.on('error', () => {})
      s.once('close', () => sockets.delete(s))
      onSocket(s)
    })
    await withTimeout(new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, HOST, resolve)
    }), DEFAULT_WAIT, 'raw server to listen')
    const rs = {
      server,
      port: server.address().port,
      sockets,
      close: () => withTimeout(new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }), DEFAULT_WAIT, 'raw server close'),
    }
    this.rawServers.push(rs)
    return rs
  }

  trackChild (child) {
    this.children.push(child)
    return child
  }

  // Asserts that no tracked client or server connection emitted 'error'.
  assertNoErrors () {
    const found = []
    for (const { impl, client } of this.clients) {
      for (const e of errorsOf(client)) found.push(`${impl} client: ${e && e.stack}`)
    }
    for (const srv of this.servers) {
      for (const e of srv.errors) found.push(`${srv.impl} server: ${e && e.stack}`)
      for (const { conn } of srv.connections) {
        for (const e of errorsOf(conn)) found.push(`${srv.impl} server connection: ${e && e.stack}`)
      }
    }
    if (found.length) {
      throw new Error(`unexpected 'error' events:\n${found.join('\n')}`)
    }
  }

  async closeAll () {
    const failures = []
    for (const { impl, client } of this.clients) {
      try { closeClient(impl, client) } catch (e) { failures.push(e) }
    }
    for (const s of this.sockets) s.destroy()
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    }
    for (const srv of this.servers) {
      try { await srv.close() } catch (e) { failures.push(e) }
    }
    for (const rs of this.rawServers) {
      try { await rs.close() } catch (e) { failures.push(e) }
    }
    if (failures.length) throw failures[0]
  }
}

// Per-test resource scope; everything is closed in t.after.
function useResources (t) {
  const r = new Resources()
  t.after(() => r.closeAll())
  return r
}

module.exports = { Resources, useResources, trackErrors, errorsOf }
