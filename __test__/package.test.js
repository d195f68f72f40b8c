'use strict'
// The package as users get it. The layout is napi-rs v3's (package.json's
// `napi` field, npm/<target>/ from `napi create-npm-dirs`). Tarballs made
// the way a release makes them (`npm pack`; the platform package filled by
// `napi artifacts`, the main one given its optionalDependencies as `napi
// pre-publish` does) install into an empty folder: with the prebuilt binary
// and no Rust toolchain; without it and without a toolchain (the install
// succeeds, require() says what to do); without it and with cargo (the
// source build). The platform package holds this checkout's own build
// (uhura.node: release after `npm install`, as in CI), so no second build.

const { test, before } = require('node:test')
const assert = require('node:assert')
const { execFileSync, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { platformArchABI, prebuilt } = require('../lib/platform')

const ROOT = path.join(__dirname, '..')
const NAPI = path.join(ROOT, 'node_modules', '.bin', 'napi')
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
const TARGET = prebuilt()

function tmpdir (name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `uhura-${name}-`))
}
const dirs = []
function scratch (name) {
  const dir = tmpdir(name)
  dirs.push(dir)
  return dir
}
process.on('exit', () => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true })
})

/** `npm pack` of `dir` into `dest`; the tarball's path. */
function pack (dir, dest) {
  const name = execFileSync('npm', ['pack', '--silent', '--pack-destination', dest], { cwd: dir, encoding: 'utf8', timeout: 120000 }).trim().split('\n').pop()
  return path.join(dest, name)
}

/** The napi target (from package.json, parsed by the napi CLI) of this platform, if uhura publishes one. */
async function napiTargets () {
  const { readNapiConfig } = require('@napi-rs/cli')
  return (await readNapiConfig(path.join(ROOT, 'package.json'))).targets
}

/**
 * A PATH with node, npm and sh only (symlinks), so neither cargo nor a C
 * compiler can be found: node lives in /usr/bin beside cc on many systems.
 */
function toolchainFreeEnv () {
  const bin = scratch('bin')
  fs.symlinkSync(process.execPath, path.join(bin, 'node'))
  const npmCli = fs.realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim())
  fs.symlinkSync(npmCli, path.join(bin, 'npm'))
  fs.symlinkSync(execFileSync('sh', ['-c', 'command -v sh'], { encoding: 'utf8' }).trim(), path.join(bin, 'sh'))
  const env = { ...process.env, PATH: bin }
  delete env.CARGO_TARGET_DIR
  for (const tool of ['cargo', 'rustc', 'cc', 'gcc', 'clang']) {
    const r = spawnSync(path.join(bin, 'sh'), ['-c', `command -v ${tool}`], { env, encoding: 'utf8' })
    assert.notEqual(r.status, 0, `${tool} is not on the test's PATH (found ${r.stdout.trim()})`)
  }
  return env
}

function emptyApp () {
  const dir = scratch('app')
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
  return dir
}

/**
 * npm install of `tarballs` into `app`, scripts' output captured. From npm's
 * cache where it can (--prefer-offline), else from the registry: a fresh
 * machine's cache holds the tarballs the checkout's own install fetched by
 * its lockfile, but not the registry's package documents an install without
 * a lockfile reads (--offline failed there with ENOTCACHED).
 */
function npmInstall (app, tarballs, env) {
  return spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', ...tarballs], { cwd: app, env, encoding: 'utf8', timeout: 540000 })
}

/** A server and a client in `app` exchange an event whose ack comes back. */
function ackedExchange (app, env) {
  const script = `
    const U = require('uhura')
    const server = U.createServer((conn) => conn.on('ping', (x) => conn.send('pong', x)))
    server.listen(0, '127.0.0.1', () => {
      const c = U.createClient(server.address().port, '127.0.0.1')
      let pong
      c.on('pong', (x) => { pong = x })
      c.send('ping', { ok: 'ü' }, () => {
        // The ack of ping comes after the listener ran, so pong is already here.
        setImmediate(() => { console.log(JSON.stringify({ pong, acked: true })); c.disconnect(); server.close() })
      })
    })`
  const r = spawnSync(process.execPath, ['-e', script], { cwd: app, env, encoding: 'utf8', timeout: 20000 })
  assert.equal(r.status, 0, r.stderr)
  assert.deepStrictEqual(JSON.parse(r.stdout), { pong: { ok: 'ü' }, acked: true })
}

