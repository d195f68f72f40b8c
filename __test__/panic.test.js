'use strict'
// A panic in a connection's Rust code (a bug of ours) ends that connection
// with an error and a normal disconnect; the process, the other connections
// and server.close() are untouched. Uses a build with the cargo feature
// `test-panic` (src/engine/fault.rs), loaded through UHURA_NATIVE_PATH in
// child processes, on both read paths: Node's loop (libuv) and tokio.

const { test, before } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync, spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { ROOT, withTimeout } = require('./helpers')

let addon

before(() => {
  // A release build, as \`npm install\` makes: only this crate is compiled
  // again, with the feature. Node loads addons by the .node ending.
  const r = spawnSync('cargo', ['build', '--lib', '--release', '--features', 'test-panic', '--message-format=json-render-diagnostics'], {
    cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 28, timeout: 600000,
  })
  assert.equal(r.status, 0, `the test-panic build failed:\n${r.stderr}`)
  let built
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const msg = JSON.parse(line)
    if (msg.reason === 'compiler-artifact' && msg.target.name === 'uhura' && msg.target.kind.includes('cdylib')) {
      built = msg.filenames.find((f) => f.endsWith('.so'))
    }
  }
  assert.ok(built, 'the test-panic build produced an addon')
  addon = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'uhura-panic-')), 'uhura.node')
  fs.copyFileSync(built, addon)
})

// The child: a server, a good client and a client whose event makes the
// server panic. It prints what it saw as JSON and exits by itself.
const CHILD = `
const U = require(${JSON.stringify(ROOT)})
const out = { serverErrors: [], badDisconnected: false, goodPongs: 0, closed: false }
const server = U.createServer((conn) => {
  conn.on('error', (e) => out.serverErrors.push({ code: e.code, message: e.message }))
  conn.on('disconnect', () => { if (conn.get('who') === 'bad') out.badDisconnected = true })
  conn.on('ping', (n) => conn.send('pong', n))
})
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port
  const good = U.createClient(port, '127.0.0.1')
  const bad = U.createClient(port, '127.0.0.1')
  bad.set('who', 'bad')
  bad.on('connect', () => bad.send('boom', 'uhura:test-panic'))
  let n = 0
  good.on('pong', () => {
    out.goodPongs++
    if (out.badDisconnected && out.goodPongs >= 3) {
      good.disconnect()
      bad.disconnect()
      server.close(() => { out.closed = true; console.log(JSON.stringify(out)); process.exit(0) })
    } else setTimeout(() => good.send('ping', ++n), 20)
  })
  good.send('ping', n)
})
setTimeout(() => { console.log(JSON.stringify(out)); process.exit(3) }, 8000).unref()
`

for (const [label, reads] of [['Node loop reads', '1'], ['tokio reads', '0']]) {
  test(`a panic ends only its connection (${label})`, { timeout: 30000 }, async () => {
    const child = spawn(process.execPath, ['-e', CHILD], {
      env: { ...process.env, UHURA_NATIVE_PATH: addon, UHURA_NODE_READS: reads },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    const code = await withTimeout(new Promise((resolve) => child.once('exit', resolve)), 20000, 'the child to exit')
    assert.equal(code, 0, `the child must finish normally (exit ${code})\nstdout: ${stdout}\nstderr: ${stderr}`)
    const out = JSON.parse(stdout.trim().split('\n').pop())
    assert.ok(out.serverErrors.some((e) => e.code === 'ERR_UHURA_INTERNAL'), `an ERR_UHURA_INTERNAL error on the connection: ${JSON.stringify(out)}`)
    assert.equal(out.badDisconnected, true, 'the connection that panicked got its disconnect')
    assert.ok(out.goodPongs >= 3, 'the other connection kept working')
    assert.equal(out.closed, true, 'server.close() called back')
  })
}
