'use strict'
// DEBUG=uhura:* logging (lib/debug.js, src/engine/diag.rs): a server and a
// client run in child processes (fixtures/debug-peer.js) with DEBUG set, and
// their stderr is read back.
//
// - uhura:protocol prints `recv: <message>` / `send: <message>` for every
//   message on the wire, as uhura 0.1.2 does: the same conversation gives
//   the same lines (ids and session ids aside) whether a side is ours or
//   0.1.2, so our client logs what 0.1.2's client logs against the same
//   0.1.2 server, and our server what 0.1.2's server logs.
// - uhura:connection / uhura:reconnect / uhura:session are ours.
// - Without DEBUG nothing is printed.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const path = require('node:path')

const FIXTURE = path.join(__dirname, 'fixtures', 'debug-peer.js')
const TIMEOUT = 15000

function childEnv (debug) {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (k !== 'DEBUG' && !k.startsWith('DEBUG_') && k !== 'NODE_TEST_CONTEXT') env[k] = v
  }
  if (debug != null) env.DEBUG = debug
  return env
}

/** Runs the fixture with `cfg`; resolves { code, stdout, stderr } once it exits. */
function run (cfg, debug, onStdout) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FIXTURE, JSON.stringify(cfg)], {
      env: childEnv(debug),
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${cfg.role} (${cfg.impl}) did not exit within ${TIMEOUT} ms; stderr:\n${stderr}`))
    }, TIMEOUT)
    child.stdout.on('data', (d) => {
      stdout += d
      if (onStdout) onStdout(stdout, child)
    })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/**
 * One conversation: a server process, then a client process connecting to
 * it. `server` / `client` are fixture options (impl, extensions, drop, ...).
 */
async function pair (server, client, debug) {
  let listening
  const at = new Promise((resolve) => { listening = resolve })
  const srv = run({ role: 'server', ...server }, debug, (out) => {
    const m = /@@(\{.*\})\n/.exec(out)
    if (m) listening(JSON.parse(m[1]))
  })
  const where = await Promise.race([at, srv.then((r) => { throw new Error(`server exited early:\n${r.stderr}`) })])
  const cli = await run({ role: 'client', ...where, ...client }, debug)
  const s = await srv
  assert.equal(cli.code, 0, `client failed:\n${cli.stderr}`)
  assert.equal(s.code, 0, `server failed:\n${s.stderr}`)
  return { server: s.stderr, client: cli.stderr }
}

// A debug line starts with the date (debug 4: ISO; debug 0.7, used by
// uhura 0.1.2: toUTCString) and the namespace; util.inspect may continue a
// long message on further lines.
const HEADER = /^(?:\d{4}-\d\d-\d\dT[\d:.]+Z|\w{3}, \d\d \w{3} \d{4} [\d:]+ GMT) (uhura:[a-z]+) (.*)$/

/** The debug records of `stderr`: { ns, text }, each on one line with whitespace collapsed. */
function records (stderr) {
  const out = []
  for (const line of stderr.split('\n')) {
    const m = HEADER.exec(line)
    if (m) out.push({ ns: m[1], text: m[2] })
    else if (out.length > 0 && line.trim() !== '') out[out.length - 1].text += ' ' + line.trim()
    else if (line.trim() !== '') out.push({ ns: null, text: line })
  }
  for (const r of out) r.text = r.text.replace(/\s+/g, ' ').trim()
  return out
}

/** uhura:protocol records as { dir: 'recv' | 'send', msg }, ids and session ids replaced. */
function protocol (stderr) {
  return records(stderr)
    .filter((r) => r.ns === 'uhura:protocol')
    .map((r) => {
      const m = /^(recv|send): (.*)$/.exec(r.text)
      assert.ok(m, `not a recv:/send: line: ${r.text}`)
      const msg = m[2]
        .replace(/id: '[^']*'/g, 'id: <id>')
        .replace(/'ack::[^']*'/g, "'ack::<id>'")
        .replace(/'[A-Za-z0-9]{24}'/g, "'<sid>'")
      return { dir: m[1], msg }
    })
}

const lines = (recs, dir) => recs.filter((r) => r.dir === dir).map((r) => r.msg)

// What a client of either implementation logs in this conversation, in
// order per direction (extensions off: the old handshake).
const CLIENT_SENDS = [
  "[ '_set', {} ]",
  "[ 'start', { objectMode: true, enableAcks: true } ]",
  "{ args: [ 'ack::<id>' ] }",
  "{ args: [ 'ev', 1, 'two' ], id: <id> }",
  "[ '_set', 'k', 'v' ]",
  "{ args: [ 'bye' ], id: <id> }"
]
const CLIENT_RECVS = [
  "[ '_set', 'sessionID', '<sid>' ]",
  "{ args: [ 'connect', { objectMode: true, enableAcks: true } ], id: <id> }",
  "{ args: [ 'hello', 'world' ], id: <id> }",
  "{ args: [ 'ack::<id>' ] }",
  "{ args: [ 'ack::<id>' ] }"
]

test('uhura 0.1.2 logs the conversation as this test expects (reference)', async () => {
  const out = await pair({ impl: 'v0.1.2' }, { impl: 'v0.1.2' }, 'uhura:protocol')
  const c = protocol(out.client)
  assert.deepEqual(lines(c, 'send'), CLIENT_SENDS)
  assert.deepEqual(lines(c, 'recv'), CLIENT_RECVS)
  const s = protocol(out.server)
  assert.deepEqual(lines(s, 'recv'), CLIENT_SENDS)
  assert.deepEqual(lines(s, 'send'), CLIENT_RECVS)
})

test('our client logs what a 0.1.2 client logs, against a 0.1.2 server', async () => {
  const ref = await pair({ impl: 'v0.1.2' }, { impl: 'v0.1.2' }, 'uhura:protocol')
  const ours = await pair({ impl: 'v0.1.2' }, { impl: 'ours', extensions: false }, 'uhura:protocol')
  const [r, o] = [protocol(ref.client), protocol(ours.client)]
  // One known difference on the wire (not in the logging): our client acks
  // every message that carries an id, the server's `connect` too; 0.1.2's
  // client does not (its acks are still off when `connect` arrives).
  const sends = lines(o, 'send')
  assert.equal(sends[2], "{ args: [ 'ack::<id>' ] }")
  sends.splice(2, 1)
  assert.deepEqual(sends, lines(r, 'send'))
  assert.deepEqual(lines(o, 'recv'), lines(r, 'recv'))
  assert.deepEqual(sends, CLIENT_SENDS)
  // The 0.1.2 server saw the same traffic from both clients (and that ack).
  const seen = lines(protocol(ours.server), 'recv')
  assert.equal(seen[2], "{ args: [ 'ack::<id>' ] }")
  seen.splice(2, 1)
  assert.deepEqual(seen, lines(protocol(ref.server), 'recv'))
  assert.deepEqual(lines(protocol(ours.server), 'send'), lines(protocol(ref.server), 'send'))
  // Only the namespace asked for.
  assert.deepEqual(records(ours.client).filter((x) => x.ns !== 'uhura:protocol'), [])
})

test('our server logs what a 0.1.2 server logs, with a 0.1.2 client', async () => {
  const ref = await pair({ impl: 'v0.1.2' }, { impl: 'v0.1.2' }, 'uhura:protocol')
  const ours = await pair({ impl: 'ours' }, { impl: 'v0.1.2' }, 'uhura:protocol')
  const [r, o] = [protocol(ref.server), protocol(ours.server)]
  assert.deepEqual(lines(o, 'recv'), lines(r, 'recv'))
  assert.deepEqual(lines(o, 'send'), lines(r, 'send'))
  assert.deepEqual(lines(o, 'send'), CLIENT_RECVS)
  assert.deepEqual(records(ours.server).filter((x) => x.ns !== 'uhura:protocol'), [])
})

/** Our peers on both sides: the extended handshake, then the same conversation. */
function assertOursBoth (out, label) {
  const start = "[ 'start', { objectMode: true, enableAcks: true, uhura: 2, heartbeat: 15000 } ]"
  // A new session's resume secret is never logged.
  const connect = "{ args: [ 'connect', { objectMode: true, enableAcks: true, uhura: 2, heartbeat: 15000, secret: '<secret>' } ], id: <id> }"
  const c = protocol(out.client)
  const s = protocol(out.server)
  // Our client acks `connect` (0.1.2's does not).
  const sends = ["[ '_set', {} ]", start, "{ args: [ 'ack::<id>' ] }", ...CLIENT_SENDS.slice(2)]
  const recvs = ["[ '_set', 'sessionID', '<sid>' ]", connect, ...CLIENT_RECVS.slice(2)]
  assert.deepEqual(lines(c, 'send'), sends, label)
  assert.deepEqual(lines(c, 'recv'), recvs, label)
  assert.deepEqual(lines(s, 'recv'), sends, label)
  assert.deepEqual(lines(s, 'send'), recvs, label)
  // Wire order on each side: every ack is logged after the message it acknowledges.
  for (const side of [c, s]) {
    const i = side.findIndex((r) => r.msg.startsWith("{ args: [ 'ev'"))
    const j = side.findIndex((r, k) => k > i && r.msg === "{ args: [ 'ack::<id>' ] }")
    assert.ok(i >= 0 && j > i, `${label}: ev, then its ack:\n${side.map((r) => r.dir + ' ' + r.msg).join('\n')}`)
  }
}

test('ours on both sides, on every transport: every message, both ways', async () => {
  for (const transport of ['tcp', 'unix', 'tls', 'factory']) {
    const o = { impl: 'ours', transport }
    const out = await pair(o, o, 'uhura:protocol')
    assertOursBoth(out, transport)
  }
})

test('without DEBUG nothing is printed; enabling at run time needs debug.refresh()', async () => {
  const quiet = await pair({ impl: 'ours' }, { impl: 'ours' }, undefined)
  assert.equal(quiet.server, '')
  assert.equal(quiet.client, '')
  // Other namespaces do not turn ours on.
  const other = await pair({ impl: 'ours' }, { impl: 'ours' }, 'express:*,-uhura:*')
  assert.equal(other.server + other.client, '')
  // require('debug').enable(...) after loading uhura, then Uhura.debug.refresh().
  const later = await pair({ impl: 'ours', enable: 'uhura:protocol' }, { impl: 'ours', enable: 'uhura:protocol' }, undefined)
  assertOursBoth(later, 'enabled at run time')
})

test('DEBUG=uhura:* adds connection, reconnect and session lines', async () => {
  const out = await pair({ impl: 'ours', drop: true }, { impl: 'ours', drop: true }, 'uhura:*')
  const texts = (stderr, ns) => records(stderr).filter((r) => r.ns === ns).map((r) => r.text)
  const expectLines = (got, patterns, label) => {
    for (const p of patterns) assert.ok(got.some((t) => p.test(t)), `${label}: no line matches ${p}:\n${got.join('\n')}`)
  }
  const sid = /session ([A-Za-z0-9]{24}) \(/.exec(texts(out.server, 'uhura:connection').join('\n'))
  assert.ok(sid, out.server)
  const id = sid[1]
  expectLines(texts(out.server, 'uhura:connection'), [
    /^#\d+ \(server #\d+\) accepted from 127\.0\.0\.1:\d+$/,
    new RegExp(`^#\\d+ \\(server #\\d+\\) handshake done: new session ${id} \\(object mode, acks, extensions\\)$`),
    new RegExp(`^#\\d+ \\(server #\\d+\\) handshake done: resumed session ${id} `),
    /^#\d+ \(server #\d+\) closed: destroyed \(or a write failed\)$/,
    /^#\d+ \(server #\d+\) closed: the peer closed$/
  ], 'server uhura:connection')
  expectLines(texts(out.server, 'uhura:session'), [
    new RegExp(`session ${id} saved$`),
    new RegExp(`resuming session ${id}$`),
    new RegExp(`session ${id} loaded$`)
  ], 'server uhura:session')
  expectLines(texts(out.client, 'uhura:connection'), [
    /^#\d+ connected to 127\.0\.0\.1:\d+$/,
    new RegExp(`^#\\d+ handshake done: session ${id} `),
    /^#\d+ closed: the peer closed$/,
    /^#\d+ closed: the peer closed after our end\(\)$/
  ], 'client uhura:connection')
  expectLines(texts(out.client, 'uhura:reconnect'), [
    /^#\d+ reconnect attempt 1 in \d+ ms$/,
    /^#\d+ stopped \(disconnect\(\)\)$/
  ], 'client uhura:reconnect')
  // The protocol lines are there too, and the resumed connection's handshake
  // carries the session back.
  assert.ok(protocol(out.client).some((r) => r.dir === 'send' && r.msg === "[ '_set', { sessionID: '<sid>', k: 'v' } ]"), out.client)
  // Nothing that is not a debug line.
  assert.deepEqual(records(out.server + out.client).filter((r) => r.ns === null), [])
})
