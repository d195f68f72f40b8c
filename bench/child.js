'use strict'
// One benchmark process: a server or a client of one implementation.
//   node bench/child.js <server|client> <impl> <burst|s2c|many|pingpong|idle> '<json config>'
// Talks to bench/run.js with lines on stdout that start with "@@" followed by
// JSON; reads commands as lines on stdin ("rss", "mark", "stats", "go",
// "open <count>").
//
// Measured runs (burst, s2c, many) go: the client reports `ready` once every
// handshake is done; the parent asks the server to `mark` (its baseline
// memory and CPU), then tells the client `go`. `stats` reports, among the
// counters, the CPU used since the mark (server) or since go (client).

const fs = require('fs')
const { byName, HOST } = require('./impls')

const [role, implName, scenario, cfgJson] = process.argv.slice(2)
const cfg = JSON.parse(cfgJson || '{}')
const impl = byName(implName)
Object.assign(process.env, impl.env)

function report (obj) {
  process.stdout.write('@@' + JSON.stringify(obj) + '\n')
}

function mem () {
  if (global.gc) { global.gc(); global.gc() }
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers }
}

// The memory baseline of a measured run: RSS after gc(), taken before the
// last warm-up burst (by the sender in warmUp, by the receiver in
// receiveBurst) rather than right before the measured events: the two
// forced full collections cost the next burst ~15 ms of extra CPU on the
// client (a 10k burst after them used ~3.5 µs per event, ~1.9 without), so
// the last warm-up burst runs after them instead. Without a warm-up it is
// taken at `ready` / `mark`.
let baseline = null
const takeBaseline = () => { baseline = mem() }
// The pause after the baseline, before the last warm-up burst: V8's work on
// helper threads that the forced collections and the warm-up bursts
// started (optimizing compiles of 3-15 ms on this machine) ends in it,
// instead of taking a core from the measured burst after a last warm-up
// burst of a few milliseconds (bench/README.md, "Small bursts: the
// receiver's rare branches").
const SETTLE_MS = 20
const baselineMem = () => {
  const m = baseline || mem()
  baseline = null
  return m
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
// Commands are read from stdin with fs.read, not through a stream: a
// stream's 'data' (and readline's 'line') go through the same
// EventEmitter.prototype.emit every implementation's events go through,
// and V8, having optimized emit for the implementation's objects alone
// during the warm-up, threw that code away at the first command after it
// (`mark`, `go`: right at the start of the measured run) and compiled it
// again during the run. 'end' of stdin (the parent went away) exits.
function readCommands () {
  const buf = Buffer.alloc(4096)
  let text = ''
  const next = () => fs.read(0, buf, 0, buf.length, null, (err, bytes) => {
    if (err && err.code === 'EAGAIN') return setTimeout(next, 10)
    if (err || bytes === 0) process.exit(0)
    const lines = (text + buf.toString('utf8', 0, bytes)).split('\n')
    text = lines.pop()
    for (const line of lines) {
      const [name, arg] = line.trim().split(/\s+/)
      const fn = commands[name]
      if (fn) fn(arg)
    }
    next()
  })
  next()
}
readCommands()

const nowUs = () => Number(process.hrtime.bigint()) / 1000

// CPU time (user + system, µs) used since the last mark.
let cpuMark = process.cpuUsage()
const markCpu = () => { cpuMark = process.cpuUsage() }
const cpuSinceMark = () => {
  const d = process.cpuUsage(cpuMark)
  return d.user + d.system
}

// Sends n events (name, i, payload) on peer, `chunk` per macrotask, keeping at
// most `window` of them unacknowledged (0: no limit); once the window is full,
// sending resumes when the acks have brought it down to half. onDone(state)
// runs after the last ack callback (implementations with acks), or right
// after the last send (without: the caller waits for a reply of its own).
function sendBurst (peer, n, onDone, from = 0) {
  const { payload } = cfg
  const chunk = cfg.chunk || n
  const window = impl.acks && cfg.window > 0 ? cfg.window : Infinity
  const st = { sent: 0, acks: 0, ackErrors: 0, lastAckError: null, sendLoopMs: null, doneUs: null }
  const t0 = nowUs()
  let waiting = false
  const onAck = (err) => {
    if (err) {
      st.ackErrors++
      st.lastAckError = String(err.message || err)
    }
    if (++st.acks === n) {
      // The clock stops here; onDone (a closure of its own for each burst)
      // runs from a microtask. Called from here, it was a new call target
      // in V8's optimized ack path (the implementation's, with this callback
      // inlined), which was thrown away at every burst's last ack and
      // compiled again during the next burst.
      st.doneUs = nowUs()
      queueMicrotask(() => onDone(st))
      return
    }
    if (waiting && st.sent - st.acks <= window / 2) {
      waiting = false
      setImmediate(pump)
    }
  }
  const pump = () => {
    const end = Math.min(n, st.sent + chunk, st.acks + window)
    const i = st.sent = sendRange(peer, from, st.sent, end, payload, impl.acks ? onAck : null)
    if (i >= n) {
      st.sendLoopMs = (nowUs() - t0) / 1000
      if (!impl.acks) onDone(st)
    } else if (i - st.acks >= window) {
      waiting = true
    } else {
      setImmediate(pump)
    }
  }
  pump()
  return st
}

// The sends of events i … end - 1 of a burst (numbered from + i). One
// function for every burst, not a loop in each burst's pump: V8 compiles it
// once and keeps it. With the loop in the pump, V8 compiled the pump during
// a burst, threw that code away where the burst ended (the statements after
// the loop), and compiled it again on a helper thread during the next
// burst: 2-3 ms of the second core taken from a 10k burst (bench/README.md,
// "Small bursts: the harness's send loop").
function sendRange (peer, from, i, end, payload, cb) {
  if (cb !== null) {
    for (; i < end; i++) peer.send('e', from + i, payload, cb)
  } else {
    for (; i < end; i++) peer.send('e', from + i, payload)
  }
  return i
}

// Receiving side of a burst: counts the events of one peer and checks order
// and payload. onAll runs when n arrived. Warm-up events (numbered -warmup …
// -1, just before the measured 0 … n-1) take the very same path and are
// only left out of `stats.events`: had they returned early, the code the
// measured events run would have had no type feedback, and V8 would have
// compiled it (and then the listener again) during the measured run.
// Without acks it answers 'wdone' after each warm-up burst.
function receiveBurst (peer, n, stats, onAll) {
  const warmup = cfg.warmup > 0 ? cfg.warmup : 0
  const noAcks = !impl.acks
  // Without acks, the sender's warm-up waits for a 'wdone' after each burst.
  const wsize = Math.ceil(warmup / (cfg.warmupBursts > 0 ? cfg.warmupBursts : 1)) || 1
  // Where the last warm-up burst starts (see takeBaseline).
  const baselineAt = warmup - (warmup % wsize || wsize)
  let expect = -warmup
  let seen = 0
  // What happens at a few events only (the baseline, the end of a warm-up
  // burst without acks, the last event), in a function of its own that the
  // listener calls at those events and at each power of two: its call site
  // has type feedback long before V8 optimizes the listener (inlined into
  // the implementation's receive loop; V8 records none in the listener's
  // first calls, before it allocates its feedback vector), and is too rare
  // to be inlined itself.
  // Written in the listener, each of these calls was first made by
  // optimized code: a deopt of the whole receive path (takeBaseline just
  // before the last warm-up burst, then a compile of 3-8 ms on a helper
  // thread during the measured burst; onAll at its last event), for every
  // implementation (bench/README.md, "Small bursts: the receiver's rare
  // branches").
  const milestone = (k) => {
    if (k === baselineAt && k > 0) takeBaseline()
    if (noAcks && k <= warmup && (k % wsize === 0 || k === warmup)) peer.send('wdone')
    if (k === warmup + n && onAll) onAll()
  }
  peer.on('e', (i, payload) => {
    if (i !== expect) stats.outOfOrder++
    expect = i + 1
    if (payload !== cfg.payload) stats.badPayload++
    const k = ++seen
    stats.events += k > warmup ? 1 : 0
    if ((k & (k - 1)) === 0 || k === baselineAt || k === warmup + n || (noAcks && k <= warmup && (k % wsize === 0 || k === warmup))) milestone(k)
  })
}

// The warm-up before a measured burst or server → client run:
// cfg.warmupBursts bursts of cfg.warmup / cfg.warmupBursts events each (run.js
// makes them as large as the measured burst, up to the window), sent the
// same way as the measured ones, through the same send and receive code, so
// that the JIT, the young generation and the implementation's buffers are in
// their steady state before the clock starts (without it a 10k burst mostly
// measures compilation). They are numbered -warmup … -1, just before the
// measured events. Several bursts, one after the other: each has callbacks
// and a send loop of its own (new closures, as an application's would be),
// and after two bursts of half the measured size the first two measured
// bursts in a process still ran V8's compiler and grew its young generation
// (bench/README.md, "Warm-up"). Resolves once the sender has seen them all
// acknowledged (without acks: each burst waits for the receiver's 'wdone').
function warmUp (peer) {
  return new Promise((resolve) => {
    if (!(cfg.warmup > 0)) return resolve()
    const bursts = cfg.warmupBursts > 0 ? cfg.warmupBursts : 1
    const size = Math.ceil(cfg.warmup / bursts)
    let sent = 0
    let wdone = null
    if (!impl.acks) peer.on('wdone', () => wdone())
    const next = () => {
      const m = Math.min(size, cfg.warmup - sent)
      if (m <= 0) return resolve()
      const from = -cfg.warmup + sent
      sent += m
      const burst = () => {
        if (impl.acks) sendBurst(peer, m, next, from)
        else {
          wdone = next
          sendBurst(peer, m, () => {}, from)
        }
      }
      if (sent === cfg.warmup && from > -cfg.warmup) {
        takeBaseline()
        // The receiver took its baseline at the end of the burst before.
        setTimeout(burst, SETTLE_MS)
      } else burst()
    }
    next()
  })
}

// ---------------------------------------------------------------- server side
async function server () {
  const stats = { conns: 0, events: 0, outOfOrder: 0, badPayload: 0, pings: 0, acks: 0 }
  commands.stats = () => report({ type: 'stats', stats, cpuUs: cpuSinceMark() })
  commands.rss = () => report({ type: 'rss', mem: mem(), conns: stats.conns })
  commands.mark = () => {
    const m = baselineMem()
    markCpu()
    report({ type: 'mark', mem: m, conns: stats.conns })
  }

  const onConn = (conn) => {
    stats.conns++
    if (typeof conn.on === 'function') conn.on('error', (err) => { stats.lastError = String((err && err.message) || err) })
    if (scenario === 'burst' || scenario === 'many') {
      // Implementations without acks: tell the client when all of its events arrived.
      receiveBurst(conn, cfg.n, stats, impl.acks ? null : () => conn.send('done', cfg.n))
    } else if (scenario === 's2c') {
      conn.on('warm', () => warmUp(conn).then(() => conn.send('warm')))
      // The client asks with go(n); the time runs from then until the last
      // ack (without acks: until the client's done).
      conn.on('go', () => {
        const t0 = nowUs()
        let st = null
        const finish = () => {
          stats.acks = st.acks
          report({ type: 'result', acks: st.acks, ackErrors: st.ackErrors, lastAckError: st.lastAckError, elapsedMs: ((st.doneUs || nowUs()) - t0) / 1000, sendLoopMs: st.sendLoopMs })
        }
        if (!impl.acks) conn.on('done', (count) => { st.acks = count; finish() })
        st = sendBurst(conn, cfg.n, () => { if (impl.acks) finish() })
        setInterval(() => report({ type: 'progress', acks: st.acks }), 500).unref()
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
  if (scenario === 'burst' || scenario === 'many') {
    setInterval(() => report({ type: 'progress', events: stats.events }), 500).unref()
  }
  setInterval(() => {}, 1 << 30) // stay alive until killed
}

// ---------------------------------------------------------------- client side
// Every client stays alive after its result: the parent reads its peak RSS
// (/proc/<pid>/status) and asks for its stats, then kills it.
async function client () {
  const addr = { port: cfg.port, host: HOST }
  const stats = { events: 0, outOfOrder: 0, badPayload: 0 }
  commands.stats = () => report({ type: 'stats', stats, cpuUs: cpuSinceMark() })

  if (scenario === 'burst') {
    const c = await impl.makeClient(addr)
    let st = null
    let t0 = 0
    const finish = () => {
      report({ type: 'result', acks: st.acks, ackErrors: st.ackErrors, lastAckError: st.lastAckError, elapsedMs: ((st.doneUs || nowUs()) - t0) / 1000, sendLoopMs: st.sendLoopMs })
    }
    if (!impl.acks) c.on('done', (count) => { st.acks = count; finish() })
    await warmUp(c)
    setInterval(() => report({ type: 'progress', acks: st ? st.acks : 0 }), 500)
    commands.go = () => {
      markCpu()
      t0 = nowUs()
      st = sendBurst(c, cfg.n, () => { if (impl.acks) finish() })
    }
    report({ type: 'ready', mem: baselineMem() })
    return
  }

  if (scenario === 's2c') {
    const c = await impl.makeClient(addr)
    receiveBurst(c, cfg.n, stats, impl.acks ? null : () => c.send('done', cfg.n))
    await new Promise((resolve) => {
      if (!(cfg.warmup > 0)) return resolve()
      c.on('warm', resolve)
      c.send('warm')
    })
    commands.go = () => {
      markCpu()
      c.send('go', cfg.n)
    }
    report({ type: 'ready', mem: baselineMem() })
    return
  }

  if (scenario === 'many') {
    // cfg.clients clients in this one process, each sending cfg.n events at
    // once; each one's finish time is when its last ack callback ran.
    const cs = []
    for (let k = 0; k < cfg.clients; k += 50) {
      const ps = []
      for (let j = k; j < Math.min(cfg.clients, k + 50); j++) ps.push(impl.makeClient(addr))
      cs.push(...await Promise.all(ps))
    }
    const finishMs = new Array(cs.length).fill(null)
    const states = []
    let finished = 0
    let t0 = 0
    const onDone = (k) => {
      if (finishMs[k] !== null) return
      finishMs[k] = ((states[k].doneUs || nowUs()) - t0) / 1000
      if (++finished === cs.length) {
        const sum = (f) => states.reduce((a, s) => a + s[f], 0)
        report({ type: 'result', acks: sum('acks'), ackErrors: sum('ackErrors'), elapsedMs: Math.max(...finishMs), finishMs })
      }
    }
    setInterval(() => report({ type: 'progress', acks: states.reduce((a, s) => a + s.acks, 0), finished }), 500)
    commands.go = () => {
      markCpu()
      t0 = nowUs()
      cs.forEach((c, k) => {
        if (!impl.acks) c.on('done', (count) => { states[k].acks = count; onDone(k) })
        states.push(sendBurst(c, cfg.n, () => { if (impl.acks) onDone(k) }))
      })
    }
    report({ type: 'ready', mem: mem() })
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
    // Opens clients when told ("open <count>", in batches of cfg.batch, each
    // batch waiting for every handshake) and keeps them idle.
    const clients = []
    let failed = 0
    let lastError = null
    impl.load() // so that the baseline includes the module
    commands.rss = () => report({ type: 'rss', mem: mem(), clients: clients.length })
    commands.open = async (arg) => {
      const target = clients.length + Number(arg)
      const t0 = Date.now()
      while (clients.length < target && !failed) {
        const m = Math.min(cfg.batch, target - clients.length)
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
      }
      report({ type: 'opened', connected: clients.length, failed, lastError, ms: Date.now() - t0 })
    }
    report({ type: 'ready', mem: mem() })
    setInterval(() => {}, 1 << 30)
  }
}

;(role === 'server' ? server : client)().catch((err) => {
  report({ type: 'fatal', error: String((err && err.stack) || err) })
  process.exit(70)
})
