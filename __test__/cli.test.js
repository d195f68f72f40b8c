'use strict'
// The `uhura` command line (bin/uhura.js, lib/cli/): each command run as a
// child process, end to end over 127.0.0.1, against our peers and those of
// the published uhura 0.1.2. Records are read from --json output (one object
// per line); a few checks read the human output.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const {
  HOST, ROOT, SESSION_ID_RE, useResources, waitFor, waitUntil, freePort, spawnNode, installExitWatchdog,
} = require('./helpers')

installExitWatchdog()

const BIN = path.join(ROOT, 'bin', 'uhura.js')
const TEST_OPTS = { timeout: 30000 }
const IMPLS = ['ours', 'v0.1.2']

/** `uhura ...args` as a child process (killed after the test). */
function uhura (t, args, name = `uhura ${args[0]}`) {
  const child = spawnNode(t, [BIN, ...args], { name })
  /** The --json records printed so far. */
  child.records = () => child.lines().map((l) => JSON.parse(l))
  /** Waits for a record that `pred` accepts, and returns it. */
  child.waitRecord = async (pred, ms = 10000) => {
    let found
    await waitUntil(() => (found = child.records().find(pred)) !== undefined, ms,
      `${name}: a record to match ${pred} (stdout: ${JSON.stringify(child.out().slice(-600))}, stderr: ${JSON.stringify(child.err().slice(-400))})`)
    return found
  }
  return child
}

/** Runs `uhura ...args` to its end: { code, records, out, err }. */
async function run (t, args, ms = 15000) {
  const child = uhura(t, args)
  const { code } = await waitWithin(child.exited, ms, `uhura ${args.join(' ')} to exit`)
  return { code, out: child.out(), err: child.err(), records: code === 2 ? [] : safeRecords(child) }
}

function safeRecords (child) {
  try {
    return child.records()
  } catch (_) {
    return []
  }
}

function waitWithin (promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms) }),
  ]).finally(() => clearTimeout(timer))
}

/** Starts a long-running command with --json and returns it and the port it printed. */
async function listening (t, args) {
  const child = uhura(t, [...args, '--json'])
  const rec = await child.waitRecord((r) => r.type === 'listening')
  assert.equal(rec.host, HOST)
  return { child, port: rec.port }
}

/** A server of `impl` that answers `ping` with `pong` and the same arguments. */
function pingServer (r, impl) {
  return r.startServer(impl, {
    onConnection: (conn) => conn.on('ping', (...args) => conn.send('pong', ...args)),
  })
}

describe('uhura: usage', () => {
  it('usage errors exit 2, --help and --version exit 0', TEST_OPTS, async (t) => {
    for (const args of [
      [],
      ['nosuchcommand'],
      ['listen', '--nosuchoption'],
      ['listen', 'notaport'],
      ['send'],
      ['send', 'nohostport', 'ev'],
      ['send', '127.0.0.1:1', 'ev', '--count', '0'],
      ['listen', '--reply', 'ping=notjson'],
      ['listen', '--tls-key', 'k.pem'],
      ['bench', '127.0.0.1:1', '--events', '-3'],
    ]) {
      const { code, err } = await run(t, args)
      assert.equal(code, 2, `uhura ${args.join(' ')}: exit 2 (stderr: ${err})`)
      assert.match(err, /error|Usage/, `uhura ${args.join(' ')} says why`)
    }
    const help = await run(t, ['--help'])
    assert.equal(help.code, 0)
    for (const command of ['listen', 'send', 'sub', 'tap', 'bench']) assert.match(help.out, new RegExp(`\\b${command}\\b`))
    const version = await run(t, ['--version'])
    assert.equal(version.code, 0)
    assert.equal(version.out.trim(), require('../package.json').version)
  })
})

