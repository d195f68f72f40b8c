'use strict'
// The admin dashboard (lib/admin/dashboard.html), in the browser: one
// EventSource on /events, a sample per interval; rates are the differences
// of the counters between samples. No build step, no other dependency than
// uPlot, served from the package.
/* global uPlot */

;(function () {
  const WINDOW = 300 // seconds of history on the chart
  const MS = 1e3 // per second
  const token = new URLSearchParams(location.search).get('token')
  const $ = (id) => document.getElementById(id)
  const num = (n) => n == null ? '–' : n >= 1e9 ? (n / 1e9).toFixed(1) + 'G' : n >= 1e6 ? (n / 1e6).toFixed(1) + 'M' : n >= 1e4 ? (n / 1e3).toFixed(1) + 'k' : String(Math.round(n * 10) / 10)
  const ago = (ms, now) => ms == null ? '–' : Math.max(0, Math.round((now - ms) / MS)) + ' s ago'

  // Columns: time (s), events/s in, events/s out, connections.
  const data = [[], [], [], []]
  let previous = null
  let sortKey = 'id'
  let sortDesc = false
  let lastConnections = []
  let lastNow = Date.now()

  const Chart = uPlot
  const chart = new Chart({
    width: Math.max(320, $('chart').clientWidth || 800),
    height: 220,
    series: [
      {},
      { label: 'events/s in', stroke: '#2f7ed8', width: 2 },
      { label: 'events/s out', stroke: '#8bbc21', width: 2 },
      { label: 'connections', stroke: '#910000', width: 1.5, scale: 'conn' }
    ],
    axes: [{}, { label: 'events/s' }, { side: 1, scale: 'conn', label: 'connections', grid: { show: false } }],
    scales: { conn: { range: (u, min, max) => [0, Math.max(1, max)] } }
  }, data, $('chart'))
  window.addEventListener('resize', () => chart.setSize({ width: Math.max(320, $('chart').clientWidth), height: 220 }))

  function onSample (s) {
    const m = s.metrics
    if (!m) return
    lastNow = s.now
    const t = s.now / MS
    let rin = 0
    let rout = 0
    let rbytes = 0
    if (previous) {
      const dt = Math.max(0.001, (s.now - previous.now) / MS)
      rin = (m.events.in - previous.metrics.events.in) / dt
      rout = (m.events.out - previous.metrics.events.out) / dt
      rbytes = (m.bytes.in + m.bytes.out - previous.metrics.bytes.in - previous.metrics.bytes.out) / dt
    }
    previous = s
    data[0].push(t)
    data[1].push(rin)
    data[2].push(rout)
    data[3].push(m.connections.current)
    while (data[0].length > 0 && data[0][0] < t - WINDOW) data.forEach((col) => col.shift())
    chart.setData(data)
    window.uhuraDashboard.points = data[0].length

    $('connections-current').textContent = m.connections.current
    $('events-in-rate').textContent = num(rin)
    $('events-out-rate').textContent = num(rout)
    $('bytes-rate').textContent = num(rbytes)
    $('pending-events').textContent = num(m.pending.events)
    $('connections-accepted').textContent = `${num(m.connections.accepted)} (${num(m.connections.refused)})`
    $('sessions').textContent = `${m.sessions.stored == null ? '–' : num(m.sessions.stored)} (${num(m.sessions.retained)})`
    $('errors-total').textContent = num(Object.values(m.errors).reduce((a, b) => a + b, 0))
    lastConnections = s.connections
    $('connections-note').textContent = s.connectionsTotal > s.connections.length ? `(first ${s.connections.length} of ${s.connectionsTotal})` : ''
    renderTable()
    renderErrors(m.recentErrors)
  }

  function renderTable () {
    const rows = lastConnections.slice().sort((a, b) => {
      const x = a[sortKey]
      const y = b[sortKey]
      const c = x === y ? 0 : x == null ? -1 : y == null ? 1 : x < y ? -1 : 1
      return sortDesc ? -c : c
    })
    const body = document.querySelector('#connections tbody')
    body.replaceChildren(...rows.map((c) => {
      const tr = document.createElement('tr')
      const cells = [c.id, c.remoteAddress == null ? '–' : `${c.remoteAddress}:${c.remotePort}`, c.session || '–', c.mode || '–',
        ago(c.connectedSince, lastNow), ago(c.lastActivity, lastNow), num(c.pendingEvents), num(c.eventsIn), num(c.eventsOut),
        num(c.bytesIn), num(c.bytesOut)]
      cells.forEach((v, i) => {
        const td = document.createElement('td')
        if (i >= 1 && i <= 3) td.className = 'l'
        td.textContent = v
        tr.appendChild(td)
      })
      return tr
    }))
    document.querySelectorAll('#connections th').forEach((th) => {
      th.classList.toggle('sorted', th.dataset.key === sortKey)
      th.dataset.arrow = sortDesc ? ' ▼' : ' ▲'
    })
  }

  function renderErrors (errors) {
    const list = $('errors')
    if (!errors || errors.length === 0) {
      list.innerHTML = '<li class="empty">none</li>'
      return
    }
    list.replaceChildren(...errors.slice().reverse().map((e) => {
      const li = document.createElement('li')
      li.textContent = `${new Date(e.at).toLocaleTimeString()} #${e.connection} ${e.code}: ${e.message}`
      return li
    }))
  }

  document.querySelectorAll('#connections th').forEach((th) => th.addEventListener('click', () => {
    if (sortKey === th.dataset.key) sortDesc = !sortDesc
    else {
      sortKey = th.dataset.key
      sortDesc = false
    }
    renderTable()
  }))

  window.uhuraDashboard = { points: 0, samples: 0 }
  const source = new EventSource('events' + (token ? '?token=' + encodeURIComponent(token) : ''))
  source.onopen = () => { $('status').textContent = 'live' }
  source.onerror = () => { $('status').textContent = 'disconnected, retrying…' }
  source.onmessage = (e) => {
    window.uhuraDashboard.samples++
    onSample(JSON.parse(e.data))
  }
})()
