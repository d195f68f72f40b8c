'use strict'
// The admin endpoint (server.listenAdmin, lib/admin/): its HTTP routes,
// paging and sorting, the token, the loopback default, closing with the
// server; and `uhura stats` (bin/uhura.js) against it, in a child process.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const net = require('node:net')
const path = require('node:path')
const Uhura = require('..')
const { HOST, waitFor, waitUntil, installExitWatchdog, spawnNode } = require('./helpers')

installExitWatchdog()

const T = { timeout: 20000 }
const BIN = path.join(__dirname, '..', 'bin', 'uhura.js')

/** A server with `n` clients that sent `events` events each, and its admin endpoint. */
async function setup (t, { n = 3, events = 2, admin = {} } = {}) {
  const conns = []
  const server = Uhura.createServer((conn) => {
    conns.push(conn)
    conn.on('ev', () => {})
  })
  await new Promise((resolve) => server.listen(0, HOST, resolve))
  const clients = []
  for (let i = 0; i < n; i++) {
    const c = Uhura.createClient({ port: server.address().port, host: HOST })
    clients.push(c)
    await waitFor(c, 'connect', 5000)
    // Client i sends i * events events, so the connections differ.
    await Promise.all(Array.from({ length: i * events }, () => new Promise((resolve) => c.send('ev', 'x', resolve))))
  }
  await waitUntil(() => server.metrics().events.in === events * n * (n - 1) / 2, 5000, 'every event')
  const endpoint = await new Promise((resolve, reject) => {
    const a = server.listenAdmin({ port: 0, ...admin }, (err) => err ? reject(err) : resolve(a))
  })
  t.after(async () => {
    for (const c of clients) c.disconnect()
    await new Promise((resolve) => server.close(() => resolve()))
  })
  const base = `http://127.0.0.1:${endpoint.address().port}`
  return { server, clients, conns, endpoint, base }
}

/** GET `url`: { status, headers, body (parsed when JSON) }. */
function get (url, headers = {}) {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => {
        const json = /json/.test(res.headers['content-type'] || '')
        resolve({ status: res.statusCode, headers: res.headers, body: json ? JSON.parse(body) : body })
      })
    }).on('error', reject)
  })
}

