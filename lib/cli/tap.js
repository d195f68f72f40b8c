'use strict'
// `uhura tap`: a transparent TCP relay that prints both directions of every
// connection, message by message. It frames the wire and never interprets
// it (no handshake, no acks of its own), so it sits between any two peers,
// old or new, and what does not frame is shown, not refused.

const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const { Failure, port, address, formatAddress, withJson, outputOf, untilSignal } = require('./args')
const { Framer, classify } = require('./wire')

/** Longest message text a human line shows in full. */
const SHOWN = 3000

function register (program) {
  withJson(program.command('tap'))
    .description('relay TCP from a local port to a uhura peer, printing every message both ways')
    .argument('<listen-port>', 'the port to accept connections on; 0 picks a free one', port)
    .argument('<target-host:port>', 'where to relay them', address)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--record <file.json>', 'write each connection\'s traffic as a test vector (tests/vectors): ' +
      'the first to this file, the n-th to file-n.json')
    .addHelpText('after', `
Point a client at the tap instead of the server. A recording holds the exact
text each side wrote, in the form of the recorded vectors in tests/vectors,
so a problem seen in the field can be replayed as a test. It is written when
the connection closes (or the tap is interrupted).

Examples:
  uhura tap 5000 127.0.0.1:4000
  uhura tap 5000 10.0.0.7:4000 --record field.json --json`)
    .action(tap)
}

async function tap (listenPort, target, opts) {
  const out = outputOf(opts)
  const to = formatAddress(target.host, target.port)
  const open = new Set()
  let count = 0
  const server = net.createServer((socket) => {
    const relay = new Relay(out, ++count, socket, target, opts.record && recordFile(opts.record, count))
    open.add(relay)
    relay.closed.then(() => open.delete(relay))
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(listenPort, opts.host, resolve)
  }).catch((err) => {
    throw new Failure(`cannot listen on ${formatAddress(opts.host, listenPort)}: ${err.message}`)
  })
  const { address: host, port: actual } = server.address()
  const where = formatAddress(host, actual)
  out.record('listening', { host, port: actual, address: where, target: to }, { detail: `on ${where}, relaying to ${to}` })
  await untilSignal()
  for (const relay of open) relay.save()
  out.record('close', {}, { detail: 'stopped' })
}

/** The file of the n-th connection's recording: `file` for the first, `file-n.ext` after. */
function recordFile (file, n) {
  if (n === 1) return file
  const ext = path.extname(file)
  return `${file.slice(0, file.length - ext.length)}-${n}${ext}`
}

/** One relayed connection: a client socket, its upstream socket, a framer per direction. */
class Relay {
  constructor (out, n, client, target, file) {
    this.out = out
    this.n = n
    this.file = file
    this.saved = false
    this.from = formatAddress(client.remoteAddress, client.remotePort)
    this.to = formatAddress(target.host, target.port)
    this.written = { 'c->s': [], 's->c': [] }
    out.record('open', { conn: n, client: this.from, target: this.to }, { peer: `#${n}`, detail: `${this.from} -> ${this.to}` })

    const upstream = net.connect(target.port, target.host)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    this.direction('c->s', client, upstream)
    this.direction('s->c', upstream, client)
    let ended = 0
    this.closed = new Promise((resolve) => {
      const onClose = () => {
        if (++ended < 2) return
        this.save()
        const bytes = { 'c->s': this.bytes('c->s'), 's->c': this.bytes('s->c') }
        out.record('close', { conn: n, bytes }, {
          peer: `#${n}`, detail: `${bytes['c->s']} bytes c->s, ${bytes['s->c']} bytes s->c`,
        })
        resolve()
      }
      client.on('close', onClose)
      upstream.on('close', onClose)
    })
    const onError = (side, other) => (err) => {
      out.record('error', { conn: n, side, message: err.message, code: err.code }, { peer: `#${n}`, detail: `${side}: ${err.message}` })
      other.destroy()
    }
    client.on('error', onError('client', upstream))
    upstream.on('error', onError('server', client))
  }

  /** Relays `from` to `to`, printing each message on the way. */
  direction (dir, from, to) {
    const framer = new Framer((item) => this.print(dir, item))
    from.on('data', (chunk) => {
      this.written[dir].push(chunk)
      framer.push(chunk)
    })
    from.on('end', () => framer.end())
    // pipe: the reader waits for a slow writer, and an end is passed on (half-close).
    from.pipe(to)
  }

  print (dir, { text, value, error }) {
    const shown = text.length > SHOWN ? `${text.slice(0, SHOWN)}… (${text.length} chars)` : text
    if (error !== undefined) {
      this.out.record('malformed', { conn: this.n, dir, text, error }, { peer: `#${this.n} ${dir}`, detail: `${shown}  (${error})` })
      return
    }
    const { kind, name, id } = classify(value)
    this.out.record('message', { conn: this.n, dir, kind, name, id, text }, { peer: `#${this.n} ${dir}`, detail: `${kind.padEnd(9)} ${shown}` })
  }

  bytes (dir) {
    return this.written[dir].reduce((sum, b) => sum + b.length, 0)
  }

  /** Writes the recording, once (at close, or when the tap stops with the connection open). */
  save () {
    if (!this.file || this.saved) return
    this.saved = true
    const vector = {
      description: `recorded by uhura tap on ${new Date().toISOString()}: connection #${this.n}, ${this.from} -> ${this.to}`,
      client_to_server: Buffer.concat(this.written['c->s']).toString('utf8'),
      server_to_client: Buffer.concat(this.written['s->c']).toString('utf8'),
    }
    try {
      fs.writeFileSync(this.file, JSON.stringify(vector, null, 1) + '\n')
      this.out.record('recorded', { conn: this.n, file: this.file }, { peer: `#${this.n}`, detail: this.file })
    } catch (err) {
      this.out.record('error', { conn: this.n, message: `cannot write ${this.file}: ${err.message}` },
        { peer: `#${this.n}`, detail: `cannot write ${this.file}: ${err.message}` })
    }
  }
}

module.exports = { register }
