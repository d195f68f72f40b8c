#!/usr/bin/env node
'use strict'
// Benchmark harness: node bench/run.js [--quick] [--only=a,b] [--tests=burst,pingpong,idle]
//
// For every implementation in bench/impls.js, runs the server and the client in
// two separate child processes (bench/child.js) on 127.0.0.1 and measures
//   1. acked burst throughput client -> server (N = 20,000 and 1,000,000)
//   2. ping-pong round-trip time (p50 / p99)
//   3. RSS of a server holding many idle connected clients
// Writes bench/results.json and bench/results.svg and prints a Markdown table.
// See bench/README.md for what exactly each number means.

const { spawn, spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const readline = require('readline')
const { impls } = require('./impls')

const argv = process.argv.slice(2)
const QUICK = argv.includes('--quick')
const opt = (name) => {
  const a = argv.find((x) => x.startsWith(`--${name}=`))
  return a ? a.slice(name.length + 3).split(',').filter(Boolean) : null
}
const ONLY = opt('only')
if (opt('ours')) process.env.UHURA_BENCH_OURS = path.resolve(opt('ours')[0])
const OURS_DIR = process.env.UHURA_BENCH_OURS || path.join(__dirname, '..')
// --out=PREFIX writes PREFIX.json / PREFIX.svg instead of bench/results.*
const OUT = opt('out') ? path.resolve(opt('out')[0]) : path.join(__dirname, 'results')
const TESTS = opt('tests') || ['burst', 'pingpong', 'idle']
// Transport variants of ours (optIn in impls.js) run only when --only names
// them; their idle test (noIdle) runs only when --tests names idle.
const IDLE_EXPLICIT = !!opt('tests')

const CFG = {
  payload: 'some payload of about forty bytes, ok!!', // 39 chars
  // Sends issued per macrotask (setImmediate between chunks). Default: all N
  // in one synchronous loop, i.e. no ack can be handled before the last send.
  chunk: Number((opt('chunk') || [0])[0]) || 0,
  bursts: QUICK
    ? [{ n: 20000, limitS: 15 }, { n: 1000000, limitS: 30 }]
    : [{ n: 20000, limitS: 60 }, { n: 1000000, limitS: 120 }],
  ping: { warmup: 200, rounds: 2000, stallMs: 3000, limitS: QUICK ? 15 : 30 },
  idle: { count: QUICK ? 2000 : 10000, batch: 250, limitS: QUICK ? 60 : 150, settleMs: 3000 },
  handshakeS: 20,
  nofile: 65536
}

const CHILD = path.join(__dirname, 'child.js')
const log = (...a) => console.error('[bench]', ...a)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ------------------------------------------------------------- child process
// Each child goes through bash so that its open-files limit can be raised
// (to the hard limit when 65536 is not allowed).
function spawnChild (role, impl, scenario, cfg) {
  const script = `ulimit -n ${CFG.nofile} 2>/dev/null || ulimit -n $(ulimit -Hn); exec "$0" "$@"`
  const args = ['-c', script, process.execPath, '--expose-gc', '--max-old-space-size=4096', CHILD, role, impl.name, scenario, JSON.stringify(cfg)]
  const proc = spawn('bash', args, { stdio: ['pipe', 'pipe', 'pipe'] })
  const ch = {
    proc,
    role,
    msgs: [],
    waiters: [],
    last: {},
    stderr: '',
    stdoutOther: '',
    exited: null
  }
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    if (!line.startsWith('@@')) { ch.stdoutOther = (ch.stdoutOther + line + '\n').slice(-4000); return }
    let msg
    try { msg = JSON.parse(line.slice(2)) } catch { return }
    ch.last[msg.type] = msg
    ch.msgs.push(msg)
    for (const w of ch.waiters.slice()) w.check()
  })
  proc.stderr.on('data', (d) => { ch.stderr = (ch.stderr + d).slice(-4000) })
  proc.stdin.on('error', () => {})
  proc.on('exit', (code, signal) => {
    ch.exited = { code, signal }
    for (const w of ch.waiters.slice()) w.check()
  })
  // Resolves with the first message of one of `types` after index `from`,
  // or { type: 'exit' } / { type: 'timeout' }.
  ch.waitFor = (types, timeoutMs, from = 0) => new Promise((resolve) => {
    types = [].concat(types)
    let i = from
    const w = {
      check () {
        for (; i < ch.msgs.length; i++) {
          if (types.includes(ch.msgs[i].type)) return done(ch.msgs[i])
        }
        if (ch.exited) return done({ type: 'exit', ...ch.exited })
      }
    }
    const timer = setTimeout(() => done({ type: 'timeout' }), timeoutMs)
    function done (m) {
      clearTimeout(timer)
      ch.waiters.splice(ch.waiters.indexOf(w), 1)
      resolve(m)
    }
    ch.waiters.push(w)
    w.check()
  })
  ch.ask = (cmd, type, timeoutMs = 5000) => {
    const from = ch.msgs.length
    if (!ch.exited) proc.stdin.write(cmd + '\n')
    return ch.waitFor(type, timeoutMs, from)
  }
  ch.kill = async () => {
    if (ch.exited) return
    proc.kill('SIGKILL')
    await ch.waitFor([], 5000)
  }
  return ch
}

