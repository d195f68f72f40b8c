'use strict'
// A fleet of two uhura servers sharing one Redis, and three clients spread
// over them: a `sendTo` from one server reaches a client connected to the
// other; server A streams durable sends and is SIGKILLed mid-stream; its
// clients fail over to server B and get every event A reported persisted,
// once; then a `broadcast` reaches everyone. Exits 0 when all of that held.
//
//   node examples/fleet.js
//
// Needs `redis-server` on PATH (started on a free port in a temporary
// directory), or REDIS_URL pointing at a Redis to use instead. The servers
// are child processes of this one (`node examples/fleet.js server ...`).

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const uhura = require('..')

const HOST = '127.0.0.1'
const log = (who, ...what) => console.log(`[${who}]`.padEnd(10), ...what)

if (process.argv[2] === 'server') runServer(...process.argv.slice(3))
else {
  main().then((ok) => process.exit(ok ? 0 : 1), (err) => {
    console.error(err)
    process.exit(1)
  })
}

// ------------------------------------------------------------ a server

/**
 * One server of the fleet, in a child process: `durable: true`, so each
 * send's callback hears 'persisted' (in Redis) and then 'acked'. Every new
 * session gets a stream of numbered `news`; each persisted one is reported
 * on stdout as a JSON line. Commands arrive on stdin as JSON lines.
 */
function runServer (name, redisUrl, port) {
  const out = (msg) => process.stdout.write(JSON.stringify(msg) + '\n')
  const server = uhura.createServer({ store: uhura.redisStore({ url: redisUrl }), durable: true }, (conn, reconnect) => {
    const sid = conn.sessionID
    out({ event: 'connection', sid, resumed: !!reconnect })
    if (reconnect) return
    let n = 0
    const timer = setInterval(() => {
      const i = ++n
      conn.send('news', i, (err, stage) => {
        if (!err && stage === 'persisted') out({ event: 'persisted', sid, n: i })
      })
      if (n === 300) clearInterval(timer)
    }, 5)
    conn.on('disconnect', () => clearInterval(timer))
  })
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const cmd = JSON.parse(line)
    if (cmd.sendTo) sendTo(cmd.sendTo, 20)
    if (cmd.broadcast) server.broadcast('announcement', cmd.broadcast, (err) => out({ event: 'broadcast', err: err && err.message }))
  })
  // A session just made may not be in Redis yet (its first save is on its
  // way), and sendTo refuses sessions the store does not know: try again.
  function sendTo (sid, tries) {
    server.sendTo(sid, 'dm', `hello from server ${name}`, (err) => {
      if (err && err.code === 'ERR_UHURA_NO_SESSION' && tries > 1) setTimeout(sendTo, 50, sid, tries - 1)
      else out({ event: 'sentTo', sid, err: err && err.message })
    })
  }
  server.listen(Number(port), HOST, () => out({ event: 'listening' }))
}

// ------------------------------------------------------------ the story

async function main () {
  const redis = await startRedis()
  if (!redis) return true
  const children = []
  try {
    const A = await startServer('A', redis.url, children)
    const B = await startServer('B', redis.url, children)
    log('fleet', `servers A (port ${A.port}) and B (port ${B.port}) share ${redis.url}`)

    // alice and bob try A first, carol tries B first; all fail over to the other.
    const order = { alice: [A, B], bob: [A, B], carol: [B, A] }
    const clients = {}
    for (const [name, servers] of Object.entries(order)) clients[name] = await startClient(name, servers)
    for (const c of Object.values(clients)) log(c.name, `connected to server ${c.server()}, session ${c.sid.slice(0, 8)}…`)

    // 1. sendTo across servers: B reaches alice, who is connected to A.
    await waitFor(() => A.connections.has(clients.alice.sid) && B.connections.has(clients.carol.sid), 'every session on its server')
    B.command({ sendTo: clients.alice.sid })
    await waitFor(() => clients.alice.dms.length === 1, 'alice to get the dm')
    log('alice', `got "${clients.alice.dms[0]}" while connected to server ${clients.alice.server()} (sendTo across servers)`)

    // 2. A streams durable news to alice and bob; SIGKILL it mid-stream.
    await waitFor(() => (A.persisted.get(clients.alice.sid) || []).length >= 40, 'A to persist some news', 10000)
    A.child.kill('SIGKILL')
    await new Promise((resolve) => A.child.once('exit', resolve))
    log('fleet', 'server A was SIGKILLed in the middle of its stream')

    // 3. alice and bob fail over to B, which delivers what A left in Redis.
    let ok = true
    for (const c of [clients.alice, clients.bob]) {
      const persisted = A.persisted.get(c.sid) || []
      await waitFor(() => c.server() === 'B' && persisted.every((n) => c.news.has(n)), `${c.name} to get every persisted event from B`, 10000)
      const lost = persisted.filter((n) => !c.news.has(n)).length
      const dup = [...c.news.values()].filter((k) => k > 1).length
      log(c.name, `failed over to server B: ${persisted.length} news persisted by A, all ${persisted.length - lost} received, ${lost} lost, ${dup} duplicated (${c.news.size} received in all)`)
      if (lost || dup) ok = false
    }

    // 4. A broadcast from B reaches every session of the fleet.
    B.command({ broadcast: 'the fleet survived' })
    await waitFor(() => Object.values(clients).every((c) => c.announcements.length === 1), 'everyone to hear the broadcast')
    for (const c of Object.values(clients)) log(c.name, `heard the broadcast: "${c.announcements[0]}"`)

    for (const c of Object.values(clients)) c.client.disconnect()
    log('fleet', ok ? 'done: nothing lost, nothing duplicated' : 'FAILED: events were lost or duplicated')
    return ok
  } finally {
    for (const child of children) child.kill('SIGKILL')
    await redis.stop()
  }
}

