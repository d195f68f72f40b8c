'use strict'
// The package as users get it: `npm pack`, installed into an empty folder,
// builds the addon and loads; a missing addon gives an error that says what to do.

const { test } = require('node:test')
const assert = require('node:assert')
const { execFileSync, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')

function tmpdir (t, name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `uhura-${name}-`))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

test('require() without the built addon names the file and the command that builds it', (t) => {
  const dir = tmpdir(t, 'nobin')
  fs.copyFileSync(path.join(ROOT, 'index.js'), path.join(dir, 'index.js'))
  fs.cpSync(path.join(ROOT, 'lib'), path.join(dir, 'lib'), { recursive: true })
  const r = spawnSync(process.execPath, ['-e', "try { require('./') } catch (e) { console.log(JSON.stringify({ message: e.message, code: e.code })) }"], { cwd: dir, encoding: 'utf8', timeout: 20000 })
  const out = JSON.parse(r.stdout)
  assert.equal(out.code, 'UHURA_ADDON_NOT_FOUND')
  assert.ok(out.message.includes(path.join(dir, 'uhura.node')), out.message)
  assert.match(out.message, /npm rebuild uhura/)
})

test('the npm pack tarball installs into an empty folder, builds with CARGO_TARGET_DIR set, and works', { timeout: 600000 }, async (t) => {
  const packDir = tmpdir(t, 'pack')
  const appDir = tmpdir(t, 'app')
  const name = execFileSync('npm', ['pack', '--silent', '--pack-destination', packDir], { cwd: ROOT, encoding: 'utf8', timeout: 120000 }).trim().split('\n').pop()
  const tarball = path.join(packDir, name)
  assert.ok(fs.existsSync(tarball), tarball)

  const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
  for (const f of ['package/index.js', 'package/index.d.ts', 'package/Cargo.toml', 'package/Cargo.lock', 'package/build.rs', 'package/src/lib.rs', 'package/scripts/build.js', 'package/lib/session.js']) {
    assert.ok(listing.includes(f), `${f} is in the tarball`)
  }
  assert.ok(!listing.includes('uhura.node'), 'no prebuilt binary is shipped')
  assert.ok(!listing.includes('package/target/'), 'no build output is shipped')

  fs.writeFileSync(path.join(appDir, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
  // A shared target dir keeps this from compiling every dependency again.
  const env = { ...process.env, CARGO_TARGET_DIR: path.join(ROOT, 'target') }
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', tarball], { cwd: appDir, env, stdio: 'pipe', timeout: 540000 })
  assert.ok(fs.existsSync(path.join(appDir, 'node_modules/uhura/uhura.node')), 'the install script put the addon beside index.js')

  const script = `
    const U = require('uhura')
    const server = U.createServer((conn) => conn.on('ping', (x) => conn.send('pong', x)))
    server.listen(0, '127.0.0.1', () => {
      const c = U.createClient(server.address().port, '127.0.0.1')
      c.on('pong', (x) => { console.log(JSON.stringify(x)); c.disconnect(); server.close() })
      c.send('ping', { ok: 'ü' })
    })`
  const r = spawnSync(process.execPath, ['-e', script], { cwd: appDir, encoding: 'utf8', timeout: 20000 })
  assert.equal(r.status, 0, r.stderr)
  assert.deepStrictEqual(JSON.parse(r.stdout), { ok: 'ü' })
})
