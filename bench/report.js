'use strict'
// The Markdown report of a benchmark run: the tables of every measure and the
// issue-12 targets, computed from results.json alone (so that `--render` can
// redo them). bench/run.js writes it into BENCHMARKS.md above the history
// marker.

const HISTORY_MARKER = '<!-- history -->'

const fmtInt = (x) => Math.round(x).toLocaleString('en-US')
function fmtRate (x) {
  if (x >= 1e6) return (x / 1e6).toFixed(2) + 'M'
  if (x >= 1e3) return (x / 1e3).toFixed(x >= 1e5 ? 0 : 1) + 'k'
  return x.toFixed(0)
}
const fmtMB = (b) => (b / 1048576).toFixed(1) + ' MB'
const fmtKB = (b) => (b / 1024).toFixed(2) + ' KB'
const fmtUs = (u) => (u >= 10000 ? (u / 1000).toFixed(1) + ' ms' : (u >= 100 ? u.toFixed(0) : u.toFixed(1)) + ' µs')
const fmtN = (n) => (n >= 1e6 && n % 1e5 === 0 ? n / 1e6 + 'M' : n >= 1e3 && n % 100 === 0 ? n / 1e3 + 'k' : String(n))
const median = (xs) => {
  const s = xs.slice().sort((a, b) => a - b)
  if (!s.length) return null
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

// Events confirmed so far in a run that did not finish: acks, or for an
// implementation without acks, what the receiver counted.
const confirmed = (b, acks) => (acks ? b.acks : b.receiverEvents) || 0

// One measured run (burst, s2c, many) in a table cell.
function runCell (b, acks) {
  if (!b) return '—'
  if (b.status === 'ok') {
    return `${fmtInt(b.eventsPerSec)} ev/s (${(b.elapsedMs / 1000).toFixed(2)} s)` + (b.note ? ` ⚠ ${b.note}` : '')
  }
  if (b.status === 'dnf') {
    const got = b.receiverEvents != null ? `receiver got ${b.receiverEvents === b.total ? 'all' : fmtInt(b.receiverEvents)}` : ''
    return `did not finish (>${b.limitS} s; ` + (acks ? `${fmtInt(b.acks || 0)} acked${got ? ', ' + got : ''}` : got) + ')'
  }
  if (b.status === 'skipped') return `not run: ${b.note}`
  return `${b.status}: ${b.note}`
}

const rssCell = (base, peak) => (base && peak ? `${fmtMB(base)} → ${fmtMB(peak)} (+${fmtMB(peak - base)})` : '—')
const cpuCell = (us, n) => (us != null && n ? `${(us / n).toFixed(2)}` : '—')

// The issue-12 targets: [{ target, result, met: true | false | null }].
function targets (results) {
  const cfg = results.meta.config
  const get = (name) => (results.impls[name] && results.impls[name].available ? results.impls[name] : null)
  const ours = get('ours')
  const raw = get('raw')
  const old = get('uhura-0.0.10')
  const main = cfg.bursts.find((b) => b.main) || cfg.bursts[0]
  const big = cfg.bursts[cfg.bursts.length - 1]
  const burst = (r, n) => (r && r.burst && r.burst[n] && r.burst[n].status === 'ok' ? r.burst[n] : null)
  const out = []
  const add = (target, met, result) => out.push({ target, met, result })
  const none = 'not measured'

  const b1 = burst(ours, main.n)
  add(`client → server at ${fmtN(main.n)}: ≥ 1,000,000 ev/s`, b1 ? b1.eventsPerSec >= 1e6 : null,
    b1 ? `${fmtInt(b1.eventsPerSec)} ev/s` : none)
  const r1 = burst(raw, main.n)
  add(`client → server at ${fmtN(main.n)}: ≥ 2.5 × raw (same run)`, b1 && r1 ? b1.eventsPerSec >= 2.5 * r1.eventsPerSec : null,
    b1 && r1 ? `${(b1.eventsPerSec / r1.eventsPerSec).toFixed(2)} × (${fmtInt(r1.eventsPerSec)} ev/s raw)` : none)
  const s = ours && ours.s2c && ours.s2c.status === 'ok' ? ours.s2c : null
  const sRef = s && burst(ours, s.n)
  add(`server → client at ${s ? fmtN(s.n) : fmtN(main.n)}: ≥ 80% of client → server`, s && sRef ? s.eventsPerSec >= 0.8 * sRef.eventsPerSec : null,
    s && sRef ? `${fmtInt(s.eventsPerSec)} ev/s, ${(100 * s.eventsPerSec / sRef.eventsPerSec).toFixed(0)}%` : none)
  const all = cfg.bursts.map((b) => burst(ours, b.n))
  if (all.every(Boolean)) {
    const med = median(all.map((b) => b.eventsPerSec))
    const dev = Math.max(...all.map((b) => Math.abs(b.eventsPerSec / med - 1)))
    add(`flat from ${fmtN(cfg.bursts[0].n)} to ${fmtN(big.n)}: every size within ±20% of their median`, dev <= 0.2,
      `${all.map((b) => fmtRate(b.eventsPerSec)).join(' / ')} ev/s; largest deviation ${(100 * dev).toFixed(0)}%`)
  } else {
    add(`flat from ${fmtN(cfg.bursts[0].n)} to ${fmtN(big.n)}: every size within ±20% of their median`, null, 'not every size finished')
  }
  const bb = burst(ours, big.n)
  const limit = 64 * 1048576
  if (bb && bb.clientRssPeak && bb.serverRssPeak) {
    const dc = bb.clientRssPeak - bb.clientRssBaseline
    const ds = bb.serverRssPeak - bb.serverRssBaseline
    add(`RSS during the ${fmtN(big.n)} burst ≤ 64 MB over the baseline (client and server)`, dc <= limit && ds <= limit,
      `client +${fmtMB(dc)}, server +${fmtMB(ds)}`)
  } else {
    add(`RSS during the ${fmtN(big.n)} burst ≤ 64 MB over the baseline (client and server)`, null, none)
  }
  const m = ours && ours.many && ours.many.status === 'ok' ? ours.many : null
  const manyWhat = `${m ? m.clients : cfg.many.clients} clients × ${fmtN(m ? m.n : cfg.many.n)}`
  add(`${manyWhat}: aggregate ≥ 1,000,000 ev/s`, m ? m.eventsPerSec >= 1e6 : null, m ? `${fmtInt(m.eventsPerSec)} ev/s` : none)
  add(`${manyWhat}: fairness, slowest client ≤ 2 × the median finish time`, m ? m.fair : null,
    m ? `median ${(m.finishMedianMs / 1000).toFixed(2)} s, max ${(m.finishMaxMs / 1000).toFixed(2)} s (${(m.finishMaxMs / m.finishMedianMs).toFixed(2)} ×)` : none)
  const rt = (r) => (r && r.rtt && r.rtt.p50us != null ? r.rtt : null)
  const ro = rt(ours)
  const rl = rt(old)
  add('round trip p50 ≤ 0.6 × uhura 0.0.10 (median of the rounds)', ro && rl ? ro.p50us <= 0.6 * rl.p50us : null,
    ro && rl ? `${(ro.p50us / rl.p50us).toFixed(2)} × (${fmtUs(ro.p50us)} vs ${fmtUs(rl.p50us)})` : none)
  add('round trip p99 ≤ 0.5 × uhura 0.0.10 (median of the rounds)', ro && rl ? ro.p99us <= 0.5 * rl.p99us : null,
    ro && rl ? `${(ro.p99us / rl.p99us).toFixed(2)} × (${fmtUs(ro.p99us)} vs ${fmtUs(rl.p99us)})` : none)
  const idle = ours && ours.idle
  for (const n of cfg.idle.checkAt) {
    const p = idle && idle.points && idle.points.find((x) => x.count === n)
    add(`server memory per idle connection at ${fmtInt(n)} ≤ 3 KB`, p ? p.perConnBytes <= 3 * 1024 : null, p ? fmtKB(p.perConnBytes) : none)
  }
  const c = idle && idle.client
  add(`client memory per idle client, ${fmtInt(cfg.idle.clientAt)} in one process, ≤ 4 KB`, c ? c.perClientBytes <= 4 * 1024 : null,
    c ? fmtKB(c.perClientBytes) : none)
  const cpu = (r) => {
    const b = burst(r, main.n)
    return b && b.clientCpuUs != null && b.serverCpuUs != null ? (b.clientCpuUs + b.serverCpuUs) / b.total : null
  }
  const co = cpu(ours)
  const cr = cpu(raw)
  add(`CPU per acked event at ${fmtN(main.n)} (client + server) below raw's`, co != null && cr != null ? co < cr : null,
    co != null && cr != null ? `${co.toFixed(2)} vs ${cr.toFixed(2)} µs (${(co / cr).toFixed(2)} ×)` : none)
  return out
}

function table (head, rows) {
  return [`| ${head.join(' | ')} |`, '|' + head.map(() => '---|').join(''), ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

// charts: { throughput, rtt, memory, readme }: paths relative to the Markdown
// file of the charts written and of bench/README.md.
function markdown (results, charts) {
  const m = results.meta
  const cfg = m.config
  const tests = m.tests
  const names = Object.keys(results.impls)
  const avail = names.filter((n) => results.impls[n].available)
  // The throughput and memory tables leave out the variants measured for round trips only.
  const availT = avail.filter((n) => !results.impls[n].rttOnly)
  const label = (n) => results.impls[n].label + (results.impls[n].acks ? '' : ' ¹')
  const o = []
  o.push('# Benchmarks')
  o.push('')
  o.push('<!-- Generated by `npm run bench` (bench/run.js, bench/report.js): everything above the history marker is rewritten on every run. -->')
  o.push('')
  const la = (x) => x.toFixed(2)
  o.push(`Measured ${m.date.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')} with \`node bench/run.js${m.args && m.args.length ? ' ' + m.args.join(' ') : ''}\`` +
    ` in ${Math.round(m.totalSeconds || 0)} s: node ${m.node}, ${m.cpus} CPUs (${m.cpuModel}), ${m.platform}.` +
    ` Load average (1/5/15 min) at the start ${m.loadavgAtStart.map(la).join(' / ')}` +
    (m.loadavgAtEnd ? `, at the end ${m.loadavgAtEnd.map(la).join(' / ')}` : '') +
    (m.loadavgMax != null ? `; the 1-minute value reached ${la(m.loadavgMax)} during the run` : '') + '.' +
    (m.quick ? ' `--quick`: shorter time limits and fewer events and connections.' : '') +
    (m.scale !== 1 ? ` **Scaled run (\`--scale=${m.scale}\`): event and connection counts are not the standard ones.**` : '') +
    (m.nodeFlags ? ` **Every benchmark process ran with the node flags \`${m.nodeFlags}\`.**` : ''))
  const ours = results.impls.ours
  if (ours && ours.build) {
    const b = ours.build
    o.push('')
    o.push(b.error
      ? `${ours.label}: addon not found (${b.error}).`
      : b.debugInfo
        ? `**Warning: ${ours.label} was measured with an addon that has debug info (${(b.bytes / 1048576).toFixed(1)} MB), probably a debug build (revision ${b.revision || '?'}); its numbers are not representative.**`
        : `${ours.label}: ${b.kind} of the addon (${(b.bytes / 1048576).toFixed(1)} MB), revision ${b.revision || '?'}.`)
  }
  o.push('')
  o.push(`How each number is measured: [bench/README.md](${(charts && charts.readme) || 'bench/README.md'}). Server and client are separate processes on 127.0.0.1.`)

  o.push('')
  o.push('## Targets (issue 12)')
  o.push('')
  o.push(table(['target', 'result', 'met'], targets(results).map((t) => [t.target, t.result, t.met == null ? '—' : t.met ? 'met' : '**not met**'])))

  const sizes = cfg.bursts.map((b) => b.n)
  if (tests.includes('burst')) {
    o.push('')
    o.push('## Acked throughput, client → server')
    o.push('')
    o.push(`N × \`send('e', i, '<39-byte string>', ackCallback)\`, ${cfg.window ? `at most ${fmtInt(cfg.window)} unacknowledged (uhura 0.0.10: no limit, it has no acks)` : 'all N in one synchronous loop'}` +
      `${cfg.chunk ? `, ${fmtInt(cfg.chunk)} per macrotask` : ''}; time from the first send until the last ack callback ran.` +
      `${cfg.warmupBursts ? ` Before it, in the same processes and connection, ${cfg.warmupBursts} warm-up bursts of N events each (at most ${fmtInt(cfg.window || 100000)}) go the same way and are not counted.` : cfg.warmup ? ` Before it, in the same processes and connection, ${fmtInt(cfg.warmup)} warm-up events go the same way and are not counted.` : ''}`)
    o.push('')
    o.push(table(['implementation', ...sizes.map((n) => `N = ${fmtInt(n)}`)], availT.map((n) => [label(n), ...sizes.map((s) => runCell(results.impls[n].burst && results.impls[n].burst[s], results.impls[n].acks))])))
    o.push('')
    o.push('Memory (RSS: after `gc()` before the burst → peak during it) and CPU (user + system, µs per event) of both processes:')
    o.push('')
    const rows = []
    for (const n of availT) {
      for (const s of sizes) {
        const b = results.impls[n].burst && results.impls[n].burst[s]
        if (!b || (b.status !== 'ok' && b.status !== 'dnf')) continue
        const ok = b.status === 'ok'
        rows.push([label(n), fmtInt(s) + (ok ? '' : ' (did not finish)'), rssCell(b.clientRssBaseline, b.clientRssPeak), rssCell(b.serverRssBaseline, b.serverRssPeak),
          ok ? cpuCell(b.clientCpuUs, b.total) : '—', ok ? cpuCell(b.serverCpuUs, b.total) : '—', ok ? cpuCell(b.clientCpuUs + b.serverCpuUs, b.total) : '—'])
      }
    }
    o.push(table(['implementation', 'N', 'client RSS', 'server RSS', 'client CPU µs/ev', 'server CPU µs/ev', 'total µs/ev'], rows))
  }
  if (tests.includes('s2c')) {
    o.push('')
    o.push('## Acked throughput, server → client')
    o.push('')
    o.push(`The client sends \`go\`; the server sends N = ${fmtInt(cfg.s2c.n)} events on that connection the same way; time from \`go\` arriving until the server's last ack callback ran.`)
    o.push('')
    o.push(table(['implementation', 'throughput', 'client RSS', 'server RSS', 'client CPU µs/ev', 'server CPU µs/ev'], availT.map((n) => {
      const b = results.impls[n].s2c
      const ok = b && b.status === 'ok'
      return [label(n), runCell(b, results.impls[n].acks), b ? rssCell(b.clientRssBaseline, b.clientRssPeak) : '—', b ? rssCell(b.serverRssBaseline, b.serverRssPeak) : '—',
        ok ? cpuCell(b.clientCpuUs, b.total) : '—', ok ? cpuCell(b.serverCpuUs, b.total) : '—']
    })))
  }
  if (tests.includes('many')) {
    o.push('')
    o.push(`## ${cfg.many.clients} clients at once`)
    o.push('')
    o.push(`${cfg.many.clients} clients in one process, each sending ${fmtInt(cfg.many.n)} acked events at once, to one server process. Aggregate: all acked events ÷ time until the last ack; a client's finish time is when its own last ack callback ran.`)
    o.push('')
    o.push(table(['implementation', 'aggregate', 'finish time median / max', 'max ÷ median', 'client RSS', 'server RSS'], availT.map((n) => {
      const b = results.impls[n].many
      const ok = b && b.status === 'ok'
      return [label(n), runCell(b, results.impls[n].acks),
        ok ? `${(b.finishMedianMs / 1000).toFixed(2)} s / ${(b.finishMaxMs / 1000).toFixed(2)} s` : '—',
        ok ? `${(b.finishMaxMs / b.finishMedianMs).toFixed(2)}${b.fair ? '' : ' (> 2)'}` : '—',
        b ? rssCell(b.clientRssBaseline, b.clientRssPeak) : '—', b ? rssCell(b.serverRssBaseline, b.serverRssPeak) : '—']
    })))
  }
  if (charts && charts.throughput && (tests.includes('burst') || tests.includes('s2c') || tests.includes('many'))) {
    o.push('')
    o.push(`![acked throughput](${charts.throughput})`)
  }
  if (tests.includes('pingpong')) {
    o.push('')
    o.push('## Round trip')
    o.push('')
    o.push(`\`ping(seq)\` → \`pong(seq)\` → next ping; ${cfg.ping.warmup} warm-up round trips, then ${fmtInt(cfg.ping.trips)} measured, in fresh processes per round. ` +
      `${cfg.ping.repeats} rounds, the implementations interleaved (round 1: each once, round 2: each again, …; those marked ² run in round 1 only). Per implementation the median of the rounds' p50 and of their p99.`)
    o.push('')
    o.push(table(['implementation', 'rounds: p50 / p99', 'median p50', 'median p99'], avail.filter((n) => results.impls[n].rtt).map((n) => {
      const r = results.impls[n].rtt
      const rounds = r.rounds.map((x) => (x.status === 'ok' ? `${fmtUs(x.p50us)} / ${fmtUs(x.p99us)}` : x.note || x.status)).join('; ')
      return [label(n) + (r.once ? ' ²' : ''), rounds, r.p50us != null ? fmtUs(r.p50us) : '—', r.p99us != null ? fmtUs(r.p99us) : '—']
    })))
    const rl = results.impls['uhura-0.0.10'] && results.impls['uhura-0.0.10'].rtt
    for (const mine of [ours, results.impls['ours-busypoll'], results.impls['ours-nobusypoll']]) {
      const ro = mine && mine.rtt
      if (!ro || !rl || ro.p50us == null || rl.p50us == null) continue
      o.push('')
      o.push(`${mine.label} ÷ uhura@0.0.10: p50 ${(ro.p50us / rl.p50us).toFixed(2)} ×, p99 ${(ro.p99us / rl.p99us).toFixed(2)} ×.`)
    }
    if (charts && charts.rtt) {
      o.push('')
      o.push(`![round trip](${charts.rtt})`)
    }
  }
  if (tests.includes('idle')) {
    o.push('')
    o.push('## Idle connections')
    o.push('')
    o.push(`Server process RSS after \`gc()\` (JavaScript and native together) with N idle, handshaken clients connected from other processes (at most ${fmtInt(cfg.idle.perProcess)} per client process); per connection = (RSS with N − RSS with none) ÷ N. ` +
      `Client side: RSS of the first client process, before its first connection and with ${fmtInt(cfg.idle.clientAt)} clients.`)
    o.push('')
    const counts = cfg.idle.counts.filter((c) => c > 0)
    o.push(table(['implementation', 'server baseline', ...counts.map((c) => `N = ${fmtInt(c)}`), `client, ${fmtInt(cfg.idle.clientAt)} clients`], avail.filter((n) => results.impls[n].idle || results.impls[n].idleSkipped).map((n) => {
      const i = results.impls[n].idle
      if (!i) return [label(n), 'not run', ...counts.map(() => '—'), '—']
      const cells = counts.map((c) => {
        const p = i.points && i.points.find((x) => x.count === c)
        return p ? `${fmtMB(p.serverRss)} (${fmtKB(p.perConnBytes)}/conn)` : '—'
      })
      if (i.status !== 'ok') cells[cells.length - 1] = `${i.status}: ${i.note}`
      const c = i.client
      return [label(n), i.serverRssBaseline ? fmtMB(i.serverRssBaseline) : '—', ...cells, c ? `${fmtMB(c.rssBaseline)} → ${fmtMB(c.rss)} (${fmtKB(c.perClientBytes)}/client)` : '—']
    })))
    if (charts && charts.memory) {
      o.push('')
      o.push(`![memory per connection](${charts.memory})`)
    }
  }
  if (avail.some((n) => !results.impls[n].acks)) {
    o.push('')
    o.push('¹ uhura 0.0.x has no acks: a burst\'s time runs until the sender received the single `done` event the receiver sends after counting all N events.')
  }
  const skipped = names.filter((n) => !results.impls[n].available)
  if (skipped.length) {
    o.push('')
    o.push('Not run: ' + skipped.map((n) => `${results.impls[n].label} (${results.impls[n].note})`).join('; ') + '.')
  }
  return o.join('\n') + '\n'
}

// The report followed by what `previous` (the old file) has after the history
// marker, or all of `previous` when it has no marker yet.
function withHistory (report, previous) {
  let history = ''
  if (previous) {
    const k = previous.indexOf(HISTORY_MARKER)
    history = k >= 0 ? previous.slice(k + HISTORY_MARKER.length).replace(/^\n+/, '') : previous
  }
  return report + '\n' + HISTORY_MARKER + '\n\n' + history
}

module.exports = { markdown, targets, withHistory, runCell, confirmed, median, fmtInt, fmtRate, fmtMB, fmtKB, fmtUs, fmtN, HISTORY_MARKER }