// The tarballs, made once: [main, platform]; platform is null when uhura
// publishes no binary for this platform.
let tarballs
before(async () => {
  const out = scratch('pack')

  // The main package, as `napi pre-publish` leaves it for `npm publish`: its
  // optionalDependencies name the platform packages at its own version.
  const stage = scratch('stage')
  execFileSync('tar', ['-xzf', pack(ROOT, out), '-C', stage])
  const staged = path.join(stage, 'package')
  const manifest = JSON.parse(fs.readFileSync(path.join(staged, 'package.json'), 'utf8'))
  manifest.optionalDependencies = {}
  for (const t of await napiTargets()) manifest.optionalDependencies[`${PKG.name}-${t.platformArchABI}`] = PKG.version
  fs.writeFileSync(path.join(staged, 'package.json'), JSON.stringify(manifest, null, 2))
  const main = pack(staged, scratch('main'))

  const target = (await napiTargets()).find((t) => t.platformArchABI === TARGET.abi)
  if (!target) {
    tarballs = [main, null]
    return
  }
  // The platform package as a release fills it: `napi artifacts` copies
  // uhura.<platform>.node from the artifacts folder into npm/<platform>/. A
  // config naming only this target (the others are built on other machines).
  const local = path.join(ROOT, 'uhura.node')
  assert.ok(fs.existsSync(local), `${local} exists (npm install or npm run build makes it)`)
  const release = scratch('release')
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(release, 'package.json'))
  fs.cpSync(path.join(ROOT, 'npm', TARGET.abi), path.join(release, 'npm', TARGET.abi), { recursive: true })
  fs.writeFileSync(path.join(release, 'napi.json'), JSON.stringify({ binaryName: PKG.napi.binaryName, targets: [target.triple] }))
  const artifacts = path.join(release, 'artifacts')
  fs.mkdirSync(artifacts)
  fs.copyFileSync(local, path.join(artifacts, TARGET.file))
  execFileSync(NAPI, ['artifacts', '--config-path', 'napi.json', '--output-dir', 'artifacts'], { cwd: release, stdio: 'pipe', timeout: 60000 })
  tarballs = [main, pack(path.join(release, 'npm', TARGET.abi), out)]
})

test('require() without any addon names the platform, each place it looked, and the command that builds from source', () => {
  const dir = scratch('nobin')
  fs.copyFileSync(path.join(ROOT, 'index.js'), path.join(dir, 'index.js'))
  fs.cpSync(path.join(ROOT, 'lib'), path.join(dir, 'lib'), { recursive: true })
  const env = { ...process.env }
  delete env.UHURA_NATIVE_PATH
  const r = spawnSync(process.execPath, ['-e', "try { require('./') } catch (e) { console.log(JSON.stringify({ message: e.message, code: e.code })) }"], { cwd: dir, env, encoding: 'utf8', timeout: 20000 })
  const out = JSON.parse(r.stdout)
  assert.equal(out.code, 'UHURA_ADDON_NOT_FOUND')
  assert.ok(out.message.includes(`(${platformArchABI()})`), out.message)
  assert.ok(out.message.includes(path.join(dir, 'uhura.node')), out.message)
  assert.ok(out.message.includes(path.join(dir, TARGET.file)), out.message)
  assert.ok(out.message.includes(`the package ${TARGET.packageName} (the prebuilt binary): not installed`), out.message)
  assert.match(out.message, /npm rebuild uhura/)
})

test('UHURA_NATIVE_PATH, when set, is the only build tried', () => {
  assert.ok(fs.existsSync(path.join(ROOT, 'uhura.node')))
  const missing = path.join(os.tmpdir(), 'uhura-no-such-build.node')
  const r = spawnSync(process.execPath, ['-e', `try { require(${JSON.stringify(ROOT)}) } catch (e) { console.log(e.message) }`], { env: { ...process.env, UHURA_NATIVE_PATH: missing }, encoding: 'utf8', timeout: 20000 })
  assert.match(r.stdout, new RegExp(`UHURA_NATIVE_PATH=${missing.replace(/[.\\/]/g, '\\$&')}: not found`))
  assert.ok(!r.stdout.includes('(a local build)'), r.stdout)
})

