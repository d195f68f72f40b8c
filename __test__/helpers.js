'use strict'
// Shared test helpers for the uhura test suite (node:test).
//
// Implementations under test:
//   ours     -> require('..')            (the Rust/napi-rs addon + index.js)
//   v0.1.2   -> require('uhura-0.1.2')   (published package, devDependency alias)
//   v0.0.10  -> require('uhura-0.0.10')  (published package, devDependency alias)
//
// UHURA_TEST_OLD_ONLY=1 makes the suites run their bodies against the old
// packages only (never loading ours), to validate the test logic itself.
//
// Quirks of the old packages that these helpers work around:
// * 0.1.2 createClient(port, host, cb) throws (`self` is undefined): never pass
//   a callback to an old client.
// * 0.1.2 client emits a local `connect` (no args) synchronously inside
//   createClient()/reconnect(), then again when the server's connect arrives.
//   Listeners attached after createClient() returns only see the server's.
// * 0.0.10 createServer ignores options; 0.0.10 server connections do not
//   forward socket errors (an ECONNRESET would crash), so raw server sockets of
//   old servers get an error listener here.

const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const { EventEmitter } = require('node:events')
const { after } = require('node:test')

const OLD_ONLY = process.env.UHURA_TEST_OLD_ONLY === '1'
const HOST = '127.0.0.1'
const ROOT = path.join(__dirname, '..')
const DEFAULT_WAIT = 5000

const IMPLS = {
  ours: () => require('..'),
  'v0.1.2': () => require('uhura-0.1.2'),
  'v0.0.10': () => require('uhura-0.0.10'),
}

// Absolute module paths, for child processes (`node -e "require(P)"`).
const MODULE_PATHS = {
  ours: () => ROOT,
  'v0.1.2': () => path.dirname(require.resolve('uhura-0.1.2/package.json')),
  'v0.0.10': () => path.dirname(require.resolve('uhura-0.0.10/package.json')),
}

// What each implementation can do on the wire.
//   acks:         speaks object mode with acks (needs both peers)
//   sendCallback: send(ev, ...args, cb) strips and calls cb (0.0.10 would
//                 serialise the function as a trailing null and never call it)
const CAPS = {
  ours: { acks: true, sendCallback: true },
  'v0.1.2': { acks: true, sendCallback: true },
  'v0.0.10': { acks: false, sendCallback: false },
}

const SESSION_ID_RE = /^[A-Za-z0-9]{24}$/

// Splits one direction of a connection's text, as the old writers frame it
// ("[\n<msg>\n,\n<msg>..."), into its complete JSON messages. JSON.stringify
// output never holds a raw newline, so "\n,\n" only separates messages.
// An incomplete last message is left out.
function parseFrames (text) {
  const body = text.replace(/^\s*\[\s*/, '')
  const out = []
  for (const piece of body.split(/\n,\n/)) {
    const p = piece.replace(/\n\]\s*$/, '').trim() // the root array's closer
    if (!p) continue
    try { out.push(JSON.parse(p)) } catch (_) { /* incomplete tail */ }
  }
  return out
}

function delay (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function describeEmitter (e) {
  if (!e) return String(e)
  const name = e.constructor && e.constructor.name
  return name || 'emitter'
}

// Resolves with the event's argument array; rejects after `ms` with a clear
// message. opts.filter(...args) can skip events that do not match.
function waitFor (emitter, event, ms = DEFAULT_WAIT, opts = {}) {
  const label = opts.label || describeEmitter(emitter)
  return new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      if (opts.filter && !opts.filter(...args)) return
      cleanup()
      resolve(args)
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`Timed out after ${ms} ms waiting for '${String(event)}' on ${label}`))
    }, ms)
    function cleanup () {
      clearTimeout(timer)
      emitter.removeListener(event, onEvent)
    }
    emitter.on(event, onEvent)
  })
}

// Polls pred() (which may return a Promise) every 5 ms until it gives
// something truthy; rejects after `ms`.
async function waitUntil (pred, ms = DEFAULT_WAIT, what = 'condition') {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await pred()
    if (v) return v
    if (Date.now() >= deadline) {
      throw new Error(`Timed out after ${ms} ms waiting for ${what}`)
    }
    await delay(5)
  }
}

