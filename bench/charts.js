'use strict'
// The three SVG charts of a benchmark run, hand-written (no dependency):
// acked throughput by burst size, round-trip time, and server memory per
// idle connection against the connection count. Each takes results.json.

const { confirmed, fmtRate, fmtUs, fmtN } = require('./report')

const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#b07aa1', '#76b7b2', '#edc948', '#9c755f']

// One color per implementation, the same in every chart.
const colorOf = (results, name) => COLORS[Object.keys(results.impls).indexOf(name) % COLORS.length]

function esc (s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function subtitle (results) {
  const m = results.meta
  return `node ${m.node}, ${m.cpus} CPUs, 127.0.0.1, server and client in separate processes` +
    (m.quick ? ', --quick' : '') + (m.scale !== 1 ? `, --scale=${m.scale}` : '')
}

// Frame, title and a log10 y axis from 10^lo to 10^hi; returns the y mapping.
function logFrame (o, { W, H, M, title, sub, lo, hi, yLabel, tick }) {
  const ph = H - M.t - M.b
  const y = (v) => M.t + ph - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * ph
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`)
  o.push(`<rect width="${W}" height="${H}" fill="#fff"/>`)
  o.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`)
  o.push(`<text x="${W / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">${esc(sub)}</text>`)
  for (let e = lo; e <= hi; e++) {
    const yy = y(10 ** e)
    o.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`)
    o.push(`<text x="${M.l - 8}" y="${yy + 4}" text-anchor="end">${tick(e)}</text>`)
  }
  o.push(`<line x1="${M.l}" x2="${M.l}" y1="${M.t}" y2="${M.t + ph}" stroke="#333"/>`)
  o.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${M.t + ph}" y2="${M.t + ph}" stroke="#333"/>`)
  o.push(`<text transform="translate(18 ${M.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`)
  return y
}

function legend (o, items, x0, y0, W) {
  let x = x0
  let y = y0
  for (const { label, color, dashed } of items) {
    const w = 36 + label.length * 7
    if (x + w > W - 10) { x = x0; y += 16 }
    o.push(dashed
      ? `<rect x="${x}" y="${y - 10}" width="12" height="12" fill="none" stroke="${color}" stroke-dasharray="3 2"/>`
      : `<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${color}"/>`)
    o.push(`<text x="${x + 18}" y="${y}">${esc(label)}</text>`)
    x += w
  }
}

const SI = ['1', '10', '100', '1k', '10k', '100k', '1M', '10M', '100M', '1G']

// Groups: one per burst size (client → server), then server → client and the
// many-clients run; one bar per implementation in each group.
function throughput (results) {
  const cfg = results.meta.config
  const tests = results.meta.tests
  const names = Object.keys(results.impls).filter((n) => results.impls[n].available && !results.impls[n].rttOnly)
  const groups = []
  if (tests.includes('burst')) for (const b of cfg.bursts) groups.push({ label: `c→s N=${fmtN(b.n)}`, get: (r) => r.burst && r.burst[b.n] })
  if (tests.includes('s2c')) groups.push({ label: `s→c N=${fmtN(cfg.s2c.n)}`, get: (r) => r.s2c })
  if (tests.includes('many')) groups.push({ label: `${cfg.many.clients} clients × ${fmtN(cfg.many.n)}`, get: (r) => r.many })
  const vals = []
  for (const g of groups) {
    for (const n of names) {
      const b = g.get(results.impls[n])
      if (b && b.status === 'ok') vals.push(b.eventsPerSec)
      else if (b && b.limitS && confirmed(b, results.impls[n].acks) > 0) vals.push(confirmed(b, results.impls[n].acks) / b.limitS)
    }
  }
  const lo = Math.min(2, Math.floor(Math.log10(Math.max(1, Math.min(...vals, 1e4) / 3))))
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...vals, 1e5) * 1.3)))
  const W = 980
  const H = 470
  const M = { l: 70, r: 20, t: 55, b: 95 }
  const o = []
  const y = logFrame(o, {
    W,
    H,
    M,
    lo,
    hi,
    title: 'Acked throughput (events/s, log scale; higher is better)',
    sub: subtitle(results) + (cfg.window ? `, at most ${cfg.window} unacked` : ', no window'),
    yLabel: 'events per second',
    tick: (e) => SI[e] || '1e' + e
  })
  const pw = W - M.l - M.r
  const base = H - M.b
  const gw = pw / Math.max(1, groups.length)
  const bw = Math.min(40, (gw * 0.85) / Math.max(1, names.length))
  groups.forEach((g, gi) => {
    const gx = M.l + gi * gw + (gw - bw * names.length) / 2
    o.push(`<text x="${M.l + gi * gw + gw / 2}" y="${base + 18}" text-anchor="middle" font-weight="bold">${esc(g.label)}</text>`)
    names.forEach((n, k) => {
      const r = results.impls[n]
      const b = g.get(r)
      const x = gx + k * bw
      const color = colorOf(results, n)
      if (b && b.status === 'ok') {
        const top = y(b.eventsPerSec)
        o.push(`<rect x="${x + 1}" y="${top}" width="${bw - 2}" height="${base - top}" fill="${color}"><title>${esc(`${r.label}: ${Math.round(b.eventsPerSec)} ev/s`)}</title></rect>`)
        o.push(`<text x="${x + bw / 2}" y="${top - 4}" text-anchor="middle" font-size="9">${fmtRate(b.eventsPerSec)}</text>`)
      } else {
        // Dashed outline; for a run that hit its limit, its height is the
        // lower bound (events confirmed ÷ limit).
        const got = b ? confirmed(b, r.acks) : 0
        const lb = b && got > 0 && b.limitS ? got / b.limitS : 0
        const top = lb > 0 ? Math.min(y(lb), base - 24) : base - 24
        const what = !b ? 'n/a' : b.status === 'dnf' ? 'DNF' : b.status === 'skipped' ? 'skip' : 'err'
        o.push(`<rect x="${x + 1}" y="${top}" width="${bw - 2}" height="${base - top}" fill="none" stroke="${color}" stroke-width="1.5" stroke-dasharray="4 3"><title>${esc(`${r.label}: ${b ? b.status + (b.note ? ': ' + b.note : '') : 'not run'}`)}</title></rect>`)
        o.push(`<text x="${x + bw / 2}" y="${top - 4}" text-anchor="middle" font-size="9" fill="#b00">${what}</text>`)
      }
    })
  })
  legend(o, [...names.map((n) => ({ label: results.impls[n].label + (results.impls[n].acks ? '' : ' *'), color: colorOf(results, n) })),
    { label: 'did not finish (height: confirmed ÷ limit) / skipped', color: '#555', dashed: true }], M.l, H - 48, W)
  if (names.some((n) => !results.impls[n].acks)) {
    o.push(`<text x="${M.l}" y="${H - 8}" font-size="10" fill="#555">* no acks in this protocol version: time until the receiver's single "done" reply after it counted all N events</text>`)
  }
  o.push('</svg>')
  return o.join('\n') + '\n'
}