/** A client of the fleet that tallies what it gets; resolves once connected. */
function startClient (name, servers) {
  const client = uhura.createClient({ servers: servers.map((s) => ({ host: HOST, port: s.port })) })
  client.autoReconnect(20, 200)
  const c = { name, client, sid: null, news: new Map(), dms: [], announcements: [] }
  c.server = () => {
    const port = client.socket && client.socket.remotePort
    return servers.find((s) => s.port === port)?.name || '?'
  }
  client.on('news', (n) => c.news.set(n, (c.news.get(n) || 0) + 1))
  client.on('dm', (text) => c.dms.push(text))
  client.on('announcement', (text) => c.announcements.push(text))
  client.on('reconnecting', () => {})
  client.on('error', () => {})
  return new Promise((resolve) => client.once('connect', () => {
    c.sid = client.get('sessionID')
    resolve(c)
  }))
}

/** Starts `node examples/fleet.js server <name> ...` on a free port. */
async function startServer (name, redisUrl, children) {
  const port = await freePort()
  const child = spawn(process.execPath, [__filename, 'server', name, redisUrl, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] })
  children.push(child)
  const srv = { name, port, child, persisted: new Map(), connections: new Set(), command: (c) => child.stdin.write(JSON.stringify(c) + '\n') }
  child.stdin.on('error', () => {})
  const lines = readline.createInterface({ input: child.stdout })
  await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`server ${name} exited (${code}) before listening`)))
    lines.on('line', (line) => {
      const msg = JSON.parse(line)
      if (msg.event === 'listening') resolve()
      if (msg.event === 'connection') {
        srv.connections.add(msg.sid)
        if (msg.resumed) log(`server ${name}`, `resumed session ${msg.sid.slice(0, 8)}… from Redis`)
      }
      if (msg.event === 'persisted') {
        if (!srv.persisted.has(msg.sid)) srv.persisted.set(msg.sid, [])
        srv.persisted.get(msg.sid).push(msg.n)
      }
      if (msg.event === 'sentTo') log(`server ${name}`, `sendTo ${msg.sid.slice(0, 8)}…: ${msg.err || 'queued in Redis, waking its server'}`)
    })
  })
  child.removeAllListeners('exit')
  return srv
}

/** redis-server on a free port in a temporary directory, or REDIS_URL; null if neither. */
async function startRedis () {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: async () => {} }
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uhura-fleet-'))
  const proc = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  const missing = await new Promise((resolve) => {
    proc.once('error', () => resolve(true))
    waitFor(() => canConnect(port), 'redis-server to listen', 5000).then(() => resolve(false), () => resolve(true))
  })
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL')
      await new Promise((resolve) => proc.once('exit', resolve))
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
  if (missing) {
    await stop().catch(() => {})
    log('fleet', 'redis-server is not on PATH (and REDIS_URL is not set): nothing to show')
    return null
  }
  log('redis', `redis-server on ${HOST}:${port} (data in ${dir})`)
  return { url: `redis://${HOST}:${port}`, stop }
}

/** Whether something accepts connections on `port`. */
function canConnect (port) {
  return new Promise((resolve) => {
    const s = net.connect(port, HOST)
    s.on('connect', () => { s.destroy(); resolve(true) })
    s.on('error', () => resolve(false))
  })
}

function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, HOST, () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
    s.on('error', reject)
  })
}

/** Polls `pred` (which may return a Promise) every 10 ms for at most `ms`. */
function waitFor (pred, what, ms = 5000) {
  return new Promise((resolve, reject) => {
    const until = Date.now() + ms
    const poll = async () => {
      if (await pred()) return resolve()
      if (Date.now() > until) return reject(new Error(`timed out waiting for ${what}`))
      setTimeout(poll, 10)
    }
    poll()
  })
}
