'use strict'
// One benchmark process: a server or a client of one implementation.
//   node bench/child.js <server|client> <impl> <burst|pingpong|idle> '<json config>'
// Talks to bench/run.js with lines on stdout that start with "@@" followed by
// JSON; reads commands ("rss", "stats") as lines on stdin.

const readline = require('readline')
const { byName, HOST } = require('./impls')

const [role, implName, scenario, cfgJson] = process.argv.slice(2)
const cfg = JSON.parse(cfgJson || '{}')
const impl = byName(implName)

function report (obj) {
  process.stdout.write('@@' + JSON.stringify(obj) + '\n')
}

function mem () {
  if (global.gc) { global.gc(); global.gc() }
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers }
}

process.on('uncaughtException', (err) => {
  report({ type: 'fatal', error: String((err && err.stack) || err) })
  process.exit(70)
})
process.on('unhandledRejection', (err) => {
  report({ type: 'fatal', error: String((err && err.stack) || err) })
  process.exit(70)
})

const commands = {}
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const fn = commands[line.trim()]
  if (fn) fn()
})
process.stdin.on('end', () => process.exit(0)) // parent went away

const nowUs = () => Number(process.hrtime.bigint()) / 1000

// ---------------------------------------------------------------- server side
async function server () {
  const stats = { conns: 0, events: 0, outOfOrder: 0, badPayload: 0, pings: 0 }
  commands.stats = () => report({ type: 'stats', stats })
  commands.rss = () => report({ type: 'rss', mem: mem(), conns: stats.conns })

  const onConn = (conn) => {
    stats.conns++
    if (typeof conn.on === 'function') conn.on('error', (err) => { stats.lastError = String((err && err.message) || err) })
    if (scenario === 'burst') {
      let expect = 0
      conn.on('e', (i, payload) => {
        if (i !== expect) stats.outOfOrder++
        expect = i + 1
        if (payload !== cfg.payload) stats.badPayload++
        stats.events++
        // Implementations without acks: tell the client when all N arrived.
        if (!impl.acks && stats.events === cfg.n) conn.send('done', stats.events)
      })
    } else if (scenario === 'pingpong') {
      conn.on('ping', (seq) => {
        stats.pings++
        conn.send('pong', seq)
      })
    }
  }

  const before = mem()
  const srv = await impl.makeServer(onConn)
  report({ type: 'listening', port: srv.port, mem: before, memListening: mem() })
  if (scenario === 'burst') {
    setInterval(() => report({ type: 'progress', events: stats.events }), 500).unref()
  }
  setInterval(() => {}, 1 << 30) // stay alive until killed
}

// ---------------------------------------------------------------- client side
async function client () {
  const addr = { port: cfg.port, host: HOST }

  if (scenario === 'burst') {
    const c = await impl.makeClient(addr)
    const n = cfg.n
    const chunk = cfg.chunk
    const payload = cfg.payload
    let acks = 0
    let t0 = 0
    let tSent = 0
    const finish = () => {
      const t1 = nowUs()
      report({ type: 'result', acks, elapsedMs: (t1 - t0) / 1000, sendLoopMs: (tSent - t0) / 1000, mem: mem() })
      process.exit(0)
    }
    const onAck = () => { if (++acks === n) finish() }
    if (!impl.acks) c.on('done', (count) => { acks = count; finish() })
    setInterval(() => report({ type: 'progress', acks }), 500)
    report({ type: 'ready' })
    let i = 0
    const pump = () => {
      const end = Math.min(n, i + chunk)
      if (impl.acks) {
        for (; i < end; i++) c.send('e', i, payload, onAck)
      } else {
        for (; i < end; i++) c.send('e', i, payload)
      }
      if (i < n) setImmediate(pump)
      else {
        tSent = nowUs()
        report({ type: 'sent', ms: (tSent - t0) / 1000 })
      }
    }
    t0 = nowUs()
    pump()
    return
  }

  if (scenario === 'pingpong') {
    const c = await impl.makeClient(addr)
    const total = cfg.warmup + cfg.rounds
    const rtts = new Float64Array(cfg.rounds)
    const all = [] // every round trip, warm-up included (for partial reports)
    let done = 0
    let tSend = 0
    let lastProgress = Date.now()
    c.on('pong', (seq) => {
      const t = nowUs()
      if (seq !== done) { report({ type: 'fatal', error: `pong ${seq} for ping ${done}` }); process.exit(71) }
      if (done >= cfg.warmup) rtts[done - cfg.warmup] = t - tSend
      all.push(t - tSend)
      done++
      lastProgress = Date.now()
      if (done === total) {
        const s = Array.from(rtts).sort((a, b) => a - b)
        const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))]
        const mean = s.reduce((a, b) => a + b, 0) / s.length
        report({ type: 'result', roundTrips: done, p50: q(0.5), p90: q(0.9), p99: q(0.99), min: s[0], max: s[s.length - 1], mean })
        process.exit(0)
      }
      tSend = nowUs()
      c.send('ping', done)
    })
    setInterval(() => {
      const s = all.slice().sort((a, b) => a - b)
      report({ type: 'progress', roundTrips: done, p50: s.length ? s[Math.floor(s.length / 2)] : null })
    }, 1000)
    setInterval(() => {
      if (Date.now() - lastProgress > cfg.stallMs) {
        report({ type: 'stalled', roundTrips: done })
        process.exit(0)
      }
    }, 100)
    report({ type: 'ready' })
    tSend = nowUs()
    c.send('ping', 0)
    return
  }

  if (scenario === 'idle') {
    const clients = []
    let failed = 0
    let lastError = null
    commands.rss = () => report({ type: 'rss', mem: mem(), clients: clients.length })
    const t0 = Date.now()
    for (let k = 0; k < cfg.count; k += cfg.batch) {
      const m = Math.min(cfg.batch, cfg.count - k)
      const ps = []
      for (let j = 0; j < m; j++) ps.push(impl.makeClient(addr))
      const rs = await Promise.allSettled(ps)
      for (const r of rs) {
        if (r.status === 'fulfilled') {
          clients.push(r.value)
          // keep idle connections quiet; errors after the handshake are counted
          if (typeof r.value.on === 'function') r.value.on('error', () => {})
        } else {
          failed++
          lastError = String((r.reason && r.reason.message) || r.reason)
        }
      }
      report({ type: 'progress', connected: clients.length, failed })
      if (failed) break
    }
    report({ type: 'connected', connected: clients.length, failed, lastError, ms: Date.now() - t0, mem: mem() })
    setInterval(() => {}, 1 << 30)
  }
}

;(role === 'server' ? server : client)().catch((err) => {
  report({ type: 'fatal', error: String((err && err.stack) || err) })
  process.exit(70)
})
