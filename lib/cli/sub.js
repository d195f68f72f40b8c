'use strict'
// `uhura sub`: connect as a client and print what the server sends.

const net = require('node:net')
const tls = require('node:tls')
const { Option } = require('commander')
const {
  Failure, address, formatAddress, integer, collect, withClientOptions, withSession, clientOptions, outputOf, untilSignal,
} = require('./args')
const { watchEvents, eventRecord, errorFields, close, connect } = require('./peer')
const { Framer, classify } = require('./wire')

function register (program) {
  withSession(withClientOptions(program.command('sub'), 'give up after this many ms without a handshake'))
    .description('connect as a client and print the events (and _set) the server sends')
    .argument('<host:port>', 'the server', address)
    .addOption(new Option('--event <name>', 'print only this event (repeatable)').argParser(collect))
    .addOption(new Option('--count <n>', 'exit 0 after printing this many').argParser(integer(1)))
    .option('--raw', 'print every message the server writes as its wire text (handshake and acks too)')
    .addHelpText('after', `
Runs until interrupted (exit 0), --count is reached (exit 0), or the server
closes the connection (exit 1).

Examples:
  uhura sub 127.0.0.1:4000
  uhura sub 127.0.0.1:4000 --event price --event trade --count 100 --json
  uhura sub 127.0.0.1:4000 --raw`)
    .action(sub)
}

async function sub (target, opts) {
  const out = outputOf(opts)
  const server = formatAddress(target.host, target.port)
  const wanted = opts.event ? new Set(opts.event) : null
  let printed = 0
  let reachedCount
  const counted = new Promise((resolve) => { reachedCount = resolve })
  const print = (name, emit) => {
    if (wanted && !wanted.has(name)) return
    if (opts.count && printed >= opts.count) return
    emit()
    if (++printed === opts.count) reachedCount()
  }

  const options = clientOptions(target, opts)
  if (opts.raw) {
    // The wire as written: the client reads through a socket of ours, which
    // shows each message the server writes before the client parses it.
    const secure = options.tls
    delete options.tls
    options.createConnection = () => {
      const socket = secure
        ? tls.connect({ host: target.host, port: target.port, ca: secure.ca, servername: secure.servername || target.host })
        : net.connect(target.port, target.host)
      const framer = new Framer(({ text, value, error }) => {
        const { kind, name } = value ? classify(value) : { kind: 'malformed' }
        print(name, () => out.record('message', { server, kind, name, text, error }, { peer: server, detail: text }))
      })
      socket.on('data', (chunk) => framer.push(chunk))
      socket.on('end', () => framer.end())
      return socket
    }
  }
  const client = await connect(options, opts.timeout, (c) => {
    for (const [key, v] of opts.session) c.set(key, v)
    if (!opts.raw) watchEvents(c, (name, args) => print(name, () => eventRecord(out, server, name, args)))
  })
  const session = client.get('sessionID')
  out.record('connected', { server, session, objectMode: client.objectMode, acks: client.enableAcks },
    { peer: server, detail: `session ${session}${client.enableAcks ? '' : ' (no acks)'}` })
  try {
    await Promise.race([
      counted,
      untilSignal(),
      new Promise((resolve, reject) => {
        client.on('error', (err) => out.record('error', { server, ...errorFields(err) }, { peer: server, detail: err.message }))
        client.on('disconnect', () => reject(new Failure('the server closed the connection')))
      }),
    ])
  } catch (err) {
    out.record('disconnect', { server, session }, { peer: server, detail: err.message })
    throw err
  } finally {
    await close(client)
  }
}

module.exports = { register }