function describeExit (ch, m) {
  const tail = ch.stderr.trim().split('\n').filter((l) => !/DeprecationWarning|MaxListenersExceeded|--trace-(deprecation|warnings)/.test(l)).slice(-3).join(' | ')
  return `${ch.role} exited (${m.signal || 'code ' + m.code})` + (tail ? `: ${tail.slice(0, 300)}` : '')
}

async function startServer (impl, scenario, cfg) {
  const srv = spawnChild('server', impl, scenario, cfg)
  const m = await srv.waitFor(['listening', 'fatal'], CFG.handshakeS * 1000)
  if (m.type !== 'listening') {
    const why = m.type === 'fatal' ? m.error : m.type === 'exit' ? describeExit(srv, m) : 'no listening report'
    await srv.kill()
    throw new Error('server did not start: ' + why.split('\n')[0])
  }
  return { srv, port: m.port, listening: m }
}

// ------------------------------------------------------------------- metrics
async function runBurst (impl, n, limitS) {
  const cfg = { n, payload: CFG.payload, chunk: CFG.chunk || n }
  const { srv, port } = await startServer(impl, 'burst', cfg)
  const cli = spawnChild('client', impl, 'burst', { ...cfg, port })
  const out = { n, limitS }
  try {
    let m = await cli.waitFor(['ready', 'fatal'], CFG.handshakeS * 1000)
    if (m.type !== 'ready') {
      out.status = 'error'
      out.note = m.type === 'fatal' ? m.error.split('\n')[0] : m.type === 'exit' ? describeExit(cli, m) : `no handshake within ${CFG.handshakeS} s`
      return out
    }
    const from = cli.msgs.length
    // Watch the server too: if it dies, stop at once.
    const srvDied = srv.waitFor(['fatal'], limitS * 1000 + 1000).then((x) => (x.type === 'timeout' ? null : { type: 'server-' + x.type, ...x }))
    m = await Promise.race([cli.waitFor(['result', 'fatal'], limitS * 1000, from), srvDied.then((x) => x || new Promise(() => {}))])
    out.acks = m.type === 'result' ? m.acks : (cli.last.progress ? cli.last.progress.acks : 0)
    const st = await srv.ask('stats', 'stats', 3000)
    if (st.type === 'stats') {
      out.serverEvents = st.stats.events
      out.outOfOrder = st.stats.outOfOrder
      out.badPayload = st.stats.badPayload
      if (st.stats.lastError) out.serverError = st.stats.lastError
    } else if (srv.last.progress) {
      out.serverEvents = srv.last.progress.events
    }
    if (m.type === 'result') {
      out.status = 'ok'
      out.elapsedMs = m.elapsedMs
      out.sendLoopMs = m.sendLoopMs
      out.eventsPerSec = n / (m.elapsedMs / 1000)
      out.clientRss = m.mem.rss
      if (out.outOfOrder || out.badPayload || (out.serverEvents != null && out.serverEvents !== n)) {
        out.note = `server saw ${out.serverEvents} events, ${out.outOfOrder} out of order, ${out.badPayload} bad payloads`
      }
    } else if (m.type === 'timeout') {
      out.status = 'dnf'
      out.sendLoopMs = cli.last.sent ? cli.last.sent.ms : null
      out.note = `did not finish (>${limitS} s): ${out.acks} of ${n} ${impl.acks ? 'acks' : 'done'} arrived, server counted ${out.serverEvents ?? '?'}, ` +
        (cli.last.sent ? `send loop took ${(cli.last.sent.ms / 1000).toFixed(1)} s` : 'send loop still running')
    } else {
      out.status = 'crashed'
      const who = m.type.startsWith('server-') ? srv : cli
      out.note = (m.type.endsWith('fatal') ? `${who.role}: ` + m.error.split('\n')[0] : describeExit(who, m)) +
        ` after ${out.acks} acks`
    }
    return out
  } finally {
    await srv.kill()
    await cli.kill()
  }
}

