'use strict'
// Per-implementation adapters for the benchmark.
//
// Each adapter is one object:
//   name         short id used on the command line and in results.json
//   label        human-readable name for tables and the chart
//   acks         true if send(..., cb) calls cb when the peer acknowledged the
//                message (false: cb, if any, is not waited for; the burst
//                benchmark then waits for a 'done' reply from the server)
//   load()       require()s the implementation (throws if unavailable)
//   makeServer(onConn)        -> Promise<{ port, close() }>, listening on
//                                127.0.0.1, port chosen by the OS; onConn(conn)
//                                runs once per connection whose handshake is done
//   makeClient({ port, host })-> Promise<client>, resolved once the handshake
//                                is complete (sends go out in the negotiated mode)
// Both conn and client offer send(event, ...args[, cb]) and on(event, fn);
// close(client) ends a client.
// Optional flags read by run.js:
//   legacy       a published package of 2014: the bursts marked `legacy: false`
//                in run.js (10M) are not run for it, with `legacy` as the note
//   rttOnce      runs in the first round-trip round only (too slow to repeat)
//   rttOnly      runs in the round-trip test only
//   env          environment variables its child processes set before loading it
//
// A new transport variant (TLS, a createServer/createConnection factory, ...)
// is one more entry built with uhuraAdapter({...}) or by hand.

const fs = require('fs')
const net = require('net')
const path = require('path')
const tls = require('tls')
const { EventEmitter } = require('events')

const HOST = '127.0.0.1'
const ROOT = path.join(__dirname, '..')

// Generic adapter for anything with the uhura API.
//   isReady(args) decides whether a client-side 'connect' event means the
//   handshake is complete (0.1.2 also emits a local 'connect' with no config
//   as soon as the socket exists).
//   serverOpts / clientOpts (optional): options for createServer(opts, cb) and
//   createClient({ port, host, ...opts }), or functions returning them
//   (called on first use, e.g. to read certificates lazily).
function uhuraAdapter ({ name, label, modPath, acks, isReady, serverOpts, clientOpts }) {
  let mod = null
  const resolveOpts = (o) => (typeof o === 'function' ? o() : o)
  const load = () => (mod = mod || require(modPath))
  return {
    name,
    label,
    acks,
    load,
    makeServer (onConn) {
      const m = load()
      return new Promise((resolve, reject) => {
        const cb = (conn) => onConn(conn)
        const so = resolveOpts(serverOpts)
        const srv = so ? m.createServer(so, cb) : m.createServer(cb)
        if (typeof srv.on === 'function') srv.on('error', reject)
        srv.listen(0, HOST, () => {
          const addr = srv.address()
          resolve({ port: addr.port, close: () => new Promise((resolve) => srv.close(() => resolve())) })
        })
      })
    },
    makeClient ({ port, host = HOST }) {
      const m = load()
      return new Promise((resolve, reject) => {
        const co = resolveOpts(clientOpts)
        const client = co ? m.createClient(Object.assign({ port, host }, co)) : m.createClient(port, host)
        const onConnect = (...args) => {
          if (!isReady(args)) return
          client.removeListener('connect', onConnect)
          client.removeListener('error', onError)
          resolve(client)
        }
        const onError = (err) => reject(err)
        client.on('connect', onConnect)
        client.on('error', onError)
      })
    },
    close (client) {
      client.disconnect()
    }
  }
}

// Raw baseline: net + newline-delimited JSON, with a per-message ack line so
// that the acked-burst numbers compare like with like.
//   event: {"e":"name","a":[args...],"id":7}   (id only when a callback is given)
//   ack:   {"ack":7}
//   handshake: the server writes {"e":"connect","a":[]} on accept; the client
//   is ready when it reads it.
// Batched the way a careful hand-written peer would be, so that the baseline
// is not slowed by one write per message: sends are joined and written
// BATCH lines at a time, the rest at the end of the current macrotask (a
// microtask); every message still gets its own ack line, and the ack lines
// for one incoming data chunk go out in one write. One JSON.parse per line.
const BATCH = 1024

class LinePeer extends EventEmitter {
  constructor (socket) {
    super()
    this.socket = socket
    this.seq = 0
    this.pending = new Map()
    this.buf = ''
    this.out = []
    this.flushQueued = false
    this.flush = () => {
      this.flushQueued = false
      if (this.out.length) this._write()
    }
    socket.setEncoding('utf8')
    socket.setNoDelay(true)
    socket.on('data', (chunk) => this._data(chunk))
    socket.on('error', (err) => this.emit('error', err))
    socket.on('close', () => this.emit('disconnect'))
  }

  _write () {
    this.socket.write(this.out.join(''))
    this.out = []
  }

  _data (chunk) {
    const buf = this.buf + chunk
    let acks = ''
    let nl
    let start = 0
    while ((nl = buf.indexOf('\n', start)) !== -1) {
      const line = buf.slice(start, nl)
      start = nl + 1
      if (line.length === 0) continue
      const msg = JSON.parse(line)
      if (msg.ack !== undefined) {
        const cb = this.pending.get(msg.ack)
        if (cb) {
          this.pending.delete(msg.ack)
          cb()
        }
        continue
      }
      if (msg.id !== undefined) acks += '{"ack":' + JSON.stringify(msg.id) + '}\n'
      this.emit(msg.e, ...msg.a)
    }
    this.buf = start === 0 ? buf : buf.slice(start)
    if (acks) this.socket.write(acks)
  }

