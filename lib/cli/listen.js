'use strict'
// `uhura listen`: a server (ours) that prints everything its clients do.

const { Option, InvalidArgumentError } = require('commander')
const Uhura = require('../..')
const { Failure, port, formatAddress, withJson, readFile, outputOf, untilSignal, round } = require('./args')
const { show, ms } = require('./output')
const { watchEvents, eventRecord, errorFields } = require('./peer')

/**
 * One `--reply event=json`: the JSON is an array, the reply event's name and
 * its arguments (`ping='["pong",1]'` answers `ping` with `pong` and 1).
 */
function reply (text, previous = new Map()) {
  const i = text.indexOf('=')
  let message
  try {
    if (i <= 0) throw new Error('no =')
    message = JSON.parse(text.slice(i + 1))
  } catch (_) {}
  if (!Array.isArray(message) || typeof message[0] !== 'string') {
    throw new InvalidArgumentError(`not event=["reply", ...args]: ${JSON.stringify(text)}`)
  }
  return new Map(previous).set(text.slice(0, i), message)
}

function register (program) {
  withJson(program.command('listen'))
    .description('run a server that prints every connection, handshake, event, _set, ack and disconnect')
    .argument('[port]', 'port to listen on; 0 picks a free one', port, 0)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--tls-key <file>', 'serve TLS with this PEM private key (with --tls-cert)')
    .option('--tls-cert <file>', 'serve TLS with this PEM certificate chain (with --tls-key)')
    .option('--echo', 'send every event back to its sender, with the same name and arguments')
    .addOption(new Option('--reply <event=json>', 'answer EVENT with the event and arguments of the JSON array (repeatable)')
      .argParser(reply).default(new Map(), 'none'))
    .addHelpText('after', `
Examples:
  uhura listen 4000
  uhura listen 0 --json                    # prints the port it got first
  uhura listen 4000 --echo
  uhura listen 4000 --reply ping='["pong",1]' --reply hello='["world"]'`)
    .action(listen)
}

async function listen (listenPort, opts, command) {
  if (Boolean(opts.tlsKey) !== Boolean(opts.tlsCert)) command.error('error: --tls-key and --tls-cert go together')
  const out = outputOf(opts)
  const options = {}
  if (opts.tlsKey) options.tls = { key: readFile(opts.tlsKey, 'TLS key'), cert: readFile(opts.tlsCert, 'TLS certificate') }

  // Sockets whose handshake completed: their errors are the connection's.
  const handshaken = new WeakSet()
  const server = Uhura.createServer(options, (conn, resumed) => {
    handshaken.add(conn.socket)
    onConnection(out, opts, conn, resumed)
  })
  // Accepted sockets, before their handshake: their peer address, and errors
  // of connections that never complete one.
  server.on('connection', (socket) => {
    const peer = formatAddress(socket.remoteAddress, socket.remotePort)
    out.record('connection', { peer }, { peer, detail: 'accepted' })
    socket.on('error', (err) => {
      if (!handshaken.has(socket)) out.record('error', { peer, ...errorFields(err) }, { peer, detail: err.message })
    })
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(listenPort, opts.host, resolve)
  }).catch((err) => {
    throw new Failure(`cannot listen on ${formatAddress(opts.host, listenPort)}: ${err.message}`)
  })
  server.on('error', (err) => out.record('error', errorFields(err), { detail: err.message }))
  const { address, port: actual } = server.address()
  const where = formatAddress(address, actual)
  out.record('listening', { host: address, port: actual, address: where, tls: Boolean(options.tls) },
    { detail: `on ${where}${options.tls ? ' (TLS)' : ''}` })
  await untilSignal()
  out.record('close', {}, { detail: 'stopped' })
}

/** A completed handshake: print it, then everything the connection does. */
function onConnection (out, opts, conn, resumed) {
  const peer = formatAddress(conn.socket.remoteAddress, conn.socket.remotePort)
  const session = conn.get('sessionID')
  out.record('handshake', {
    peer, session, resumed: Boolean(resumed), objectMode: conn.objectMode, enableAcks: conn.enableAcks, values: conn.get(),
  }, { peer, detail: `${resumed ? 'resumed' : 'new'} session ${session}${conn.enableAcks ? '' : ' (no acks)'}` })

  watchEvents(conn, (name, args) => {
    eventRecord(out, peer, name, args, { session })
    if (name === '_set') return
    const answer = opts.reply.get(name) || (opts.echo ? [name, ...args] : null)
    if (answer) send(out, conn, peer, answer)
  })
  conn.on('error', (err) => out.record('error', { peer, session, ...errorFields(err) }, { peer, detail: err.message }))
  conn.on('disconnect', () => out.record('disconnect', { peer, session }, { peer, detail: `session ${session}` }))
}

/** Sends `[name, ...args]` on `conn`; prints it, and its ack when the peer acks. */
function send (out, conn, peer, [name, ...args]) {
  const started = performance.now()
  out.record('sent', { peer, event: name, args }, { peer, detail: `${name} ${args.map(show).join(' ')}`.trimEnd() })
  conn.send(name, ...args, (err) => {
    if (err) {
      out.record('error', { peer, event: name, ...errorFields(err) }, { peer, detail: `${name}: ${err.message}` })
    } else if (conn.enableAcks) {
      const took = performance.now() - started
      out.record('ack', { peer, event: name, ms: round(took) }, { peer, detail: `${name} acked in ${ms(took)} ms` })
    }
  })
}

module.exports = { register }