async function runPingPong (impl) {
  const cfg = { ...CFG.ping }
  const { srv, port } = await startServer(impl, 'pingpong', {})
  const cli = spawnChild('client', impl, 'pingpong', { ...cfg, port })
  const out = { warmup: cfg.warmup, rounds: cfg.rounds }
  try {
    let m = await cli.waitFor(['ready', 'fatal'], CFG.handshakeS * 1000)
    if (m.type !== 'ready') {
      out.status = 'error'
      out.note = m.type === 'fatal' ? m.error.split('\n')[0] : m.type === 'exit' ? describeExit(cli, m) : `no handshake within ${CFG.handshakeS} s`
      return out
    }
    m = await cli.waitFor(['result', 'stalled', 'fatal'], cfg.limitS * 1000)
    if (m.type === 'result') {
      Object.assign(out, { status: 'ok', p50us: m.p50, p90us: m.p90, p99us: m.p99, minUs: m.min, maxUs: m.max, meanUs: m.mean })
    } else if (m.type === 'stalled') {
      Object.assign(out, { status: 'stalled', roundTrips: m.roundTrips, note: `stalled after ${m.roundTrips} round trips (no progress for ${cfg.stallMs / 1000} s)` })
    } else if (m.type === 'timeout') {
      const pr = cli.last.progress
      Object.assign(out, { status: 'dnf', roundTrips: pr ? pr.roundTrips : 0, partialP50us: pr ? pr.p50 : null })
      out.note = `did not finish (>${cfg.limitS} s): ${out.roundTrips} round trips` +
        (out.partialP50us != null ? `, median ${fmtUs(out.partialP50us)}` : '')
    } else {
      Object.assign(out, { status: 'crashed', note: m.type === 'fatal' ? m.error.split('\n')[0] : describeExit(cli, m) })
    }
    if (srv.exited) {
      out.status = out.status === 'ok' ? 'ok' : 'crashed'
      out.note = (out.note ? out.note + '; ' : '') + describeExit(srv, srv.exited)
    }
    return out
  } finally {
    await srv.kill()
    await cli.kill()
  }
}