describe('server.listenAdmin()', () => {
  it('serves /metrics as Prometheus text, and as JSON with ?format=json', T, async (t) => {
    const { base, server } = await setup(t)
    const r = await get(`${base}/metrics`)
    assert.equal(r.status, 200)
    assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
    assert.match(r.body, /^uhura_connections 3$/m)
    assert.match(r.body, /^uhura_events_received_total 6$/m)
    const j = await get(`${base}/metrics?format=json`)
    assert.equal(j.status, 200)
    assert.deepEqual(j.body.connections, server.metrics().connections)
  })

  it('/connections and /sessions: paging with offset and limit, sorting with sort and order', T, async (t) => {
    const { base, conns } = await setup(t, { n: 4 })
    const all = await get(`${base}/connections`)
    assert.equal(all.status, 200)
    assert.equal(all.body.total, 4)
    assert.deepEqual(all.body.connections.map((c) => c.id), conns.map((c) => c._h).sort((a, b) => a - b))
    const byEvents = await get(`${base}/connections?sort=eventsIn&order=desc&offset=1&limit=2`)
    assert.equal(byEvents.body.total, 4)
    assert.equal(byEvents.body.offset, 1)
    assert.equal(byEvents.body.limit, 2)
    assert.deepEqual(byEvents.body.connections.map((c) => c.eventsIn), [4, 2], 'the 2nd and 3rd most events in')
    const sessions = await get(`${base}/sessions?limit=3`)
    assert.equal(sessions.body.total, 4)
    assert.equal(sessions.body.sessions.length, 3)
    for (const s of sessions.body.sessions) assert.equal(s.state, 'connected')
    assert.equal((await get(`${base}/connections?sort=nope`)).status, 400)
    assert.equal((await get(`${base}/connections?order=up`)).status, 400)
    assert.equal((await get(`${base}/connections?limit=-1`)).status, 400)
    assert.equal((await get(`${base}/nothing`)).status, 404)
  })

  it('with a token: 401 without it or with a wrong one; Bearer header or ?token= accepted', T, async (t) => {
    const { base } = await setup(t, { n: 1, admin: { token: 's3cret' } })
    for (const p of ['/metrics', '/connections', '/sessions', '/', '/events']) {
      const r = await get(base + p)
      assert.equal(r.status, 401, `${p} without the token`)
      assert.equal(r.headers['www-authenticate'], 'Bearer')
    }
    assert.equal((await get(`${base}/metrics`, { Authorization: 'Bearer wrong' })).status, 401)
    assert.equal((await get(`${base}/metrics?token=wrong`)).status, 401)
    assert.equal((await get(`${base}/metrics`, { Authorization: 'Bearer s3cret' })).status, 200)
    // ?token= only for the page and its stream (an EventSource sets no headers).
    assert.equal((await get(`${base}/?token=s3cret`)).status, 200)
    assert.equal((await get(`${base}/connections?token=s3cret`)).status, 401)
    // The dashboard's static files hold no data and load without it.
    assert.equal((await get(`${base}/uplot.min.js`)).status, 200)
  })

  it('binds 127.0.0.1 by default; serves the dashboard, its script and uPlot from the package', T, async (t) => {
    const { endpoint, base } = await setup(t, { n: 0 })
    assert.equal(endpoint.address().address, '127.0.0.1')
    const page = await get(`${base}/`)
    assert.equal(page.status, 200)
    assert.match(page.headers['content-type'], /^text\/html/)
    assert.match(page.body, /uplot\.min\.js/)
    const js = await get(`${base}/dashboard.js`)
    assert.match(js.headers['content-type'], /^text\/javascript/)
    const uplot = await get(`${base}/uplot.min.js`)
    assert.match(uplot.body, /uPlot/)
    assert.match((await get(`${base}/uplot.min.css`)).headers['content-type'], /^text\/css/)
  })

  it('/events streams samples; closing the server closes the endpoint and ends the stream', T, async (t) => {
    const { server, endpoint, base } = await setup(t, { n: 1, admin: { interval: 50 } })
    const samples = []
    let ended = false
    await new Promise((resolve, reject) => {
      http.get(`${base}/events`, (res) => {
        assert.equal(res.headers['content-type'], 'text/event-stream')
        let buf = ''
        res.setEncoding('utf8')
        res.on('data', (d) => {
          buf += d
          let i
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i)
            buf = buf.slice(i + 2)
            if (block.startsWith('data: ')) samples.push(JSON.parse(block.slice(6)))
          }
          if (samples.length >= 3) resolve()
        })
        res.on('end', () => { ended = true })
      }).on('error', reject)
    })
    assert.equal(samples[0].metrics.connections.current, 1)
    assert.equal(samples[0].connections.length, 1)
    assert.ok(samples[2].now > samples[0].now)
    const closed = waitFor(endpoint, 'close', 5000)
    server.close()
    await closed
    await waitUntil(() => ended, 5000, 'the event stream to end')
    await assert.rejects(get(`${base}/metrics`), /ECONNREFUSED/)
  })

  it('rejects bad options; cb gets a listen error', T, async (t) => {
    const { server, endpoint } = await setup(t, { n: 0 })
    assert.throws(() => server.listenAdmin({ port: 0 }), /already called/)
    endpoint.close()
    await waitFor(endpoint, 'close', 5000)
    assert.throws(() => server.listenAdmin({ port: 0, token: '' }), /token/)
    assert.throws(() => server.listenAdmin(null), /listenAdmin/)
    const busy = http.createServer()
    await new Promise((resolve) => busy.listen(0, '127.0.0.1', resolve))
    t.after(() => busy.close())
    const err = await new Promise((resolve) => server.listenAdmin({ port: busy.address().port }, resolve))
    assert.equal(err.code, 'EADDRINUSE')
    // A failed listen leaves no endpoint behind: listenAdmin can be called again.
    const again = await new Promise((resolve, reject) => {
      const a = server.listenAdmin({ port: 0 }, (e) => e ? reject(e) : resolve(a))
    })
    t.after(() => again.close())
    assert.equal(typeof again.address().port, 'number')
    // Beyond loopback, session ids must not be served without a token.
    again.close()
    await waitFor(again, 'close', 5000)
    assert.throws(() => server.listenAdmin({ port: 0, host: '0.0.0.0' }), /token is required/)
  })

  it('a request target URL cannot read gets 400, and the process lives on', T, async (t) => {
    const { base, endpoint } = await setup(t, { n: 0 })
    const status = await new Promise((resolve, reject) => {
      const s = net.connect(endpoint.address().port, '127.0.0.1', () => s.write('GET //[ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'))
      let text = ''
      s.setEncoding('utf8').on('data', (d) => { text += d }).on('end', () => resolve(text.split('\r\n')[0])).on('error', reject)
    })
    assert.equal(status, 'HTTP/1.1 400 Bad Request')
    assert.equal((await get(`${base}/metrics`)).status, 200, 'still serving')
  })

  it('without a token, a host name other than loopback (DNS rebinding) gets 403', T, async (t) => {
    const { base } = await setup(t, { n: 0 })
    assert.equal((await get(`${base}/sessions`, { Host: 'attacker.example' })).status, 403)
    assert.equal((await get(`${base}/sessions`, { Host: 'localhost:1234' })).status, 200)
    const r = await get(`${base}/metrics`)
    assert.equal(r.headers['x-content-type-options'], 'nosniff')
    assert.equal(r.headers['referrer-policy'], 'no-referrer')
  })
})