// p50 and p99 (median over the rounds) per implementation, each round's
// values as dots.
function rtt (results) {
  const names = Object.keys(results.impls).filter((n) => results.impls[n].available && results.impls[n].rtt)
  const vals = []
  for (const n of names) {
    for (const x of results.impls[n].rtt.rounds) {
      if (x.status === 'ok') vals.push(x.p50us, x.p99us)
      else if (x.partialP50us) vals.push(x.partialP50us)
    }
  }
  const lo = Math.floor(Math.log10(Math.max(1, Math.min(...vals, 100) / 2)))
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...vals, 1000) * 1.3)))
  const W = 860
  const H = 440
  const M = { l: 70, r: 20, t: 55, b: 80 }
  const o = []
  const y = logFrame(o, {
    W,
    H,
    M,
    lo,
    hi,
    title: 'Round-trip time, ping → pong (log scale; lower is better)',
    sub: subtitle(results) + `, median of ${results.meta.config.ping.repeats} rounds`,
    yLabel: 'round trip',
    tick: (e) => (e >= 6 ? 10 ** (e - 6) + ' s' : e >= 3 ? 10 ** (e - 3) + ' ms' : 10 ** e + ' µs')
  })
  const colors = ['#4e79a7', '#e15759']
  const base = H - M.b
  const gw = (W - M.l - M.r) / Math.max(1, names.length)
  const bw = Math.min(60, gw * 0.35)
  names.forEach((n, gi) => {
    const r = results.impls[n].rtt
    const gx = M.l + gi * gw + (gw - 2 * bw) / 2
    o.push(`<text x="${M.l + gi * gw + gw / 2}" y="${base + 18}" text-anchor="middle" font-weight="bold">${esc(results.impls[n].label)}</text>`);
    ['p50us', 'p99us'].forEach((key, k) => {
      const x = gx + k * bw
      const v = r[key]
      if (v != null) {
        const top = y(v)
        o.push(`<rect x="${x + 2}" y="${top}" width="${bw - 4}" height="${base - top}" fill="${colors[k]}" fill-opacity="0.8"/>`)
        o.push(`<text x="${x + bw / 2}" y="${top - 4}" text-anchor="middle" font-size="10">${esc(fmtUs(v))}</text>`)
      }
      for (const round of r.rounds) {
        if (round.status === 'ok') o.push(`<circle cx="${x + bw / 2}" cy="${y(round[key])}" r="2.5" fill="#222"/>`)
      }
    })
    const bad = r.rounds.filter((x) => x.status !== 'ok')
    if (r.p50us == null && bad.length) {
      const x = bad[0]
      const at = x.partialP50us ? y(x.partialP50us) : base - 30
      o.push(`<text x="${M.l + gi * gw + gw / 2}" y="${at - 4}" text-anchor="middle" font-size="10" fill="#b00">${esc(x.status === 'dnf' ? `DNF after ${x.roundTrips} trips` : x.status)}</text>`)
      if (x.partialP50us) o.push(`<circle cx="${M.l + gi * gw + gw / 2}" cy="${at}" r="4" fill="none" stroke="#b00"/>`)
    }
  })
  legend(o, [{ label: 'p50 (median of rounds)', color: colors[0] }, { label: 'p99 (median of rounds)', color: colors[1] }, { label: 'dots: each round; circle: median of an unfinished run', color: '#fff', dashed: true }], M.l, H - 30, W)
  o.push('</svg>')
  return o.join('\n') + '\n'
}