async function runIdle (impl) {
  const cfg = CFG.idle
  const { srv, port, listening } = await startServer(impl, 'idle', {})
  const cli = spawnChild('client', impl, 'idle', { count: cfg.count, batch: cfg.batch, port })
  const out = { count: cfg.count }
  try {
    out.serverRssBeforeListen = listening.mem.rss
    let r = await srv.ask('rss', 'rss')
    out.serverRssBaseline = r.type === 'rss' ? r.mem.rss : null
    const deadline = Date.now() + cfg.limitS * 1000
    const m = await cli.waitFor(['connected', 'fatal'], cfg.limitS * 1000)
    if (m.type !== 'connected') {
      out.status = m.type === 'timeout' ? 'dnf' : 'crashed'
      const p = cli.last.progress
      out.note = (m.type === 'timeout' ? `did not finish (>${cfg.limitS} s)` : m.type === 'fatal' ? m.error.split('\n')[0] : describeExit(cli, m)) +
        (p ? `: ${p.connected} clients connected` : '')
      return out
    }
    out.connectMs = m.ms
    out.clientRss = m.mem.rss
    if (m.connected < cfg.count) {
      out.status = 'error'
      out.note = `only ${m.connected} of ${cfg.count} clients completed the handshake (${m.failed} failed: ${m.lastError})`
      return out
    }
    // Wait until the server has seen every handshake, then let it settle.
    for (;;) {
      r = await srv.ask('rss', 'rss')
      if (r.type !== 'rss') { out.status = 'crashed'; out.note = r.type === 'exit' ? describeExit(srv, r) : 'server did not answer'; return out }
      if (r.conns >= cfg.count) break
      if (Date.now() > deadline) { out.status = 'error'; out.note = `server saw only ${r.conns} of ${cfg.count} handshakes`; return out }
      await sleep(200)
    }
    await sleep(cfg.settleMs)
    r = await srv.ask('rss', 'rss', 15000)
    if (r.type !== 'rss') { out.status = 'crashed'; out.note = 'server did not answer after settling'; return out }
    out.status = 'ok'
    out.serverRssIdle = r.mem.rss
    out.serverHeapIdle = r.mem.heapUsed
    out.serverConns = r.conns
    out.perConnBytes = (out.serverRssIdle - out.serverRssBaseline) / cfg.count
    const c = await cli.ask('rss', 'rss', 15000)
    if (c.type === 'rss') out.clientRss = c.mem.rss
    return out
  } finally {
    // Server first: the client sockets then close passively and leave no
    // TIME_WAIT entries holding ephemeral ports for the next run.
    await srv.kill()
    await sleep(300)
    await cli.kill()
  }
}

// --------------------------------------------------------------- formatting
const fmtInt = (x) => Math.round(x).toLocaleString('en-US')
function fmtRate (x) {
  if (x >= 1e6) return (x / 1e6).toFixed(2) + 'M'
  if (x >= 1e3) return (x / 1e3).toFixed(x >= 1e5 ? 0 : 1) + 'k'
  return x.toFixed(0)
}
const fmtMB = (b) => (b / 1048576).toFixed(1) + ' MB'
const fmtUs = (u) => (u >= 10000 ? (u / 1000).toFixed(1) + ' ms' : (u >= 100 ? u.toFixed(0) : u.toFixed(1)) + ' µs')

// Events confirmed so far in a run that did not finish: acks, or for an
// implementation without acks, what the server counted.
const confirmed = (b, acks) => (acks ? b.acks : b.serverEvents) || 0

function burstCell (b, acks) {
  if (!b) return '—'
  if (b.status === 'ok') {
    return `${fmtInt(b.eventsPerSec)} ev/s (${(b.elapsedMs / 1000).toFixed(2)} s)` + (b.note ? ` ⚠ ${b.note}` : '')
  }
  if (b.status === 'dnf') {
    const srv = b.serverEvents != null ? `server received ${b.serverEvents === b.n ? 'all' : fmtInt(b.serverEvents)}` : ''
    return `did not finish (>${b.limitS} s; ` + (acks ? `${fmtInt(b.acks)} acked${srv ? ', ' + srv : ''}` : srv) + ')'
  }
  if (b.status === 'skipped') return 'skipped'
  return `${b.status}: ${b.note}`
}