// Records every emission of `event` as an argument array.
function collect (emitter, event) {
  const list = []
  emitter.on(event, (...args) => list.push(args))
  return list
}

// Rejects if `promise` does not settle within ms.
function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

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

// Waits for the client's completed handshake. For 0.1.2 clients, skips the
// local no-arg `connect` that 0.1.2 emits when a (re)connect's socket is
// created: the server's connect carries a config object (from a 0.1.2 or
// ours server). Do not use `requireConfig` with a 0.0.10 server.
function waitHandshake (impl, client, ms = DEFAULT_WAIT, { requireConfig = true } = {}) {
  const filter = impl === 'v0.1.2' && requireConfig
    ? (cfg) => cfg !== null && typeof cfg === 'object'
    : undefined
  return waitFor(client, 'connect', ms, { filter, label: `${impl} client` })
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
    await withTimeout(new Promise((resolve, reject) => {
      srv.server.once('error', reject)
      srv.server.listen(opts.port || 0, host, () => {
        srv.server.removeListener('error', reject)
        resolve()
      })
    }), DEFAULT_WAIT, `${impl} server to listen`)
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

  // A raw TCP server that calls onStart(socket) once per connection, when
  // the client's `start` has arrived (a server's turn in the handshake).
  rawServerAfterStart (onStart) {
    return this.rawServer((s) => {
      let buf = ''
      let started = false
      s.setEncoding('utf8')
      s.on('data', (d) => {
        buf += d
        if (!started && /"start"/.test(buf)) {
          started = true
          onStart(s)
        }
      })
    })
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

function closeClient (impl, client) {
  if (impl !== 'ours') {
    // Old clients: switch auto-reconnect off and cancel a pending retry.
    client._reconnect = false
    if (client._timer) { clearTimeout(client._timer); client._timer = null }
  }
  try { client.disconnect() } catch (_) {}
  try { if (client.socket) client.socket.destroy() } catch (_) {}
}

// Per-test resource scope; everything is closed in t.after.
function useResources (t) {
  const r = new Resources()
  t.after(() => r.closeAll())
  return r
}

// Writes `prefix` then `total` bytes of 'a' in chunks, honouring
// back-pressure; stops early when the socket closes, errors, or does not
// drain within `drainMs`. Returns the number of filler bytes written.
async function flood (socket, prefix, total, { chunk = 64 * 1024, drainMs = DEFAULT_WAIT } = {}) {
  const block = Buffer.alloc(chunk, 'a')
  if (socket.destroyed) return 0
  socket.write(prefix)
  let written = 0
  while (written < total && !socket.destroyed && socket.writable) {
    const ok = socket.write(block)
    written += block.length
    if (!ok) {
      const outcome = await new Promise((resolve) => {
        const done = (why) => {
          clearTimeout(timer)
          socket.removeListener('drain', onDrain)
          socket.removeListener('close', onClose)
          resolve(why)
        }
        const onDrain = () => done('drain')
        const onClose = () => done('close')
        const timer = setTimeout(() => done('timeout'), drainMs)
        socket.on('drain', onDrain)
        socket.on('close', onClose)
      })
      if (outcome !== 'drain') break
    }
  }
  return written
}

// File-level watchdog: if the test process is still alive 10 s after the last
// test of the file (a leaked handle, e.g. a client or server that cannot be
// closed), list what keeps it alive and exit non-zero instead of hanging the
// whole `node --test` run.
function installExitWatchdog (ms = 10000) {
  after(() => {
    const timer = setTimeout(() => {
      const handles = (process._getActiveHandles ? process._getActiveHandles() : [])
        .map((h) => (h && h.constructor ? h.constructor.name : typeof h))
      console.error(`uhura tests: process still alive ${ms} ms after the last test; ` +
        `active handles: ${JSON.stringify(handles)}. Something was not closed.`)
      process.exit(70)
    }, ms)
    timer.unref()
  })
}

/** A port nothing listens on (right now). */
async function freePort () {
  const s = net.createServer()
  await new Promise((resolve, reject) => {
    s.once('error', reject)
    s.listen(0, HOST, resolve)
  })
  const port = s.address().port
  await new Promise((resolve) => s.close(resolve))
  return port
}

// Polls an async predicate every 20 ms until it returns truthy.

// ------------------------------------------------------------------ redis
// A private redis-server per test on a random loopback port: /usr/bin/redis-server,
// the one on PATH, or $UHURA_REDIS_SERVER. Without one, the tests that need it
// FAIL unless UHURA_SKIP_REDIS=1 (then they are skipped).

const SKIP_REDIS = process.env.UHURA_SKIP_REDIS === '1'

function findRedis () {
  // UHURA_REDIS_SERVER: an explicit redis-server binary (only that one is tried).
  if (process.env.UHURA_REDIS_SERVER) return fs.existsSync(process.env.UHURA_REDIS_SERVER) ? process.env.UHURA_REDIS_SERVER : null
  if (fs.existsSync('/usr/bin/redis-server')) return '/usr/bin/redis-server'
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' })
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : null
}

/** Returns false (test skipped) or throws when redis-server is missing; true when present. */
function needRedis (t) {
  if (findRedis()) return true
  if (SKIP_REDIS) {
    t.skip('redis-server not found; skipped because UHURA_SKIP_REDIS=1')
    return false
  }
  throw new Error('redis-server is not installed (looked at $UHURA_REDIS_SERVER, /usr/bin/redis-server and PATH). ' +
    'Install it (Debian: apt-get install redis-server) or set UHURA_SKIP_REDIS=1 to skip the Redis store tests.')
}

/** One RESP command on a fresh connection; resolves with the decoded reply. */
function redisCommand (port, ...args) {
  return withTimeout(new Promise((resolve, reject) => {
    const s = net.connect(port, HOST)
    let buf = Buffer.alloc(0)
    s.on('error', reject)
    s.on('connect', () => {
      let out = `*${args.length}\r\n`
      for (const a of args) out += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`
      s.write(out)
    })
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      const nl = buf.indexOf('\r\n')
      if (nl < 0) return
      const head = buf.slice(0, nl).toString()
      const type = head[0]
      const rest = head.slice(1)
      if (type === '+') { s.destroy(); return resolve(rest) }
      if (type === '-') { s.destroy(); return reject(new Error(rest)) }
      if (type === ':') { s.destroy(); return resolve(Number(rest)) }
      if (type === '$') {
        const n = Number(rest)
        if (n < 0) { s.destroy(); return resolve(null) }
        if (buf.length < nl + 2 + n + 2) return
        s.destroy()
        return resolve(buf.slice(nl + 2, nl + 2 + n).toString('utf8'))
      }
      s.destroy()
      reject(new Error(`unexpected redis reply ${JSON.stringify(head)}`))
    })
  }), 3000, `redis ${args[0]}`)
}

async function redisGetJSON (port, key) {
  const text = await redisCommand(port, 'GET', key)
  return text == null ? null : JSON.parse(text)
}

/**
 * A redis-server on a random port (no persistence), killed in t.after.
 * `kill()` SIGKILLs it; `start()` (re)starts it on the same port.
 */
async function startRedis (t) {
  const bin = findRedis()
  const port = await freePort()
  const redis = {
    port,
    url: `redis://${HOST}:${port}`,
    proc: null,
    exited: null,
    async start () {
      const proc = spawn(bin, ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
      redis.proc = proc
      redis.exited = new Promise((resolve) => proc.on('exit', resolve))
      await waitUntil(async () => {
        if (proc.exitCode !== null) throw new Error(`redis-server exited with code ${proc.exitCode} on port ${port}`)
        return (await redisCommand(port, 'PING').catch(() => null)) === 'PONG'
      }, 5000, `redis-server on port ${port} to answer PING`)
    },
    async kill () {
      const proc = redis.proc
      if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
      if (redis.exited) await withTimeout(redis.exited, 5000, 'redis-server to exit')
    },
  }
  t.after(() => redis.kill())
  await redis.start()
  return redis
}

module.exports = {
  OLD_ONLY,
  HOST,
  ROOT,
  IMPLS,
  MODULE_PATHS,
  CAPS,
  SESSION_ID_RE,
  DEFAULT_WAIT,
  parseFrames,
  delay,
  waitFor,
  waitUntil,
  waitHandshake,
  collect,
  withTimeout,
  trackErrors,
  errorsOf,
  Resources,
  useResources,
  closeClient,
  flood,
  installExitWatchdog,
  freePort,
  findRedis,
  needRedis,
  redisCommand,
  redisGetJSON,
  startRedis,
}
