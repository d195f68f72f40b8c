'use strict'
// `uhura stats <admin-url>`: a server's metrics read from its admin endpoint
// (server.listenAdmin). Aligned columns on a terminal, `--json` one JSON
// object per line; `--watch` again every interval. Exit codes: 0 ok,
// 1 failure (unreachable, refused, bad answer), 2 usage.

const http = require('node:http')
const https = require('node:https')
const pc = require('picocolors')

/** A usage error: exit code 2. */
class UsageError extends Error {}

/** The admin endpoint's JSON metrics, fetched from `base` (its root URL). */
function fetchMetrics (base, token, timeoutMs) {
  const url = new URL('metrics', base.href.endsWith('/') ? base : new URL(base.href + '/'))
  url.searchParams.set('format', 'json')
  const lib = url.protocol === 'https:' ? https : http
  const headers = { Accept: 'application/json' }
  if (token) headers.Authorization = `Bearer ${token}`
  return new Promise((resolve, reject) => {
    const req = lib.get(url, { headers, timeout: timeoutMs }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => {
        if (res.statusCode === 401) return reject(new Error(`${url.origin}: unauthorized (401): pass --token`))
        if (res.statusCode !== 200) return reject(new Error(`${url.origin}: HTTP ${res.statusCode}: ${body.slice(0, 200)}`))
        try {
          resolve(JSON.parse(body))
        } catch (e) {
          reject(new Error(`${url.origin}: not a uhura admin endpoint (the answer is not JSON)`))
        }
      })
    })
    req.on('timeout', () => req.destroy(new Error(`${url.origin}: no answer within ${timeoutMs} ms`)))
    req.on('error', reject)
  })
}

/** The rows the human output shows: [label, value]. */
function rows (m, rate) {
  const errors = Object.entries(m.errors).map(([code, n]) => `${code} ${n}`).join(', ') || '0'
  const out = [
    ['connections', `${m.connections.current} open, ${m.connections.accepted} accepted, ${m.connections.refused} refused`],
    ['handshakes', `${m.handshakes.new} new, ${m.handshakes.resumed} resumed`],
    ['sessions', `${m.sessions.stored == null ? '-' : m.sessions.stored} stored, ${m.sessions.retained} retained`],
    ['events', `${m.events.in} in, ${m.events.out} out`],
    ['bytes', `${m.bytes.in} in, ${m.bytes.out} out`],
    ['pending', `${m.pending.events} events (${m.pending.bytes} bytes), ${m.acks.pending} awaiting acks`],
    ['drops', String(m.drops)],
    ['errors', errors],
    ['heartbeat timeouts', String(m.heartbeatTimeouts)],
    ['store', `${m.store.operations} operations, ${m.store.failures} failures`]
  ]
  if (rate) out.splice(4, 0, ['events/s', `${rate.in.toFixed(1)} in, ${rate.out.toFixed(1)} out`])
  return out
}

function human (m, rate, color) {
  const c = color ? pc : pc.createColors(false)
  const list = rows(m, rate)
  const width = Math.max(...list.map(([k]) => k.length))
  return list.map(([k, v]) => {
    const value = (k === 'errors' && v !== '0') || (k === 'drops' && v !== '0') ? c.red(v) : c.bold(v)
    return `${c.dim(k.padEnd(width))}  ${value}`
  }).join('\n')
}

/** Runs the command; resolves with the exit code. */
async function run (url, opts, io = { out: process.stdout, err: process.stderr }) {
  let base
  try {
    base = new URL(url)
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http')
  } catch (_) {
    throw new UsageError(`not an http(s) URL: ${url}`)
  }
  const interval = Number(opts.interval)
  if (!(interval >= 100)) throw new UsageError(`--interval must be at least 100 ms, got ${opts.interval}`)
  const color = !opts.json && io.out.isTTY && pc.isColorSupported
  let previous = null
  for (;;) {
    let m
    try {
      m = await fetchMetrics(base, opts.token || process.env.UHURA_ADMIN_TOKEN, Math.max(interval, 5000))
    } catch (e) {
      io.err.write(`uhura stats: ${e.message}\n`)
      return 1
    }
    const now = Date.now()
    const rate = previous && {
      in: (m.events.in - previous.m.events.in) * 1000 / Math.max(1, now - previous.now),
      out: (m.events.out - previous.m.events.out) * 1000 / Math.max(1, now - previous.now)
    }
    previous = { m, now }
    if (opts.json) io.out.write(JSON.stringify({ time: new Date(now).toISOString(), url: base.href, ...m }) + '\n')
    else {
      if (opts.watch && io.out.isTTY) io.out.write('\x1b[2J\x1b[H')
      io.out.write(human(m, rate, color) + '\n')
      if (opts.watch && !io.out.isTTY) io.out.write('\n')
    }
    if (!opts.watch) return 0
    await new Promise((resolve) => setTimeout(resolve, interval))
  }
}

/** Adds `stats` to the commander program. */
function register (program) {
  program
    .command('stats')
    .description("a server's metrics, from its admin endpoint (server.listenAdmin)")
    .argument('<admin-url>', 'the admin endpoint, e.g. http://127.0.0.1:9100/')
    .option('-w, --watch', 'refresh every interval until interrupted')
    .option('-i, --interval <ms>', 'refresh interval with --watch', String(2e3))
    .option('--json', 'one JSON object per line')
    .option('-t, --token <token>', 'the admin token (default: $UHURA_ADMIN_TOKEN)')
    // Usage errors (a missing URL, an unknown option) exit with 2, help with 0.
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .action(async (url, opts) => {
      try {
        process.exitCode = await run(url, opts)
      } catch (e) {
        if (!(e instanceof UsageError)) throw e
        process.stderr.write(`uhura stats: ${e.message}\n`)
        process.exitCode = 2
      }
    })
}

module.exports = { register, run, UsageError }