test("napi-rs v3's layout: npm/<target>/ are what `napi create-npm-dirs` makes, at package.json's version", async () => {
  const targets = await napiTargets()
  assert.deepStrictEqual(targets.map((t) => t.triple).sort(), [
    'aarch64-apple-darwin', 'aarch64-unknown-linux-gnu', 'aarch64-unknown-linux-musl',
    'x86_64-apple-darwin', 'x86_64-pc-windows-msvc', 'x86_64-unknown-linux-gnu', 'x86_64-unknown-linux-musl'
  ])
  // The loader's names are napi's.
  for (const t of targets) assert.equal(platformArchABI(t.platform, t.arch, t.abi), t.platformArchABI)

  const fresh = scratch('npmdirs')
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(fresh, 'package.json'))
  execFileSync(NAPI, ['create-npm-dirs'], { cwd: fresh, stdio: 'pipe', timeout: 60000 })
  const list = (dir) => fs.readdirSync(dir, { recursive: true }).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort()
  assert.deepStrictEqual(list(path.join(ROOT, 'npm')), list(path.join(fresh, 'npm')))
  for (const f of list(path.join(fresh, 'npm'))) {
    assert.equal(fs.readFileSync(path.join(ROOT, 'npm', f), 'utf8'), fs.readFileSync(path.join(fresh, 'npm', f), 'utf8'), `npm/${f} is up to date (run npx napi create-npm-dirs)`)
  }
  for (const t of targets) {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'npm', t.platformArchABI, 'package.json'), 'utf8'))
    assert.equal(pkg.version, PKG.version, `${pkg.name} is in lockstep`)
    assert.equal(pkg.main, `uhura.${t.platformArchABI}.node`)
  }
  assert.equal(PKG.scripts.version, 'napi version')
})

test('npm pack ships the sources for the fallback build, no binary, tests, build output or bench results', () => {
  const [entry] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json'], { cwd: ROOT, encoding: 'utf8', timeout: 120000 }))
  const files = entry.files.map((f) => f.path)
  for (const f of ['index.js', 'index.d.ts', 'bin/uhura.js', 'lib/cli/listen.js', 'lib/addon.js', 'lib/platform.js', 'scripts/build.js', 'Cargo.toml', 'Cargo.lock', 'build.rs', 'src/lib.rs', 'README.md', 'CHANGELOG.md', 'package.json']) {
    assert.ok(files.includes(f), `${f} is in the package`)
  }
  for (const f of files) {
    assert.ok(!/^(__test__|tests|fuzz|bench|target|npm|artifacts|examples|docs|node_modules)\//.test(f), `${f} is not shipped`)
    assert.ok(!f.endsWith('.node') && !f.endsWith('.tgz'), `${f} is not shipped`)
  }
})

test('with the platform package, an empty folder installs and runs with no Rust toolchain and no C compiler', { timeout: 300000 }, (t) => {
  const [main, platform] = tarballs
  if (!platform) return t.skip(`uhura publishes no prebuilt binary for ${TARGET.abi}`)
  const env = toolchainFreeEnv()
  const app = emptyApp()
  const r = npmInstall(app, [main, platform], env)
  assert.equal(r.status, 0, r.stdout + r.stderr)
  assert.match(r.stderr, /uhura: using the prebuilt binary/)
  assert.ok(fs.existsSync(path.join(app, 'node_modules', TARGET.packageName, TARGET.file)))
  assert.ok(!fs.existsSync(path.join(app, 'node_modules', 'uhura', 'uhura.node')), 'nothing was built')
  ackedExchange(app, env)
})

test('without the platform package and without cargo, the install succeeds and require() says what to do', { timeout: 300000 }, () => {
  const env = toolchainFreeEnv()
  const app = emptyApp()
  const r = npmInstall(app, [tarballs[0]], env)
  assert.equal(r.status, 0, r.stdout + r.stderr)
  assert.match(r.stderr, /installed without the native addon/)
  const out = spawnSync(process.execPath, ['-e', "try { require('uhura') } catch (e) { console.log(JSON.stringify({ message: e.message, code: e.code })) }"], { cwd: app, env, encoding: 'utf8', timeout: 20000 })
  const err = JSON.parse(out.stdout)
  assert.equal(err.code, 'UHURA_ADDON_NOT_FOUND')
  assert.ok(err.message.includes(TARGET.abi) && err.message.includes(TARGET.packageName), err.message)
  assert.match(err.message, /npm rebuild uhura/)
})

test('without the platform package, with cargo, the install builds from source (CARGO_TARGET_DIR honoured)', { timeout: 600000 }, () => {
  const app = emptyApp()
  // A shared target dir keeps this from compiling every dependency again.
  const env = { ...process.env, CARGO_TARGET_DIR: process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target') }
  const r = npmInstall(app, [tarballs[0]], env)
  assert.equal(r.status, 0, r.stdout + r.stderr)
  assert.match(r.stderr, /uhura: built uhura\.node from /)
  assert.ok(!fs.existsSync(path.join(app, 'node_modules', TARGET.packageName)), 'no prebuilt binary was installed')
  assert.ok(fs.existsSync(path.join(app, 'node_modules', 'uhura', 'uhura.node')), 'the install script put the addon beside index.js')
  ackedExchange(app, env)
})
