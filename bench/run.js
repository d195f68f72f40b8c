#!/usr/bin/env node
'use strict'
// One file (over 400 lines): the measurements and main both read the run's configuration (CFG, from argv).
// Benchmark harness (`npm run bench`):
//   node bench/run.js [--quick] [--scale=F] [--only=a,b] [--tests=burst,s2c,many,pingpong,idle] ...
//
// For every implementation in bench/impls.js, runs servers and clients in
// separate child processes (bench/child.js) on 127.0.0.1 and measures
//   burst     acked throughput client → server, N = 10k, 100k, 1M, 10M, with
//             the RSS and CPU of both processes
//   s2c       acked throughput server → client, N = 1M
//   many      100 clients in one process × 100k acked events at once
//   pingpong  round-trip time, interleaved rounds (p50 / p99)
//   idle      server RSS per idle connection at 1k … 19k connections, and
//             client RSS per client at 10k
// Writes bench/results.json, BENCHMARKS.md (above its history marker) and
// three charts, bench/results-{throughput,rtt,memory}.svg.
// bench/README.md says what exactly each number means.

const { spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { impls } = require('./impls')
const { spawnChild, describeExit, sampleRss, NOFILE } = require('./proc')
const report = require('./report')
const charts = require('./charts')

const argv = process.argv.slice(2)
const QUICK = argv.includes('--quick')
const opt = (name) => {
  const a = argv.find((x) => x.startsWith(`--${name}=`))
  return a ? a.slice(name.length + 3).split(',').filter(Boolean) : null
}
const num = (name, dflt) => (opt(name) ? Number(opt(name)[0]) : dflt)
const ONLY = opt('only')
if (opt('ours')) process.env.UHURA_BENCH_OURS = path.resolve(opt('ours')[0])
// --node-flags=A,B: V8 / node flags for every child process (bench/proc.js),
// e.g. --min-semi-space-size=16 (bench/README.md, "Small bursts").
if (opt('node-flags')) process.env.UHURA_BENCH_NODE_FLAGS = opt('node-flags').join(' ')
const OURS_DIR = process.env.UHURA_BENCH_OURS || path.join(__dirname, '..')
// --out=PREFIX writes PREFIX.json, PREFIX.md and PREFIX-*.svg instead of
// bench/results.json, BENCHMARKS.md and bench/results-*.svg.
const DEFAULT_OUT = path.join(__dirname, 'results')
const OUT = opt('out') ? path.resolve(opt('out')[0]) : DEFAULT_OUT
const MD = OUT === DEFAULT_OUT ? path.join(__dirname, '..', 'BENCHMARKS.md') : OUT + '.md'
const ALL_TESTS = ['burst', 's2c', 'many', 'pingpong', 'idle']
const TESTS = (opt('tests') || ALL_TESTS).map((t) => (t === 'rtt' ? 'pingpong' : t))
// Transport variants of ours (optIn in impls.js) run only when --only names
// them; their idle test (noIdle) runs only when --tests names idle.
const IDLE_EXPLICIT = !!opt('tests')

// --scale=F multiplies every event and connection count (not the time
// limits), e.g. 0.01 to check the harness end to end in a minute.
const SCALE = num('scale', 1)
const sc = (n) => Math.max(1, Math.round(n * SCALE))
const many = opt('many') ? opt('many')[0].split('x').map(Number) : null

const CFG = {
  payload: 'some payload of about forty bytes, ok!!', // 39 chars
  // Sends issued per macrotask (setImmediate between chunks); 0: as many as
  // the window allows in one synchronous loop.
  chunk: num('chunk', 0),
  // At most this many events unacknowledged per sender (0: no limit, every
  // send of a burst in one synchronous loop). Bounds what a 10M burst queues.
  window: opt('window') ? num('window', 0) : sc(100000),
  // Warm-up bursts before each measured burst and server → client run, in
  // the same processes, not counted (bench/child.js warmUp), each as large
  // as the measured burst up to the window: the numbers are of the steady
  // state, not of the JIT's first minutes. 0: none.
  warmupBursts: num('warmup', 3),
  // main: the size of the headline targets. legacy: false = not run for the
  // published packages (impls.js `legacy`).
  bursts: [
    { n: sc(10000), limitS: QUICK ? 15 : 30 },
    { n: sc(100000), limitS: QUICK ? 15 : 30 },
    { n: sc(1000000), limitS: QUICK ? 30 : 60, main: true },
    { n: sc(10000000), limitS: QUICK ? 60 : 180, legacy: false }
  ],
  s2c: { n: sc(1000000), limitS: QUICK ? 30 : 60 },
  many: {
    clients: many ? many[0] : QUICK ? 20 : 100,
    n: many ? many[1] : sc(QUICK ? 20000 : 100000),
    limitS: QUICK ? 60 : 120
  },
  ping: {
    warmup: num('rtt-warmup', 200),
    trips: num('rtt-trips', QUICK ? 1000 : 2000),
    repeats: num('rtt-rounds', QUICK ? 3 : 5),
    stallMs: 3000,
    limitS: QUICK ? 15 : 30,
    // An implementation marked rttOnce (~88 ms per round trip) gets less.
    onceLimitS: QUICK ? 8 : 15
  },
  idle: {
    counts: (opt('idle') ? opt('idle').map(Number) : QUICK ? [0, 1000, 2000] : [0, 1000, 2500, 5000, 10000, 19000]).map((c) => (c ? sc(c) : 0)).sort((a, b) => a - b),
    // Clients per client process (each connection is one open file).
    perProcess: sc(QUICK ? 1000 : 10000),
    // Targets: server per-connection at these counts, client per-client at clientAt.
    checkAt: (QUICK ? [1000, 2000] : [10000, 19000]).map(sc),
    clientAt: sc(QUICK ? 1000 : 10000),
    batch: 250,
    // Idle means idle: V8 gives back the young generation a burst of
    // handshakes grew only at a GC once allocation has been low for ~5 s
    // (bench/README.md, "Memory"), so readings wait longer than that.
    settleMs: num('idle-settle', QUICK ? 500 : 8000),
    limitS: QUICK ? 90 : 240
  },
  handshakeS: 20,
  warmupLimitS: 60
}

const log = (...a) => console.error('[bench]', ...a)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
// Events per warm-up burst before a measured run of n per sender: n, up to
// the window (without a window, up to the default one).
const warmupSize = (n) => Math.min(n, CFG.window || sc(100000))
const { fmtInt, fmtMB, fmtKB, fmtUs, runCell, median } = report

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
// One acked burst (scenario burst, s2c or many) between a fresh server and a
// fresh client process. The client reports `ready` after its handshakes; the
// server then marks its baseline (RSS after gc, CPU), the client is told to
// go, and both RSS are sampled until the result (from the client; for s2c
// from the server, which sends) or the time limit.
async function runMeasured (impl, scenario, cfg, limitS) {
  const { srv, port } = await startServer(impl, scenario, cfg)
  const cli = spawnChild('client', impl, scenario, { ...cfg, port })
  const total = cfg.n * (cfg.clients || 1)
  const out = { n: cfg.n, total, limitS }
  if (cfg.clients) out.clients = cfg.clients
  const sender = scenario === 's2c' ? srv : cli
  const receiver = scenario === 's2c' ? cli : srv
  try {
    // The handshakes, and the warm-up (bursts and server → client).
    let m = await cli.waitFor(['ready', 'fatal'], (CFG.handshakeS + CFG.warmupLimitS) * 1000)
    if (m.type !== 'ready') {
      out.status = 'error'
      out.note = m.type === 'fatal' ? m.error.split('\n')[0] : m.type === 'exit' ? describeExit(cli, m) : `handshake and warm-up (${cfg.warmup > 0 ? fmtInt(cfg.warmup) + ' events' : 'none'}) not done within ${CFG.handshakeS + CFG.warmupLimitS} s`
      return out
    }
    out.clientRssBaseline = m.mem.rss
    m = await srv.ask('mark', 'mark')
    if (m.type !== 'mark') {
      out.status = 'crashed'
      out.note = m.type === 'exit' ? describeExit(srv, m) : 'the server did not answer'
      return out
    }
    out.serverRssBaseline = m.mem.rss
    const sampler = sampleRss([cli, srv])
    const from = sender.msgs.length
    cli.send('go')
    // Watch the receiver too: if it dies, stop at once.
    const receiverDied = receiver.waitFor(['fatal'], limitS * 1000 + 1000).then((x) => (x.type === 'timeout' ? null : { ...x, who: receiver }))
    m = await Promise.race([
      sender.waitFor(['result', 'fatal'], limitS * 1000, from).then((x) => ({ ...x, who: sender })),
      receiverDied.then((x) => x || new Promise(() => {}))
    ])
    const [cp, sp] = sampler.stop()
    out.clientRssPeak = cp.peak
    out.serverRssPeak = sp.peak
    out.acks = m.type === 'result' ? m.acks : (sender.last.progress ? sender.last.progress.acks : 0)
    const [ss, cs] = await Promise.all([srv.ask('stats', 'stats', 3000), cli.ask('stats', 'stats', 3000)])
    const rs = receiver === srv ? ss : cs
    if (rs.type === 'stats') {
      out.receiverEvents = rs.stats.events
      out.outOfOrder = rs.stats.outOfOrder
      out.badPayload = rs.stats.badPayload
      if (rs.stats.lastError) out.receiverError = rs.stats.lastError
    } else if (receiver.last.progress && receiver.last.progress.events != null) {
      out.receiverEvents = receiver.last.progress.events
    }
    if (ss.type === 'stats') out.serverCpuUs = ss.cpuUs
    if (cs.type === 'stats') out.clientCpuUs = cs.cpuUs
    if (m.type === 'result') {
      out.status = 'ok'
      out.elapsedMs = m.elapsedMs
      out.sendLoopMs = m.sendLoopMs
      out.eventsPerSec = total / (m.elapsedMs / 1000)
      if (m.finishMs) {
        out.finishMedianMs = median(m.finishMs)
        out.finishMaxMs = Math.max(...m.finishMs)
        out.fair = out.finishMaxMs <= 2 * out.finishMedianMs
        out.finishMs = m.finishMs.map((x) => Math.round(x))
      }
      const problems = []
      if (m.ackErrors) problems.push(`${m.ackErrors} ack callbacks got an error (${m.lastAckError})`)
      if (out.outOfOrder || out.badPayload || (out.receiverEvents != null && out.receiverEvents !== total)) {
        problems.push(`receiver saw ${out.receiverEvents} events, ${out.outOfOrder} out of order, ${out.badPayload} bad payloads`)
      }
      if (problems.length) out.note = problems.join('; ')
    } else if (m.type === 'timeout') {
      out.status = 'dnf'
      out.note = `did not finish (>${limitS} s): ${out.acks} of ${total} ${impl.acks ? 'acks' : 'done'} arrived, receiver counted ${out.receiverEvents ?? '?'}`
    } else {
      out.status = 'crashed'
      out.note = (m.type === 'fatal' ? `${m.who.role}: ` + m.error.split('\n')[0] : describeExit(m.who, m)) + ` after ${out.acks} acks`
    }
    return out
  } finally {
    await srv.kill()
    await cli.kill()
  }
}

async function runPingPong (impl, limitS) {
  const cfg = { warmup: CFG.ping.warmup, rounds: CFG.ping.trips, stallMs: CFG.ping.stallMs }
  const { srv, port } = await startServer(impl, 'pingpong', {})
  const cli = spawnChild('client', impl, 'pingpong', { ...cfg, port })
  const out = { warmup: cfg.warmup, trips: cfg.rounds }
  try {
    let m = await cli.waitFor(['ready', 'fatal'], CFG.handshakeS * 1000)
    if (m.type !== 'ready') {
      out.status = 'error'
      out.note = m.type === 'fatal' ? m.error.split('\n')[0] : m.type === 'exit' ? describeExit(cli, m) : `no handshake within ${CFG.handshakeS} s`
      return out
    }
    m = await cli.waitFor(['result', 'stalled', 'fatal'], limitS * 1000)
    if (m.type === 'result') {
      Object.assign(out, { status: 'ok', p50us: m.p50, p90us: m.p90, p99us: m.p99, minUs: m.min, maxUs: m.max, meanUs: m.mean })
    } else if (m.type === 'stalled') {
      Object.assign(out, { status: 'stalled', roundTrips: m.roundTrips, note: `stalled after ${m.roundTrips} round trips (no progress for ${cfg.stallMs / 1000} s)` })
    } else if (m.type === 'timeout') {
      const pr = cli.last.progress
      Object.assign(out, { status: 'dnf', roundTrips: pr ? pr.roundTrips : 0, partialP50us: pr ? pr.p50 : null })
      out.note = `did not finish (>${limitS} s): ${out.roundTrips} round trips` +
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

// The server's RSS (after gc) with 0, then more and more idle clients, opened
// from client processes of at most perProcess clients each (so that no
// process needs more open files than the hard limit allows).
async function runIdle (impl) {
  const cfg = CFG.idle
  const { srv, port, listening } = await startServer(impl, 'idle', {})
  const procs = [] // { ch, count, baseline }
  const out = { points: [] }
  const deadline = Date.now() + cfg.limitS * 1000
  const left = () => Math.max(1000, deadline - Date.now())
  const fail = (status, note) => Object.assign(out, { status, note })
  try {
    out.serverRssBeforeListen = listening.mem.rss
    let r = await srv.ask('rss', 'rss')
    if (r.type !== 'rss') return fail('crashed', 'the server did not answer')
    out.serverRssBaseline = r.mem.rss
    let total = 0
    for (const count of cfg.counts) {
      while (total < count) {
        let p = procs.find((x) => x.count < cfg.perProcess)
        if (!p) {
          const ch = spawnChild('client', impl, 'idle', { batch: cfg.batch, port })
          const m = await ch.waitFor(['ready', 'fatal'], CFG.handshakeS * 1000)
          procs.push(p = { ch, count: 0, baseline: m.type === 'ready' ? m.mem.rss : null })
          if (m.type !== 'ready') return fail('crashed', m.type === 'fatal' ? m.error.split('\n')[0] : m.type === 'exit' ? describeExit(ch, m) : 'client process did not start')
        }
        const k = Math.min(count - total, cfg.perProcess - p.count)
        const m = await p.ch.ask(`open ${k}`, ['opened', 'fatal'], left())
        if (m.type !== 'opened') {
          const pr = p.ch.last.progress
          return fail(m.type === 'timeout' ? 'dnf' : 'crashed',
            (m.type === 'timeout' ? `did not finish (>${cfg.limitS} s)` : m.type === 'fatal' ? m.error.split('\n')[0] : describeExit(p.ch, m)) +
            `: ${total + (pr ? pr.connected - p.count : 0)} clients connected`)
        }
        total += m.connected - p.count
        p.count = m.connected
        if (m.failed) return fail('error', `${m.failed} clients failed the handshake at ${total} (${m.lastError})`)
        out.connectMs = (out.connectMs || 0) + m.ms
      }
      // Wait until the server has seen every handshake, then let it settle.
      for (;;) {
        r = await srv.ask('rss', 'rss')
        if (r.type !== 'rss') return fail('crashed', r.type === 'exit' ? describeExit(srv, r) : 'the server did not answer')
        if (r.conns >= count) break
        if (Date.now() > deadline) return fail('error', `the server saw only ${r.conns} of ${count} handshakes`)
        await sleep(200)
      }
      if (count > 0) await sleep(cfg.settleMs)
      r = await srv.ask('rss', 'rss', 15000)
      if (r.type !== 'rss') return fail('crashed', 'the server did not answer after settling')
      out.points.push({ count, serverRss: r.mem.rss, serverHeapUsed: r.mem.heapUsed, perConnBytes: count ? (r.mem.rss - out.serverRssBaseline) / count : null })
      log(`${impl.name}: idle ${count}: server ${fmtMB(r.mem.rss)}` + (count ? ` (${fmtKB((r.mem.rss - out.serverRssBaseline) / count)}/conn)` : ''))
      const first = procs[0]
      if (!out.client && first && first.count === cfg.clientAt) {
        const c = await first.ch.ask('rss', 'rss', 15000)
        if (c.type === 'rss') out.client = { count: first.count, rssBaseline: first.baseline, rss: c.mem.rss, perClientBytes: (c.mem.rss - first.baseline) / first.count }
      }
    }
    out.status = 'ok'
    return out
  } finally {
    // Server first: the client sockets then close passively and leave no
    // TIME_WAIT entries holding ephemeral ports for the next run.
    await srv.kill()
    await sleep(300)
    for (const p of procs) await p.ch.kill()
  }
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

// The report and the charts from results; BENCHMARKS.md keeps what follows
// its history marker.
function writeOutputs (results) {
  const tests = results.meta.tests
  const svg = {}
  if (tests.some((t) => ['burst', 's2c', 'many'].includes(t))) svg.throughput = OUT + '-throughput.svg'
  if (tests.includes('pingpong')) svg.rtt = OUT + '-rtt.svg'
  if (tests.includes('idle')) svg.memory = OUT + '-memory.svg'
  const rel = {}
  for (const [k, file] of Object.entries(svg)) {
    fs.writeFileSync(file, charts[k](results))
    rel[k] = path.relative(path.dirname(MD), file).split(path.sep).join('/')
  }
  rel.readme = path.relative(path.dirname(MD), path.join(__dirname, 'README.md')).split(path.sep).join('/')
  results.markdown = report.markdown(results, rel)
  let previous = null
  try { previous = fs.readFileSync(MD, 'utf8') } catch {}
  fs.writeFileSync(MD, report.withHistory(results.markdown, previous))
  fs.writeFileSync(OUT + '.json', JSON.stringify(results, null, 2) + '\n')
  return [OUT + '.json', MD, ...Object.values(svg)]
}

// --render: rewrite the report and the charts from an existing results file.
function render () {
  const results = JSON.parse(fs.readFileSync(OUT + '.json', 'utf8'))
  const files = writeOutputs(results)
  console.log(results.markdown)
  log(`wrote ${files.map((f) => path.relative(process.cwd(), f)).join(', ')}`)
}

async function main () {
  if (argv.includes('--render')) return render()
  const t0 = Date.now()
  const nofile = Number(spawnSync('bash', ['-c', `ulimit -n ${NOFILE} 2>/dev/null || ulimit -n $(ulimit -Hn); ulimit -n`], { encoding: 'utf8' }).stdout.trim())
  // Every process needs a few open files besides its connections.
  const fdRoom = nofile - 200
  if (CFG.idle.perProcess > fdRoom) CFG.idle.perProcess = fdRoom
  const tooMany = CFG.idle.counts.filter((c) => c > fdRoom)
  if (tooMany.length) {
    log(`the open-files limit of a child is ${nofile}: idle counts ${tooMany.join(', ')} are left out`)
    CFG.idle.counts = CFG.idle.counts.filter((c) => c <= fdRoom)
  }
  const results = {
    meta: {
      date: new Date().toISOString(),
      args: argv,
      node: process.version,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0] && os.cpus()[0].model,
      quick: QUICK,
      scale: SCALE,
      nodeFlags: process.env.UHURA_BENCH_NODE_FLAGS || null,
      loadavgAtStart: os.loadavg(),
      tests: TESTS,
      childNofile: nofile,
      config: CFG
    },
    impls: {}
  }
  const selected = impls.filter((i) => (ONLY ? ONLY.includes(i.name) : !i.optIn))
  if (ONLY) for (const n of ONLY) if (!impls.some((i) => i.name === n)) log(`unknown implementation '${n}' (known: ${impls.map((i) => i.name).join(', ')})`)
  for (const t of TESTS) if (!ALL_TESTS.includes(t)) log(`unknown test '${t}' (known: ${ALL_TESTS.join(', ')})`)
  // The 1-minute load average, sampled every 5 s (the benchmark's own two
  // processes count too: on 2 cores a busy burst adds up to about 2).
  const loadSamples = results.meta.loadavgSamples = []
  const sampleLoad = () => loadSamples.push([Math.round((Date.now() - t0) / 1000), Number(os.loadavg()[0].toFixed(2))])
  const loadTimer = setInterval(sampleLoad, 5000)
  sampleLoad()
  const safe = async (impl, what, fn) => {
    try {
      return await fn()
    } catch (err) {
      log(`${impl.name} ${what}: ${err.message}`)
      return { status: 'error', note: err.message }
    }
  }
  const runnable = []
  for (const impl of selected) {
    const r = results.impls[impl.name] = { label: impl.label, acks: impl.acks, rttOnly: !!impl.rttOnly }
    const av = checkAvailable(impl)
    r.available = av.ok
    if (impl.name === 'ours' || impl.variantOf === 'ours') {
      r.build = oursBuild()
      if (r.build.debugInfo && impl.name === (ONLY && !ONLY.includes('ours') ? impl.name : 'ours')) log(`WARNING: ${r.build.file} (${(r.build.bytes / 1048576).toFixed(1)} MB) has debug info: probably a debug build, its numbers are not representative (npm run build)`)
    }
    if (!av.ok) {
      r.note = av.note
      log(`${impl.name}: skipped (${av.note})`)
      continue
    }
    runnable.push(impl)
  }

  // Throughput: per implementation, the bursts by size, then server → client
  // and many clients. After a size that did not finish, the larger ones (and
  // s2c / many at or above it) are not run.
  const burstCfg = (n) => ({ n, payload: CFG.payload, chunk: CFG.chunk, window: CFG.window, warmupBursts: CFG.warmupBursts, warmup: CFG.warmupBursts * warmupSize(n) })
  for (const impl of runnable.filter((i) => !i.rttOnly)) {
    const r = results.impls[impl.name]
    let failedAt = null
    const skip = (n) => (failedAt != null && n >= failedAt ? { status: 'skipped', note: `did not finish at ${fmtInt(failedAt)}` } : null)
    // The published packages do not run the sizes marked legacy: false, nor
    // anything sending as many events in total (e.g. 100 clients × 100k).
    const legacyMin = Math.min(...CFG.bursts.filter((b) => b.legacy === false).map((b) => b.n))
    const legacySkip = (total) => (impl.legacy && total >= legacyMin ? { status: 'skipped', note: impl.legacy } : null)
    if (TESTS.includes('burst')) {
      r.burst = {}
      for (const b of CFG.bursts) {
        const s = skip(b.n) || legacySkip(b.n)
        if (s) {
          r.burst[b.n] = { n: b.n, total: b.n, limitS: b.limitS, ...s }
          log(`${impl.name}: burst N=${b.n}: not run (${s.note})`)
          continue
        }
        log(`${impl.name}: acked burst N=${b.n} (limit ${b.limitS} s) ...`)
        const x = r.burst[b.n] = await safe(impl, 'burst', () => runMeasured(impl, 'burst', burstCfg(b.n), b.limitS))
        if (x.status !== 'ok' && failedAt == null) failedAt = b.n
        log(`${impl.name}: burst N=${b.n}: ${runCell(x, impl.acks)}` + (x.clientRssPeak ? `; RSS client +${fmtMB(x.clientRssPeak - x.clientRssBaseline)}, server +${fmtMB(x.serverRssPeak - x.serverRssBaseline)}` : ''))
      }
    }
    if (TESTS.includes('s2c')) {
      const s = skip(CFG.s2c.n)
      if (s) {
        r.s2c = { n: CFG.s2c.n, total: CFG.s2c.n, limitS: CFG.s2c.limitS, ...s, note: 'client → server ' + s.note }
      } else {
        log(`${impl.name}: server → client N=${CFG.s2c.n} (limit ${CFG.s2c.limitS} s) ...`)
        r.s2c = await safe(impl, 's2c', () => runMeasured(impl, 's2c', burstCfg(CFG.s2c.n), CFG.s2c.limitS))
      }
      log(`${impl.name}: server → client: ${runCell(r.s2c, impl.acks)}`)
    }
    if (TESTS.includes('many')) {
      const { clients, n, limitS } = CFG.many
      const s = skip(n) || legacySkip(n * clients)
      if (s) {
        r.many = { n, clients, total: n * clients, limitS, ...s, note: (s.note === impl.legacy ? '' : 'client → server ') + s.note }
      } else {
        log(`${impl.name}: ${clients} clients × ${n} (limit ${limitS} s) ...`)
        r.many = await safe(impl, 'many', () => runMeasured(impl, 'many', { ...burstCfg(n), clients, warmup: 0 }, limitS))
      }
      const m = r.many
      log(`${impl.name}: ${clients} clients: ${runCell(m, impl.acks)}` + (m.status === 'ok' ? `; finish median ${(m.finishMedianMs / 1000).toFixed(2)} s, max ${(m.finishMaxMs / 1000).toFixed(2)} s` : ''))
    }
  }

  // Round trips, interleaved: round 1 runs every implementation once, round
  // 2 again, and so on, so that a change of the machine's load hits all.
  if (TESTS.includes('pingpong')) {
    for (const impl of runnable) results.impls[impl.name].rtt = { rounds: [], once: !!impl.rttOnce }
    for (let k = 0; k < CFG.ping.repeats; k++) {
      for (const impl of runnable) {
        if (k > 0 && impl.rttOnce) continue
        const x = await safe(impl, 'ping-pong', () => runPingPong(impl, impl.rttOnce ? CFG.ping.onceLimitS : CFG.ping.limitS))
        results.impls[impl.name].rtt.rounds.push(x)
        log(`${impl.name}: round trip ${k + 1}/${CFG.ping.repeats}: ${x.status === 'ok' ? `p50 ${fmtUs(x.p50us)}, p99 ${fmtUs(x.p99us)}` : x.note}`)
      }
    }
    for (const impl of runnable) {
      const rt = results.impls[impl.name].rtt
      const ok = rt.rounds.filter((x) => x.status === 'ok')
      rt.p50us = ok.length ? median(ok.map((x) => x.p50us)) : null
      rt.p99us = ok.length ? median(ok.map((x) => x.p99us)) : null
    }
  }

  if (TESTS.includes('idle')) {
    for (const impl of runnable.filter((i) => !i.rttOnly)) {
      const r = results.impls[impl.name]
      if (impl.noIdle && !IDLE_EXPLICIT) {
        r.idleSkipped = true
        log(`${impl.name}: idle test skipped (transport variant; pass --tests=...,idle to run it)`)
        continue
      }
      log(`${impl.name}: idle connections ${CFG.idle.counts.join(', ')} ...`)
      r.idle = await safe(impl, 'idle', () => runIdle(impl))
      const i = r.idle
      log(`${impl.name}: idle: ${i.status === 'ok' ? 'done' : i.note}` + (i.client ? `; client ${fmtKB(i.client.perClientBytes)}/client` : ''))
    }
  }

  clearInterval(loadTimer)
  sampleLoad()
  results.meta.totalSeconds = (Date.now() - t0) / 1000
  results.meta.loadavgAtEnd = os.loadavg()
  results.meta.loadavgMax = Math.max(...loadSamples.map((x) => x[1]))
  const files = writeOutputs(results)
  console.log(results.markdown)
  log(`wrote ${files.map((f) => path.relative(process.cwd(), f)).join(', ')} in ${results.meta.totalSeconds.toFixed(0)} s`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