function markdown (results) {
  const n0 = CFG.bursts[0].n
  const n1 = CFG.bursts[1].n
  // Only the columns of the tests that were run (older results: all three).
  const tests = results.meta.tests || ['burst', 'pingpong', 'idle']
  const lines = []
  const head = ['implementation']
  if (tests.includes('burst')) head.push(`acked burst ${fmtInt(n0)}`, `acked burst ${fmtInt(n1)}`)
  if (tests.includes('pingpong')) head.push('ping-pong RTT p50 / p99')
  if (tests.includes('idle')) head.push(`server RSS: baseline → ${fmtInt(CFG.idle.count)} idle clients`)
  lines.push(`| ${head.join(' | ')} |`)
  lines.push('|' + head.map(() => '---|').join(''))
  for (const name of Object.keys(results.impls)) {
    const r = results.impls[name]
    if (!r.available) {
      lines.push(`| ${r.label} | not run: ${r.note} |` + ' |'.repeat(head.length - 2))
      continue
    }
    const row = [`${r.label}${r.acks ? '' : ' ¹'}`]
    if (tests.includes('burst')) row.push(burstCell(r.burst && r.burst[n0], r.acks), burstCell(r.burst && r.burst[n1], r.acks))
    if (tests.includes('pingpong')) {
      const p = r.pingpong
      let pc = '—'
      if (p) {
        if (p.status === 'ok') pc = `${fmtUs(p.p50us)} / ${fmtUs(p.p99us)}`
        else pc = p.note || p.status
      }
      row.push(pc)
    }
    if (tests.includes('idle')) {
      const i = r.idle
      let ic = r.idleSkipped ? 'not run' : '—'
      if (i) {
        if (i.status === 'ok') ic = `${fmtMB(i.serverRssBaseline)} → ${fmtMB(i.serverRssIdle)} (${(i.perConnBytes / 1024).toFixed(1)} KB/conn)`
        else ic = `${i.status}: ${i.note}`
      }
      row.push(ic)
    }
    lines.push(`| ${row.join(' | ')} |`)
  }
  lines.push('')
  const m = results.meta
  const la = (x) => x.toFixed(1)
  const load = `load average (1 min) ${la(m.loadavgAtStart[0])} at start` +
    (m.loadavgMax ? `, up to ${la(m.loadavgMax)} during the run` : '') +
    (m.loadavgAtEnd ? `, ${la(m.loadavgAtEnd[0])} at the end` : '')
  lines.push((tests.includes('burst') ? `Acked burst: N × \`send('e', i, '<39-byte string>', ackCallback)\` issued ${CFG.chunk ? `${CFG.chunk} per macrotask` : 'in one synchronous loop'}; time from the first send until the last ack callback ran. ` : '') +
    (tests.includes('pingpong') ? `Ping-pong: ${fmtInt(CFG.ping.rounds)} sequential \`ping\`/\`pong\` round trips after ${CFG.ping.warmup} warm-up. ` : '') +
    (tests.includes('idle') ? `RSS: server process after gc, with the listening socket only and then with ${fmtInt(CFG.idle.count)} idle clients (handshake done) connected from another process. ` : '') +
    `Server and client run in separate processes on 127.0.0.1; node ${m.node || process.version}, ${m.cpus || os.cpus().length} CPUs, ${load}${m.quick ? ', --quick' : ''}.`)
  const ours = results.impls.ours
  if (ours && ours.available && ours.build && !ours.build.error) {
    lines.push('')
    lines.push(ours.build.debugInfo
      ? `**Warning: ${ours.label} was measured with an addon that has debug info (${(ours.build.bytes / 1048576).toFixed(1)} MB), probably a debug build; its numbers are not representative.**`
      : `${ours.label}: release build of the addon (${(ours.build.bytes / 1048576).toFixed(1)} MB)${ours.build.revision ? `, revision ${ours.build.revision}` : ''}.`)
  }
  if (Object.values(results.impls).some((r) => !r.acks)) {
    lines.push('')
    lines.push('¹ uhura 0.0.x has no acks: its burst time runs until the client received the single `done` event the server sends after counting all N events.')
  }
  return lines.join('\n')
}