describe('uhura stats (bin/uhura.js)', () => {
  it('--json: one JSON object with the metrics, exit code 0', T, async (t) => {
    const { base } = await setup(t, { n: 2, admin: { token: 'tok' } })
    const p = spawnNode(t, [BIN, 'stats', `${base}/`, '--json', '--token', 'tok'], { name: 'uhura stats' })
    const { code } = await p.exited
    assert.equal(code, 0, p.err())
    const lines = p.lines()
    assert.equal(lines.length, 1)
    const m = JSON.parse(lines[0])
    assert.deepEqual(m.connections, { current: 2, accepted: 2, refused: 0 })
    assert.equal(m.events.in, 2)
    assert.match(m.time, /^\d{4}-\d\d-\d\dT/)
  })

  it('human output: aligned labelled rows; --watch repeats', T, async (t) => {
    const { base } = await setup(t, { n: 1 })
    const once = spawnNode(t, [BIN, 'stats', base], { name: 'uhura stats' })
    assert.equal((await once.exited).code, 0, once.err())
    const rows = once.lines()
    assert.match(rows[0], /^connections +1 open, 1 accepted, 0 refused$/)
    const valueColumn = rows[0].indexOf('1 open')
    for (const r of rows) assert.match(r.slice(valueColumn - 2, valueColumn), /^ {2}$/, `aligned: ${r}`)
    const watch = spawnNode(t, [BIN, 'stats', base, '--watch', '--interval', '100', '--json'], { name: 'uhura stats --watch' })
    await waitUntil(() => watch.lines().length >= 3, 5000, 'three samples')
    assert.ok(watch.alive())
    await watch.kill('SIGTERM')
  })

  it('exit code 1 for an unreachable URL or a wrong token, 2 for usage errors', T, async (t) => {
    const { base } = await setup(t, { n: 0, admin: { token: 'tok' } })
    const unreachable = spawnNode(t, [BIN, 'stats', 'http://127.0.0.1:1/', '--json'], { name: 'unreachable' })
    assert.equal((await unreachable.exited).code, 1)
    assert.match(unreachable.err(), /ECONNREFUSED/)
    const wrong = spawnNode(t, [BIN, 'stats', base, '--token', 'nope'], { name: 'wrong token' })
    assert.equal((await wrong.exited).code, 1)
    assert.match(wrong.err(), /401/)
    for (const args of [[], ['not a url'], [base, '--bogus'], [base, '--watch', '--interval', '1']]) {
      const p = spawnNode(t, [BIN, 'stats', ...args], { name: `uhura stats ${args.join(' ')}` })
      assert.equal((await p.exited).code, 2, `usage error: ${args.join(' ')}: ${p.err()}`)
    }
  })
})