// Server RSS per idle connection ((RSS(N) − RSS(0)) ÷ N, KB) against N, one
// line per implementation; the client side's per-client figure as a hollow
// marker at its count.
function memory (results) {
  const names = Object.keys(results.impls).filter((n) => results.impls[n].available && results.impls[n].idle && results.impls[n].idle.points)
  const series = names.map((n) => ({ n, pts: results.impls[n].idle.points.filter((p) => p.count > 0 && p.perConnBytes != null), client: results.impls[n].idle.client }))
  const counts = results.meta.config.idle.counts
  const xMax = Math.max(...counts, 1)
  // Small counts can come out negative (the heap after gc moves by more
  // than a few connections take): the axis then goes below 0.
  const ys = [4, 0]
  for (const s of series) {
    for (const p of s.pts) ys.push(p.perConnBytes / 1024)
    if (s.client) ys.push(s.client.perClientBytes / 1024)
  }
  const raw = (Math.max(...ys) - Math.min(...ys)) / 8
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((f) => f * mag).find((v) => v >= raw)
  const yMin = Math.floor(Math.min(...ys) / step) * step
  const yMax = Math.ceil((Math.max(...ys) * 1.05) / step) * step
  const W = 860
  const H = 440
  const M = { l: 70, r: 30, t: 55, b: 80 }
  const pw = W - M.l - M.r
  const ph = H - M.t - M.b
  const x = (v) => M.l + (v / xMax) * pw
  const y = (v) => M.t + ph - ((v - yMin) / (yMax - yMin)) * ph
  const o = []
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`)
  o.push(`<rect width="${W}" height="${H}" fill="#fff"/>`)
  o.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Server memory per idle connection (RSS after gc; lower is better)</text>`)
  o.push(`<text x="${W / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">${esc(subtitle(results) + '; hollow marker: client side, per client in one process')}</text>`)
  for (let v = yMin; v <= yMax + step / 2; v += step) {
    o.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${y(v)}" y2="${y(v)}" stroke="${Math.abs(v) < step / 2 ? '#999' : '#ddd'}"/>`)
    o.push(`<text x="${M.l - 8}" y="${y(v) + 4}" text-anchor="end">${+v.toFixed(3)} KB</text>`)
  }
  for (const c of counts) {
    o.push(`<line x1="${x(c)}" x2="${x(c)}" y1="${M.t + ph}" y2="${M.t + ph + 5}" stroke="#333"/>`)
    o.push(`<text x="${x(c)}" y="${M.t + ph + 18}" text-anchor="middle" font-size="10">${fmtN(c)}</text>`)
  }
  o.push(`<line x1="${M.l}" x2="${M.l}" y1="${M.t}" y2="${M.t + ph}" stroke="#333"/>`)
  o.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${M.t + ph}" y2="${M.t + ph}" stroke="#333"/>`)
  o.push(`<text x="${M.l + pw / 2}" y="${M.t + ph + 36}" text-anchor="middle">idle connections</text>`)
  o.push(`<text transform="translate(18 ${M.t + ph / 2}) rotate(-90)" text-anchor="middle">RSS per connection</text>`)
  series.forEach((s) => {
    const color = colorOf(results, s.n)
    if (s.pts.length) {
      o.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${s.pts.map((p) => `${x(p.count).toFixed(1)},${y(p.perConnBytes / 1024).toFixed(1)}`).join(' ')}"/>`)
      for (const p of s.pts) o.push(`<circle cx="${x(p.count)}" cy="${y(p.perConnBytes / 1024)}" r="3.5" fill="${color}"><title>${esc(`${results.impls[s.n].label}: ${p.count} connections, ${(p.perConnBytes / 1024).toFixed(2)} KB each`)}</title></circle>`)
    }
    if (s.client) o.push(`<circle cx="${x(s.client.count)}" cy="${y(s.client.perClientBytes / 1024)}" r="5" fill="#fff" stroke="${color}" stroke-width="2"><title>${esc(`${results.impls[s.n].label}, client side: ${(s.client.perClientBytes / 1024).toFixed(2)} KB per client`)}</title></circle>`)
  })
  legend(o, series.map((s) => ({ label: results.impls[s.n].label, color: colorOf(results, s.n) })), M.l, H - 22, W)
  o.push('</svg>')
  return o.join('\n') + '\n'
}

module.exports = { throughput, rtt, memory }