  send (event, ...args) {
    let cb = null
    if (typeof args[args.length - 1] === 'function') cb = args.pop()
    const msg = { e: event, a: args }
    if (cb) {
      msg.id = ++this.seq
      this.pending.set(msg.id, cb)
    }
    this.out.push(JSON.stringify(msg) + '\n')
    if (this.out.length >= BATCH) this._write()
    else if (!this.flushQueued) {
      this.flushQueued = true
      queueMicrotask(this.flush)
    }
  }

  disconnect () {
    this.flush()
    this.socket.end()
  }
}

const raw = {
  name: 'raw',
  label: 'raw net + NDJSON',
  acks: true,
  load () { return net },
  makeServer (onConn) {
    return new Promise((resolve, reject) => {
      const srv = net.createServer((socket) => {
        const peer = new LinePeer(socket)
        socket.write('{"e":"connect","a":[]}\n')
        onConn(peer)
      })
      srv.on('error', reject)
      srv.listen(0, HOST, () => resolve({ port: srv.address().port, close: () => new Promise((resolve) => srv.close(() => resolve())) }))
    })
  },
  makeClient ({ port, host = HOST }) {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host)
      const peer = new LinePeer(socket)
      peer.once('connect', () => { peer.removeListener('error', reject); resolve(peer) })
      peer.once('error', reject)
    })
  },
  close (client) { client.disconnect() }
}

// Fixed test certificates (see __test__/fixtures/gen.sh): a CA, and a server
// certificate for localhost / 127.0.0.1 signed by it. Read on first use.
const FIXTURES = path.join(ROOT, '__test__', 'fixtures')
let certs = null
function testCerts () {
  if (!certs) {
    const f = (name) => fs.readFileSync(path.join(FIXTURES, name))
    certs = { ca: f('ca-cert.pem'), key: f('server-key.pem'), cert: f('server-cert.pem') }
  }
  return certs
}

// Transport variants of ours. `optIn`: run only when named in --only (the
// default run compares ours over TCP with the other implementations).
// `noIdle`: the idle-RSS test is skipped for it unless --tests names idle.
const OURS_DIR = process.env.UHURA_BENCH_OURS || ROOT
const oursVariant = (name, label, { server, client }) => Object.assign(
  uhuraAdapter({ name, label, modPath: OURS_DIR, acks: true, isReady: () => true, serverOpts: server, clientOpts: client }),
  { optIn: true, noIdle: true, variantOf: 'ours' }
)

const oursVariants = [
  // Native TLS: rustls inside the addon on both sides.
  oursVariant('ours-tls', 'uhura 0.2, native TLS', {
    server: () => ({ tls: { key: testCerts().key, cert: testCerts().cert } }),
    client: () => ({ tls: { ca: testCerts().ca } })
  }),
  // The original's factory hooks over plain TCP: Node's net owns the sockets,
  // their bytes are pumped through the addon.
  oursVariant('ours-factory', 'uhura 0.2, net factory', {
    server: () => ({ createServer: net.createServer }),
    client: () => ({ createConnection: (o, cb) => cb(null, net.connect(o.port, HOST)) })
  }),
  // The same hooks with Node's tls module.
  oursVariant('ours-factory-tls', 'uhura 0.2, tls factory', {
    server: () => ({ createServer: tls.createServer, key: testCerts().key, cert: testCerts().cert }),
    client: () => ({ createConnection: (o, cb) => cb(null, tls.connect({ host: HOST, port: o.port, ca: testCerts().ca })) })
  })
]

// Ours with the busy poll of Node's loop (src/node/busy_poll.rs) off, and
// with a longer window than its default (70 µs): round trips only, the
// setting is about latency on machines whose idle CPUs halt. `env` is
// applied by child.js before the package loads.
const oursBusyPoll = [['ours-busypoll', '100'], ['ours-nobusypoll', '0']].map(([name, us]) => Object.assign(
  uhuraAdapter({ name, label: `uhura 0.2, UHURA_BUSY_POLL_US=${us}`, modPath: OURS_DIR, acks: true, isReady: () => true }),
  { variantOf: 'ours', rttOnly: true, env: { UHURA_BUSY_POLL_US: us } }
))

const impls = [
  uhuraAdapter({
    name: 'ours',
    label: 'uhura 0.2 (Rust)',
    // UHURA_BENCH_OURS (set by run.js --ours=DIR) points at another build of
    // this package, e.g. a release snapshot.
    modPath: OURS_DIR,
    acks: true,
    // A replacement emits 'connect' once per completed handshake.
    isReady: () => true
  }),
  Object.assign(uhuraAdapter({
    name: 'uhura-0.1.2',
    label: 'uhura@0.1.2',
    modPath: path.join(ROOT, 'node_modules', 'uhura-0.1.2'),
    acks: true,
    // The first 'connect' (no args) is local, emitted when the socket is
    // created; the server's connect carries the negotiated config.
    isReady: (args) => args[0] != null && typeof args[0] === 'object'
  }), {
    legacy: 'its ack bookkeeping is quadratic: it does not finish 1M',
    // ~88 ms per round trip (Nagle + delayed ACK): one round reaches its limit.
    rttOnce: true
  }),
  Object.assign(uhuraAdapter({
    name: 'uhura-0.0.10',
    label: 'uhura@0.0.10',
    modPath: path.join(ROOT, 'node_modules', 'uhura-0.0.10'),
    acks: false,
    isReady: () => true
  }), {
    legacy: 'no acks, so nothing bounds what it queues: its memory explodes'
  }),
  raw,
  ...oursBusyPoll,
  ...oursVariants
]

module.exports = { impls, byName: (n) => impls.find((i) => i.name === n), uhuraAdapter, LinePeer, HOST }