describe('uhura listen', () => {
  for (const impl of IMPLS) {
    it(`prints a ${impl} client's handshake, events, _set, acks and disconnect; --reply and --echo answer`, TEST_OPTS, async (t) => {
      const r = useResources(t)
      const { child, port } = await listening(t, ['listen', '0', '--echo', '--reply', 'ping=["pong",1,{"a":"é"}]'])
      const client = await r.connectClient(impl, port)
      const session = client.get('sessionID')
      assert.match(session, SESSION_ID_RE)
      const pong = waitFor(client, 'pong', 5000)
      const echoed = waitFor(client, 'hello', 5000)
      client.set('user', 'alice')
      client.send('ping', 'x', 2)
      client.send('hello', { nested: [1, null] }, '😀')
      assert.deepEqual(await pong, [1, { a: 'é' }])
      assert.deepEqual(await echoed, [{ nested: [1, null] }, '😀'])

      const hs = await child.waitRecord((r) => r.type === 'handshake')
      assert.equal(hs.session, session)
      assert.equal(hs.resumed, false)
      assert.equal(hs.enableAcks, true)
      assert.match(hs.peer, /^127\.0\.0\.1:\d+$/)
      assert.equal(hs.peer, `127.0.0.1:${client.socket.localPort}`)
      assert.ok(child.records().some((r) => r.type === 'connection' && r.peer === hs.peer))
      const ping = await child.waitRecord((r) => r.type === 'event' && r.event === 'ping')
      assert.deepEqual(ping.args, ['x', 2])
      assert.equal(ping.peer, hs.peer)
      const set = await child.waitRecord((r) => r.type === 'set')
      assert.deepEqual([set.key, set.value], ['user', 'alice'])
      await child.waitRecord((r) => r.type === 'sent' && r.event === 'pong')
      await child.waitRecord((r) => r.type === 'sent' && r.event === 'hello')
      // Both clients ack what the server sends (acks were negotiated).
      const ack = await child.waitRecord((r) => r.type === 'ack' && r.event === 'pong')
      assert.ok(ack.ms >= 0)
      await child.waitRecord((r) => r.type === 'ack' && r.event === 'hello')

      client.socket.destroy()
      await child.waitRecord((r) => r.type === 'disconnect' && r.session === session)
      for (const rec of child.records()) assert.match(rec.time, /^\d{4}-\d\d-\d\dT/)
      // Interrupted, it stops cleanly.
      assert.equal((await child.kill('SIGTERM')).code, 0)
    })
  }

  it('--tls-key/--tls-cert serve TLS; send --tls-ca connects to it', TEST_OPTS, async (t) => {
    const fixture = (name) => path.join(__dirname, 'fixtures', name)
    const { child, port } = await listening(t, ['listen', '0', '--tls-key', fixture('server-key.pem'),
      '--tls-cert', fixture('server-cert.pem'), '--reply', 'ping=["pong"]'])
    assert.equal(child.records()[0].tls, true)
    const { code, records, err } = await run(t, ['send', `${HOST}:${port}`, 'ping', '--wait', 'pong', '--tls-ca', fixture('ca-cert.pem'), '--json'])
    assert.equal(code, 0, err)
    assert.ok(records.some((r) => r.type === 'reply' && r.event === 'pong'))
    await child.waitRecord((r) => r.type === 'event' && r.event === 'ping')
  })

  it('human output: timestamped, aligned lines with the peer address', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const child = uhura(t, ['listen', '0'])
    await child.waitOut(/listening/)
    const port = Number(/on 127\.0\.0\.1:(\d+)/.exec(child.out())[1])
    const client = await r.connectClient('ours', port)
    client.send('ping', 1)
    await child.waitOut(/event .* ping 1/)
    const lines = child.lines()
    assert.match(lines[0], /^\d\d:\d\d:\d\d\.\d{3} listening +on 127\.0\.0\.1:\d+$/)
    const peer = `127.0.0.1:${client.socket.localPort}`
    const handshake = lines.find((l) => / handshake /.test(l))
    assert.ok(handshake.includes(`${peer}`) && handshake.includes(`new session ${client.get('sessionID')}`), handshake)
    const event = lines.find((l) => / event /.test(l))
    // The detail column starts at the same offset on every line.
    assert.equal(event.indexOf('ping 1'), handshake.indexOf('new session'))
    assert.ok(!/\x1b\[/.test(child.out()), 'no colour when stdout is not a terminal') // eslint-disable-line no-control-regex
  })
})