function esc (s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

// Hand-written grouped bar chart, log10 y axis.
function svgChart (results) {
  const ns = CFG.bursts.map((b) => b.n)
  const colors = ['#4e79a7', '#f28e2b']
  const names = Object.keys(results.impls)
  const W = 860
  const H = 450
  const M = { l: 80, r: 20, t: 50, b: 90 }
  const pw = W - M.l - M.r
  const ph = H - M.t - M.b
  const vals = []
  for (const nm of names) {
    for (const n of ns) {
      const b = results.impls[nm].burst && results.impls[nm].burst[n]
      if (b && b.status === 'ok') vals.push(b.eventsPerSec)
      if (b && b.status !== 'ok' && confirmed(b, results.impls[nm].acks) > 0 && b.limitS) vals.push(confirmed(b, results.impls[nm].acks) / b.limitS)
    }
  }
  // At least half a decade below the smallest bar, and never above 100/s.
  const lo = Math.min(2, Math.floor(Math.log10(Math.max(1, Math.min(...vals, 1e4) / 3))))
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...vals, 1e5) * 1.3)))
  const y = (v) => M.t + ph - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * ph
  const o = []
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`)
  o.push(`<rect width="${W}" height="${H}" fill="#fff"/>`)
  o.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Acked burst throughput, client → server (events/s, log scale; higher is better)</text>`)
  o.push(`<text x="${W / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">${esc(`node ${process.version}, ${os.cpus().length} CPUs, 127.0.0.1, server and client in separate processes, ${CFG.chunk ? `${CFG.chunk} sends per macrotask` : 'all N sends in one synchronous loop'}${results.meta.quick ? ', --quick' : ''}`)}</text>`)
  for (let e = lo; e <= hi; e++) {
    const yy = y(10 ** e)
    o.push(`<line x1="${M.l}" x2="${M.l + pw}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`)
    o.push(`<text x="${M.l - 8}" y="${yy + 4}" text-anchor="end">${['1', '10', '100', '1k', '10k', '100k', '1M', '10M', '100M'][e] || '1e' + e}</text>`)
  }
  o.push(`<line x1="${M.l}" x2="${M.l}" y1="${M.t}" y2="${M.t + ph}" stroke="#333"/>`)
  o.push(`<line x1="${M.l}" x2="${M.l + pw}" y1="${M.t + ph}" y2="${M.t + ph}" stroke="#333"/>`)
  o.push(`<text transform="translate(18 ${M.t + ph / 2}) rotate(-90)" text-anchor="middle">events per second</text>`)
  const gw = pw / Math.max(1, names.length)
  const bw = Math.min(70, (gw * 0.7) / ns.length)
  names.forEach((nm, gi) => {
    const r = results.impls[nm]
    const gx = M.l + gi * gw + (gw - bw * ns.length) / 2
    o.push(`<text x="${M.l + gi * gw + gw / 2}" y="${M.t + ph + 20}" text-anchor="middle" font-weight="bold">${esc(r.label + (r.acks ? '' : ' *'))}</text>`)
    ns.forEach((n, k) => {
      const b = r.burst && r.burst[n]
      const x = gx + k * bw
      const base = M.t + ph
      if (b && b.status === 'ok') {
        const top = y(b.eventsPerSec)
        o.push(`<rect x="${x + 2}" y="${top}" width="${bw - 4}" height="${base - top}" fill="${colors[k]}"/>`)
        o.push(`<text x="${x + bw / 2}" y="${top - 4}" text-anchor="middle">${fmtRate(b.eventsPerSec)}</text>`)
      } else {
        // Empty dashed bar; for a timed-out run its height is the lower bound
        // acks/limit (the rate it reached before being stopped).
        const got = b ? confirmed(b, r.acks) : 0
        const lb = got > 0 && b.limitS ? got / b.limitS : 0
        const top = lb > 0 ? Math.min(y(lb), base - 30) : base - 30
        const label = !r.available ? 'not run' : !b ? 'not run' : b.status === 'dnf' ? `DNF >${b.limitS}s` : b.status
        o.push(`<rect x="${x + 2}" y="${top}" width="${bw - 4}" height="${base - top}" fill="none" stroke="${colors[k]}" stroke-width="1.5" stroke-dasharray="4 3"/>`)
        o.push(`<text x="${x + bw / 2}" y="${top - 16}" text-anchor="middle" fill="#b00">${esc(label)}</text>`)
        if (b && b.status === 'dnf') o.push(`<text x="${x + bw / 2}" y="${top - 4}" text-anchor="middle" font-size="10" fill="#b00">${esc(fmtRate(got) + (r.acks ? ' acked' : ' received'))}</text>`)
      }
      o.push(`<text x="${x + bw / 2}" y="${M.t + ph + 36}" text-anchor="middle" font-size="10" fill="#555">N=${n >= 1e6 ? n / 1e6 + 'M' : n / 1e3 + 'k'}</text>`)
    })
  })
  const ly = H - 22
  ns.forEach((n, k) => {
    const lx = M.l + k * 150
    o.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${colors[k]}"/>`)
    o.push(`<text x="${lx + 18}" y="${ly}">N = ${fmtInt(n)}</text>`)
  })
  o.push(`<rect x="${M.l + 300}" y="${ly - 10}" width="12" height="12" fill="none" stroke="#555" stroke-dasharray="3 2"/>`)
  o.push(`<text x="${M.l + 318}" y="${ly}">did not finish / not run (height: events confirmed ÷ time limit)</text>`)
  if (names.some((nm) => !results.impls[nm].acks)) {
    o.push(`<text x="${M.l}" y="${H - 4}" font-size="10" fill="#555">* no acks in this protocol version: time until the server's single "done" reply after it counted all N events</text>`)
  }
  o.push('</svg>')
  return o.join('\n') + '\n'
}

