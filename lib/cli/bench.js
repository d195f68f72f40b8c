'use strict'
// `uhura bench`: throughput of acked events and round-trip times against any
// uhura server, old or new, in the style of `nats bench`. It needs nothing
// of the server but acks: an event nobody listens for is still acked, and
// the ack is the round trip.

const { Option } = require('commander')
const cliProgress = require('cli-progress')
const { Failure, address, formatAddress, integer, withClientOptions, clientOptions, outputOf, round } = require('./args')
const { close, connect } = require('./peer')

/** Sends per slice: between slices acks are read and the progress bar redrawn. */
const SLICE = 512

function register (program) {
  withClientOptions(program.command('bench'), 'fail when no ack arrives for this many ms')
    .description('measure acked-event throughput and round-trip times against a server')
    .argument('<host:port>', 'the server', address)
    .addOption(new Option('--events <n>', 'events to send in all, shared by the connections').argParser(integer(1)).default(10000))
    .addOption(new Option('--size <bytes>', 'bytes of each event\'s payload (one string argument)').argParser(integer(0)).default(128))
    .addOption(new Option('--connections <n>', 'clients sending at once').argParser(integer(1)).default(1))
    .addOption(new Option('--rtt [n]', 'then time n round trips (one event at a time, until its ack)').argParser(integer(1)).preset('100'))
    .option('--event <name>', 'the event name sent', 'uhura_bench')
    .addHelpText('after', `
Throughput counts from the first send to the last ack. Against a uhura 0.0.x
server (no acks) it counts writes, and --rtt fails. A progress bar shows on
stderr when it is a terminal.

Examples:
  uhura bench 127.0.0.1:4000
  uhura bench 127.0.0.1:4000 --events 100000 --size 1024 --connections 4 --rtt
  uhura bench 127.0.0.1:4000 --events 5000 --rtt 50 --json`)
    .action(bench)
}

async function bench (target, opts) {
  const out = outputOf(opts)
  const server = formatAddress(target.host, target.port)
  const options = clientOptions(target, opts)
  const clients = []
  try {
    for (let i = 0; i < opts.connections; i++) clients.push(await connect(options, opts.timeout))
    const acks = clients[0].enableAcks
    out.record('connected', { server, connections: clients.length, acks }, {
      peer: server, detail: `${clients.length} connection(s)${acks ? '' : ' (no acks: writes are counted)'}`,
    })
    const rows = await throughput(clients, opts)
    if (!out.json) out.stream.write(`\n${out.c.bold('Throughput')}: ${opts.events} events of ${opts.size} B over ${clients.length} connection(s)\n`)
    out.table('throughput', rows, [
      { key: 'conn', title: 'conn' },
      { key: 'events', title: 'events' },
      { key: 'seconds', title: 'seconds', format: (v) => v.toFixed(3) },
      { key: 'eventsPerSec', title: 'events/s', format: (v) => Math.round(v).toLocaleString('en-US') },
      { key: 'mbPerSec', title: 'MB/s', format: (v) => v.toFixed(2) },
    ])
    if (opts.rtt) {
      if (!acks) throw new Failure('the server does not ack (uhura 0.0.x): there is no round trip to time')
      const row = await roundTrips(clients[0], opts)
      if (!out.json) out.stream.write(`\n${out.c.bold('Round trips')}: ${row.count}, one event at a time (ms)\n`)
      const f = (v) => v.toFixed(3)
      out.table('rtt', [row], ['min', 'avg', 'p50', 'p90', 'p99', 'max'].map((key) => ({ key, title: key, format: f }))
        .concat({ key: 'perSec', title: 'round trips/s', format: (v) => Math.round(v).toLocaleString('en-US') }))
    }
  } finally {
    await Promise.all(clients.map(close))
  }
}

/**
 * Sends `opts.events` events of `opts.size` bytes over the clients at once,
 * each its share; resolves with a row per connection and a total.
 */
async function throughput (clients, opts) {
  const payload = 'x'.repeat(opts.size)
  const bar = progressBar(opts)
  let done = 0
  let failure = null
  let lastAck = performance.now()
  const started = performance.now()
  const watchdog = setInterval(() => {
    if (performance.now() - lastAck > opts.timeout) failure = failure || new Failure(`no ack for ${opts.timeout} ms (${done} of ${opts.events} acked)`)
    if (bar) bar.update(done, { rate: Math.round(done / seconds(started)) })
  }, 100)
  const runs = clients.map((client, i) => {
    const share = Math.floor(opts.events / clients.length) + (i < opts.events % clients.length ? 1 : 0)
    return new Promise((resolve, reject) => {
      let acked = 0
      let sent = 0
      const check = setInterval(() => {
        if (!failure) return
        clearInterval(check)
        reject(failure)
      }, 50)
      const finish = () => {
        clearInterval(check)
        const took = seconds(started)
        resolve({ conn: i + 1, events: share, seconds: took, eventsPerSec: share / took, mbPerSec: share * opts.size / took / 1e6 })
      }
      const onAck = (err) => {
        if (err) {
          failure = failure || new Failure(`an event failed: ${err.message}`)
          return
        }
        done++
        lastAck = performance.now()
        if (++acked === share) finish()
      }
      client.once('disconnect', () => { failure = failure || new Failure('the server closed a connection') })
      const sendSome = () => {
        for (const end = Math.min(share, sent + SLICE); sent < end; sent++) client.send(opts.event, payload, onAck)
        if (sent < share && !failure) setImmediate(sendSome)
      }
      if (share === 0) finish()
      else sendSome()
    })
  })
  try {
    const rows = await Promise.all(runs)
    const seconds = Math.max(...rows.map((r) => r.seconds))
    if (rows.length > 1) {
      rows.push({ conn: 'total', events: opts.events, seconds, eventsPerSec: opts.events / seconds, mbPerSec: opts.events * opts.size / seconds / 1e6 })
    }
    return rows.map((r) => ({ ...r, seconds: round(r.seconds), eventsPerSec: Math.round(r.eventsPerSec), mbPerSec: round(r.mbPerSec) }))
  } finally {
    clearInterval(watchdog)
    if (bar) {
      bar.update(done)
      bar.stop()
    }
  }
}

/** Times `n` sequential round trips (an event and its ack) on `client`. */
async function roundTrips (client, opts) {
  const count = opts.rtt
  const payload = 'x'.repeat(opts.size)
  const times = []
  for (let i = 0; i < count; i++) {
    const t0 = performance.now()
    await withTimeout(client.sendWithAck(opts.event, payload), opts.timeout, `round trip #${i + 1}`)
    times.push(performance.now() - t0)
  }
  times.sort((a, b) => a - b)
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))]
  const avg = times.reduce((a, b) => a + b, 0) / times.length
  return {
    count,
    min: round(times[0]),
    avg: round(avg),
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    max: round(times[times.length - 1]),
    perSec: Math.round(1e3 / avg), // avg is in ms
  }
}

/** Seconds since `t0` (a performance.now() time). */
function seconds (t0) {
  return (performance.now() - t0) / 1e3
}

/** `promise`, or a Failure after `ms`. */
function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise.catch((err) => { throw new Failure(`${what}: ${err.message}`) }),
    new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Failure(`${what}: no ack in ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** A progress bar on stderr, only on a terminal and without --json. */
function progressBar (opts) {
  if (opts.json || !process.stderr.isTTY) return null
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: 'bench |{bar}| {value}/{total} events | {rate} events/s | {duration_formatted}',
    hideCursor: true,
  }, cliProgress.Presets.shades_classic)
  bar.start(opts.events, 0, { rate: 0 })
  return bar
}

module.exports = { register }
