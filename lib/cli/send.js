'use strict'
// `uhura send`: connect, set session keys, send an event, wait for its acks
// (and a reply), print them with their timing.

const { Option } = require('commander')
const Uhura = require('../..')
const {
  Failure, address, formatAddress, integer, value, withClientOptions, withSession, clientOptions, outputOf, round,
} = require('./args')
const { show, ms } = require('./output')
const { watchEvents, errorFields, close } = require('./peer')

function register (program) {
  withSession(withClientOptions(program.command('send'), 'give up after this many ms in all'))
    .description('send an event and wait for its ack (and, with --wait, a reply)')
    .argument('<host:port>', 'the server', address)
    .argument('<event>', 'the event name')
    .argument('[args...]', 'its arguments: each is JSON, or taken as a string if it is not JSON')
    .addOption(new Option('--count <n>', 'send the event this many times').argParser(integer(1)).default(1))
    .option('--wait <event>', 'then wait for this event from the server, once per event sent')
    .addHelpText('after', `
Exits 0 once every event is acked (and every reply arrived), 1 on a refused
connection, an error, a closed connection or the timeout. A peer without
acks (uhura 0.0.x) gets the events written, not acked.

Examples:
  uhura send 127.0.0.1:4000 ping 1 '"two"' '{"three":3}'
  uhura send 127.0.0.1:4000 ping --wait pong --count 10 --session user=alice`)
    .action(send)
}

async function send (target, event, args, opts) {
  const out = outputOf(opts)
  const server = formatAddress(target.host, target.port)
  const values = args.map(value)
  const client = Uhura.createClient(clientOptions(target, opts))
  for (const [key, v] of opts.session) client.set(key, v)
  const started = performance.now()
  const since = (t = started) => performance.now() - t
  try {
    await new Promise((resolve, reject) => {
      let acked = 0
      let replies = 0
      let firstSend = 0
      const finish = () => {
        if (settled || acked < opts.count || (opts.wait && replies < opts.count)) return
        settled = true
        out.record('done', { server, sent: opts.count, acked, replies, acks: client.enableAcks, ms: round(since()) }, {
          peer: server,
          detail: `${opts.count} sent, ${acked} ${client.enableAcks ? 'acked' : 'written'}` +
            `${opts.wait ? `, ${replies} ${opts.wait}` : ''} in ${ms(since())} ms`,
        })
        resolve()
      }
      let settled = false
      const fail = (message, fields = {}, type = 'error') => {
        if (settled) return
        settled = true
        out.record(type, { server, ...fields, message }, { peer: server, detail: message })
        reject(new Failure(message))
      }
      const timer = setTimeout(() => {
        const waiting = acked < opts.count
          ? `${opts.count - acked} ack(s)`
          : `${opts.count - replies} ${opts.wait} event(s)`
        fail(`timed out after ${opts.timeout} ms waiting for ${client.ready ? waiting : 'the handshake'}`, {}, 'timeout')
      }, opts.timeout)
      timer.unref()
      client.on('error', (err) => fail(err.message, errorFields(err)))
      client.on('disconnect', () => fail('the server closed the connection'))
      if (opts.wait) {
        watchEvents(client, (name, replyArgs) => {
          if (name !== opts.wait) return
          replies++
          const took = since(firstSend)
          out.record('reply', { server, event: name, args: replyArgs, n: replies, ms: round(took) }, {
            peer: server,
            detail: `${name} ${replyArgs.map(show).join(' ')} after ${ms(took)} ms`,
          })
          finish()
        })
      }
      client.once('connect', () => {
        const session = client.get('sessionID')
        out.record('connected', {
          server, session, objectMode: client.objectMode, acks: client.enableAcks, ms: round(since()),
        }, { peer: server, detail: `session ${session}${client.enableAcks ? '' : ' (no acks)'} in ${ms(since())} ms` })
        firstSend = performance.now()
        for (let n = 1; n <= opts.count; n++) {
          const sent = performance.now()
          client.send(event, ...values, (err) => {
            if (err) return fail(`${event} #${n}: ${err.message}`, errorFields(err))
            acked++
            const took = since(sent)
            out.record(client.enableAcks ? 'ack' : 'sent', { server, event, n, ms: round(took) }, {
              peer: server,
              detail: `${event} #${n} ${client.enableAcks ? 'acked' : 'written'} in ${ms(took)} ms`,
            })
            finish()
          })
        }
      })
    })
  } finally {
    await close(client)
  }
}

module.exports = { register }