// ---------------------------------------------------------------------- main
// Which build of the addon is benchmarked: a release build (profile.release
// has strip = true) carries no .debug_info section; a debug build does.
function elfSections (buf) {
  if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return null // ELF64 LE only
  const shoff = Number(buf.readBigUInt64LE(0x28))
  const shentsize = buf.readUInt16LE(0x3a)
  const shnum = buf.readUInt16LE(0x3c)
  const shstrndx = buf.readUInt16LE(0x3e)
  const sh = (i) => shoff + i * shentsize
  const strOff = Number(buf.readBigUInt64LE(sh(shstrndx) + 0x18))
  const names = []
  for (let i = 0; i < shnum; i++) {
    const n = strOff + buf.readUInt32LE(sh(i))
    names.push(buf.toString('latin1', n, buf.indexOf(0, n)))
  }
  return names
}

function oursBuild () {
  const file = path.join(OURS_DIR, 'uhura.node')
  try {
    const st = fs.statSync(file)
    const sections = elfSections(fs.readFileSync(file))
    const debugInfo = sections ? sections.includes('.debug_info') : st.size > 20e6
    let revision = null
    try { revision = fs.readFileSync(path.join(OURS_DIR, 'REVISION'), 'utf8').trim() } catch {}
    if (!revision) {
      const g = spawnSync('git', ['-C', OURS_DIR, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' })
      if (g.status === 0) revision = g.stdout.trim() + ' (checkout; working tree may differ)'
    }
    return { dir: OURS_DIR, file, bytes: st.size, mtime: st.mtime.toISOString(), debugInfo, kind: debugInfo ? 'debug build?' : 'release build', revision }
  } catch (err) {
    return { dir: OURS_DIR, file, error: err.message }
  }
}

function checkAvailable (impl) {
  if (impl.name === 'raw') return { ok: true }
  const modPath = impl.name === 'ours' || impl.variantOf === 'ours' ? OURS_DIR : null
  const code = modPath
    ? `require(${JSON.stringify(modPath)})`
    : `require(${JSON.stringify(path.join(__dirname, 'impls.js'))}).byName(${JSON.stringify(impl.name)}).load()`
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 30000 })
  if (r.status === 0) return { ok: true }
  const err = (r.stderr || '').split('\n').find((l) => /Error|error/.test(l)) || (r.error ? r.error.message : `exit ${r.status} ${r.signal || ''}`)
  return { ok: false, note: `require() failed: ${err.trim().slice(0, 200)}` }
}

// --render: rewrite the SVG and the table from an existing results file.
function render () {
  const results = JSON.parse(fs.readFileSync(OUT + '.json', 'utf8'))
  Object.assign(CFG, results.meta.config)
  fs.writeFileSync(OUT + '.svg', svgChart(results))
  results.markdown = markdown(results)
  fs.writeFileSync(OUT + '.json', JSON.stringify(results, null, 2) + '\n')
  console.log(results.markdown)
}