describe('uhura send', () => {
  for (const impl of IMPLS) {
    it(`to a ${impl} server: sets the session, sends, waits for acks and replies (exit 0)`, TEST_OPTS, async (t) => {
      const r = useResources(t)
      const srv = await pingServer(r, impl)
      const got = []
      srv.events.on('connection', ({ conn }) => conn.on('ping', (...args) => got.push({ args, user: conn.get('user') })))
      const { code, records, err } = await run(t, ['send', `${HOST}:${srv.port}`, 'ping', '1', '"a"', 'text', '{"k":[true]}',
        '--count', '2', '--session', 'user=alice', '--wait', 'pong', '--json'])
      assert.equal(code, 0, err)
      const connected = records.find((r) => r.type === 'connected')
      assert.equal(connected.acks, true, 'our client and the server negotiated acks')
      assert.match(connected.session, SESSION_ID_RE)
      assert.deepEqual(records.filter((r) => r.type === 'ack').map((r) => r.n), [1, 2])
      const replies = records.filter((r) => r.type === 'reply')
      assert.equal(replies.length, 2)
      assert.deepEqual(replies[0].args, [1, 'a', 'text', { k: [true] }])
      const done = records.find((r) => r.type === 'done')
      assert.deepEqual([done.sent, done.acked, done.replies], [2, 2, 2])
      assert.deepEqual(got.map((g) => g.args), [[1, 'a', 'text', { k: [true] }], [1, 'a', 'text', { k: [true] }]])
      assert.equal(got[0].user, 'alice')
    })

    it(`to a ${impl} server: a reply that never comes times out (exit 1)`, TEST_OPTS, async (t) => {
      const r = useResources(t)
      const srv = await pingServer(r, impl)
      const { code, records, err } = await run(t, ['send', `${HOST}:${srv.port}`, 'ping', '--wait', 'never', '--timeout', '500', '--json'])
      assert.equal(code, 1)
      assert.ok(records.some((r) => r.type === 'ack'), 'the event itself was acked')
      assert.match(records.find((r) => r.type === 'timeout').message, /timed out after 500 ms waiting for 1 never/)
      assert.match(err, /timed out/)
    })
  }

  it('to a 0.0.10 server (no acks): the events are reported written, the reply still awaited', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await pingServer(r, 'v0.0.10')
    const { code, records, err } = await run(t, ['send', `${HOST}:${srv.port}`, 'ping', '3', '--wait', 'pong', '--json'])
    assert.equal(code, 0, err)
    assert.equal(records.find((r) => r.type === 'connected').acks, false)
    assert.ok(records.some((r) => r.type === 'sent' && r.n === 1))
    assert.ok(!records.some((r) => r.type === 'ack'))
    assert.deepEqual(records.find((r) => r.type === 'reply').args, [3])
  })

  it('a refused connection fails (exit 1); human output names the server', TEST_OPTS, async (t) => {
    const port = await freePort()
    const json = await run(t, ['send', `${HOST}:${port}`, 'ping', '--json'])
    assert.equal(json.code, 1)
    assert.equal(json.records.find((r) => r.type === 'error').code, 'ECONNREFUSED')
    const human = await run(t, ['send', `${HOST}:${port}`, 'ping'])
    assert.equal(human.code, 1)
    assert.match(human.out, new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} error +127\\.0\\.0\\.1:${port} .*ECONNREFUSED`, 'm'))
    assert.match(human.err, /^uhura: .*ECONNREFUSED/)
  })

  it('human output of a success: connected, ack, reply, done', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await pingServer(r, 'ours')
    const { code, out } = await run(t, ['send', String(srv.port), 'ping', '7', '--wait', 'pong'])
    assert.equal(code, 0)
    assert.match(out, / connected +127\.0\.0\.1:\d+ +session \w{24} in [\d.]+ ms\n/)
    assert.match(out, / ack +127\.0\.0\.1:\d+ +ping #1 acked in [\d.]+ ms\n/)
    assert.match(out, / reply +127\.0\.0\.1:\d+ +pong 7 after [\d.]+ ms\n/)
    assert.match(out, / done +127\.0\.0\.1:\d+ +1 sent, 1 acked, 1 pong in [\d.]+ ms\n/)
  })
})

/** A server of `impl` that sets `greeting` and sends `tick` / `tock` alternately every 20 ms. */
function tickServer (r, impl) {
  return r.startServer(impl, {
    onConnection: (conn) => {
      conn.set('greeting', 'hi')
      let n = 0
      const timer = setInterval(() => conn.send(n % 2 ? 'tick' : 'tock', n++, { s: 'é' }), 20)
      conn.on('disconnect', () => clearInterval(timer))
    },
  })
}

describe('uhura sub', () => {
  for (const impl of IMPLS) {
    it(`prints what a ${impl} server sends, filtered by --event, until --count`, TEST_OPTS, async (t) => {
      const r = useResources(t)
      const srv = await tickServer(r, impl)
      const { code, records, err } = await run(t, ['sub', `${HOST}:${srv.port}`, '--event', 'tick', '--event', '_set', '--count', '4', '--json'])
      assert.equal(code, 0, err)
      const shown = records.filter((r) => r.type === 'event' || r.type === 'set')
      assert.equal(shown.length, 4)
      assert.ok(shown.some((r) => r.type === 'set' && r.key === 'greeting' && r.value === 'hi'), JSON.stringify(shown))
      const ticks = shown.filter((r) => r.type === 'event')
      for (const tick of ticks) {
        assert.equal(tick.event, 'tick')
        assert.equal(tick.args[0] % 2, 1)
        assert.deepEqual(tick.args[1], { s: 'é' })
      }
    })

    it(`--raw prints a ${impl} server's wire messages`, TEST_OPTS, async (t) => {
      const r = useResources(t)
      const srv = await tickServer(r, impl)
      const { code, records, err } = await run(t, ['sub', `${HOST}:${srv.port}`, '--raw', '--count', '5', '--json'])
      assert.equal(code, 0, err)
      const messages = records.filter((r) => r.type === 'message')
      assert.equal(messages.length, 5)
      assert.match(messages[0].text, /^\["_set","sessionID","\w{24}"\]$/)
      // (0.1.2 writes the connection callback's _set before its connect.)
      const connect = messages.find((m) => m.kind === 'handshake')
      assert.match(connect.text, /^\{"args":\["connect",\{"objectMode":true,"enableAcks":true/)
      const event = messages.find((m) => m.kind === 'event')
      assert.match(event.text, /^\{"args":\["(tick|tock)",\d+,\{"s":"é"\}\],"id":"[^"]+"\}$/)
    })
  }

  it('exits 1 when the server closes the connection', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours')
    const child = uhura(t, ['sub', String(srv.port), '--json'])
    await child.waitRecord((r) => r.type === 'connected')
    const { conn } = await srv.waitConnection(0)
    conn.socket.destroy()
    const { code } = await waitWithin(child.exited, 10000, 'sub to exit')
    assert.equal(code, 1)
    assert.match(child.err(), /closed the connection/)
  })
})

describe('uhura tap', () => {
  it('relays between two 0.1.2 peers and prints both directions', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await pingServer(r, 'v0.1.2')
    const { child, port } = await listening(t, ['tap', '0', `${HOST}:${srv.port}`])
    const client = await r.connectClient('v0.1.2', port)
    const pong = waitFor(client, 'pong', 5000)
    client.send('ping', 'é😀', [1])
    assert.deepEqual(await pong, ['é😀', [1]])
    const open = await child.waitRecord((r) => r.type === 'open')
    assert.equal(open.target, `${HOST}:${srv.port}`)
    const ping = await child.waitRecord((r) => r.type === 'message' && r.name === 'ping')
    assert.equal(ping.dir, 'c->s')
    assert.equal(ping.kind, 'event')
    assert.deepEqual(JSON.parse(ping.text).args, ['ping', 'é😀', [1]])
    await child.waitRecord((r) => r.type === 'message' && r.dir === 's->c' && r.kind === 'ack' && r.id === ping.id)
    await child.waitRecord((r) => r.type === 'message' && r.dir === 's->c' && r.name === 'pong')
    await child.waitRecord((r) => r.type === 'message' && r.dir === 'c->s' && r.kind === 'handshake' && r.name === 'start')
    await child.waitRecord((r) => r.type === 'message' && r.dir === 's->c' && r.kind === 'handshake' && r.name === 'connect')
    assert.ok(!child.records().some((r) => r.type === 'malformed'))
  })

  it('between ours: --record writes a test vector; malformed input is shown, not fatal', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await pingServer(r, 'ours')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uhura-cli-'))
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
    const file = path.join(dir, 'field.json')
    const { child, port } = await listening(t, ['tap', '0', `${HOST}:${srv.port}`, '--record', file])

    const client = await r.connectClient('ours', port)
    const pong = waitFor(client, 'pong', 5000)
    client.send('ping', 'héllo ☃ "q" \\ \n')
    await pong
    client.disconnect()
    await child.waitRecord((r) => r.type === 'recorded' && r.conn === 1)

    // The form of the recorded vectors (tests/vectors): the exact text each side wrote.
    const vector = JSON.parse(fs.readFileSync(file, 'utf8'))
    const known = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'vectors', 'v0.1.2-new-session.json'), 'utf8'))
    assert.deepEqual(Object.keys(vector), Object.keys(known))
    assert.match(vector.description, /uhura tap/)
    for (const text of [vector.client_to_server, vector.server_to_client]) {
      assert.ok(text.startsWith('[\n'), text)
      for (const m of text.slice(2).split('\n,\n')) assert.ok(m.startsWith('[') || m.startsWith('{'), m)
    }
    const sent = vector.client_to_server.slice(2).split('\n,\n').map((m) => JSON.parse(m))
    assert.deepEqual(sent[0], ['_set', {}])
    assert.equal(sent[1][0], 'start')
    assert.ok(sent.some((m) => m.args && m.args[0] === 'ping' && m.args[1] === 'héllo ☃ "q" \\ \n'))
    assert.match(vector.server_to_client, /^\[\n\["_set","sessionID","\w{24}"\]\n,\n\{"args":\["connect"/)

    // Bytes that do not frame, through the tap to our server.
    const raw = r.rawConnect(port)
    await raw.connected()
    await raw.write('[\n.\n')
    const bad = await child.waitRecord((r) => r.type === 'malformed')
    assert.equal(bad.text, '.')
    assert.equal(bad.dir, 'c->s')
    assert.equal(bad.conn, 2)
    await raw.waitClosed()
    await child.waitRecord((r) => r.type === 'recorded' && r.conn === 2)
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'field-2.json'), 'utf8')).client_to_server, '[\n.\n')

    // The tap carries on.
    const again = await r.connectClient('ours', port)
    const pong2 = waitFor(again, 'pong', 5000)
    again.send('ping', 2)
    assert.deepEqual(await pong2, [2])
    assert.ok(child.alive())
  })

  it('human output: direction and kind per message', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await pingServer(r, 'ours')
    const child = uhura(t, ['tap', '0', `${HOST}:${srv.port}`])
    await child.waitOut(/listening/)
    const port = Number(/on 127\.0\.0\.1:(\d+)/.exec(child.out())[1])
    const client = await r.connectClient('ours', port)
    client.send('ping', 1)
    await child.waitOut(/pong/)
    assert.match(child.out(), /^\d\d:\d\d:\d\d\.\d{3} message +#1 c->s +event +\{"args":\["ping",1\],"id":"[^"]+"\}$/m)
    assert.match(child.out(), /^\d\d:\d\d:\d\d\.\d{3} message +#1 s->c +handshake +\{"args":\["connect",/m)
  })
})

describe('uhura bench', () => {
  for (const impl of IMPLS) {
    it(`measures throughput and round trips against a ${impl} server`, TEST_OPTS, async (t) => {
      const r = useResources(t)
      const srv = await r.startServer(impl)
      const { code, records, err } = await run(t, ['bench', `${HOST}:${srv.port}`, '--events', '300', '--size', '64',
        '--connections', '2', '--rtt', '20', '--json'], 25000)
      assert.equal(code, 0, err)
      const rows = records.filter((r) => r.type === 'throughput')
      assert.deepEqual(rows.map((r) => r.conn), [1, 2, 'total'])
      assert.deepEqual(rows.map((r) => r.events), [150, 150, 300])
      for (const row of rows) assert.ok(row.eventsPerSec > 0 && row.seconds > 0, JSON.stringify(row))
      const rtt = records.find((r) => r.type === 'rtt')
      assert.equal(rtt.count, 20)
      assert.ok(rtt.min > 0 && rtt.min <= rtt.p50 && rtt.p50 <= rtt.max, JSON.stringify(rtt))
      assert.equal(err, '', 'no progress bar when stderr is not a terminal')
    })
  }

  it('human output: a summary table', TEST_OPTS, async (t) => {
    const r = useResources(t)
    const srv = await r.startServer('ours')
    const { code, out } = await run(t, ['bench', String(srv.port), '--events', '100', '--rtt', '5'])
    assert.equal(code, 0)
    assert.match(out, /^Throughput: 100 events of 128 B over 1 connection\(s\)$/m)
    assert.match(out, /^conn +events +seconds +events\/s +MB\/s$/m)
    assert.match(out, /^ +1 +100 +[\d.]+ +[\d,]+ +[\d.]+$/m)
    assert.match(out, /^ +min +avg +p50 +p90 +p99 +max +round trips\/s$/m)
  })

  it('fails (exit 1) when nothing listens', TEST_OPTS, async (t) => {
    const { code, err } = await run(t, ['bench', String(await freePort()), '--events', '10'])
    assert.equal(code, 1)
    assert.match(err, /ECONNREFUSED/)
  })
})