async function main () {
  if (argv.includes('--render')) return render()
  const t0 = Date.now()
  const nofile = spawnSync('bash', ['-c', `ulimit -n ${CFG.nofile} 2>/dev/null || ulimit -n $(ulimit -Hn); ulimit -n`], { encoding: 'utf8' }).stdout.trim()
  const results = {
    meta: {
      date: new Date().toISOString(),
      node: process.version,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0] && os.cpus()[0].model,
      quick: QUICK,
      loadavgAtStart: os.loadavg(),
      tests: TESTS,
      childNofile: Number(nofile),
      config: CFG
    },
    impls: {}
  }
  const selected = impls.filter((i) => (ONLY ? ONLY.includes(i.name) : !i.optIn))
  if (ONLY) for (const n of ONLY) if (!impls.some((i) => i.name === n)) log(`unknown implementation '${n}' (known: ${impls.map((i) => i.name).join(', ')})`)
  // The 1-minute load average, sampled every 5 s (the benchmark's own two
  // processes count too: on 2 cores a busy burst adds up to about 2).
  const loadSamples = results.meta.loadavgSamples = []
  const sampleLoad = () => loadSamples.push([Math.round((Date.now() - t0) / 1000), Number(os.loadavg()[0].toFixed(2))])
  const loadTimer = setInterval(sampleLoad, 5000)
  sampleLoad()
  for (const impl of selected) {
    const r = results.impls[impl.name] = { label: impl.label, acks: impl.acks }
    const av = checkAvailable(impl)
    r.available = av.ok
    if (impl.name === 'ours' || impl.variantOf === 'ours') {
      r.build = oursBuild()
      if (r.build.debugInfo) log(`WARNING: ${r.build.file} (${(r.build.bytes / 1048576).toFixed(1)} MB) has debug info: probably a debug build, its numbers are not representative (npm run build)`)
    }
    if (!av.ok) {
      r.note = av.note
      log(`${impl.name}: skipped (${av.note})`)
      continue
    }
    const safe = async (what, fn) => {
      try {
        return await fn()
      } catch (err) {
        log(`${impl.name} ${what}: ${err.message}`)
        return { status: 'error', note: err.message }
      }
    }
    if (TESTS.includes('burst')) {
      r.burst = {}
      for (const b of CFG.bursts) {
        log(`${impl.name}: acked burst N=${b.n} (limit ${b.limitS} s) ...`)
        r.burst[b.n] = await safe('burst', () => runBurst(impl, b.n, b.limitS))
        log(`${impl.name}: burst N=${b.n}: ${burstCell(r.burst[b.n], impl.acks)}`)
      }
    }
    if (TESTS.includes('pingpong')) {
      log(`${impl.name}: ping-pong ...`)
      r.pingpong = await safe('ping-pong', () => runPingPong(impl))
      const p = r.pingpong
      log(`${impl.name}: ping-pong: ${p.status === 'ok' ? `p50 ${fmtUs(p.p50us)}, p99 ${fmtUs(p.p99us)}` : p.note}`)
    }
    if (TESTS.includes('idle') && impl.noIdle && !IDLE_EXPLICIT) {
      r.idleSkipped = true
      log(`${impl.name}: idle test skipped (transport variant; pass --tests=...,idle to run it)`)
    } else if (TESTS.includes('idle')) {
      log(`${impl.name}: ${CFG.idle.count} idle clients ...`)
      r.idle = await safe('idle', () => runIdle(impl))
      const i = r.idle
      log(`${impl.name}: idle: ${i.status === 'ok' ? `${fmtMB(i.serverRssBaseline)} -> ${fmtMB(i.serverRssIdle)} (connect ${i.connectMs} ms)` : i.note}`)
    }
  }
  clearInterval(loadTimer)
  sampleLoad()
  results.meta.totalSeconds = (Date.now() - t0) / 1000
  results.meta.loadavgAtEnd = os.loadavg()
  results.meta.loadavgMax = Math.max(...loadSamples.map((x) => x[1]))
  fs.writeFileSync(OUT + '.json', JSON.stringify(results, null, 2) + '\n')
  fs.writeFileSync(OUT + '.svg', svgChart(results))
  const md = markdown(results)
  results.markdown = md
  fs.writeFileSync(OUT + '.json', JSON.stringify(results, null, 2) + '\n')
  console.log(md)
  log(`wrote ${path.relative(process.cwd(), OUT)}.json and .svg in ${results.meta.totalSeconds.toFixed(0)} s`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
