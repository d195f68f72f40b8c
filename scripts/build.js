'use strict'
// Compiles the Rust addon with cargo and copies it next to index.js as
// uhura.node. `npm run build` (`--debug`: `npm run build:debug`) in a
// checkout; cargo reports the artifact's real path, so CARGO_TARGET_DIR is
// honoured.
//
// With `--install` it is the package's install script. In a checkout that
// builds as above. Installed as a dependency (under node_modules), it builds
// only when no prebuilt binary for this platform is installed (the optional
// dependency uhura-<platform>, lib/platform.js) and cargo is present, and it
// never fails the user's `npm install`: without a binary, `require('uhura')`
// throws an error that says what to do (lib/addon.js).
const { spawnSync } = require('child_process')
const fs = require('fs')
const path = require('path')
const { prebuilt } = require('../lib/platform')

const root = path.join(__dirname, '..')
const debug = process.argv.includes('--debug')
const asDependency = process.argv.includes('--install') && root.split(path.sep).includes('node_modules')

/** Stops here: a failure, unless this is a dependency's install, which goes on without the addon. */
function fail (message, status = 1) {
  if (!asDependency) {
    console.error(`uhura: ${message}`)
    process.exit(status)
  }
  console.warn(`uhura: ${message}\nuhura: installed without the native addon; require('uhura') will say how to build it (\`npm rebuild uhura\`).`)
  process.exit(0)
}

/** The installed platform package's binary, when it loads (in a child process: a crash must not end the install). */
function usablePrebuilt () {
  const target = prebuilt()
  let file
  try {
    file = require.resolve(target.packageName, { paths: [root] })
  } catch {
    return null
  }
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' })
  if (r.status === 0) return file
  console.warn(`uhura: the prebuilt binary ${file} does not load here, building from source instead:\n${r.stderr}`)
  return null
}

if (asDependency) {
  const file = usablePrebuilt()
  if (file) {
    console.error(`uhura: using the prebuilt binary ${file}`)
    process.exit(0)
  }
}

const args = ['build', '--lib', '--message-format=json-render-diagnostics']
if (!debug) args.push('--release')
const res = spawnSync('cargo', args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 28 })
if (res.error) {
  const why = `cargo could not be run (${res.error.message}). Install Rust from https://rustup.rs and run \`npm rebuild uhura\`.`
  fail(asDependency ? `no prebuilt binary for ${prebuilt().abi} is installed, and ${why}` : why)
}
if (res.status !== 0) fail('cargo build failed', res.status || 1)
let artifact = null
for (const line of res.stdout.split('\n')) {
  if (!line.startsWith('{')) continue
  const msg = JSON.parse(line)
  if (msg.reason === 'compiler-artifact' && msg.target && msg.target.name === 'uhura' && msg.target.kind.includes('cdylib')) {
    artifact = msg.filenames.find((f) => /\.(so|dylib|dll)$/.test(f))
  }
}
if (!artifact) fail('cargo did not report a cdylib artifact')
const dest = path.join(root, 'uhura.node')
// Copy to a temp name and rename, so a running process that has the old file mapped is not corrupted.
const tmp = dest + '.tmp' + process.pid
fs.copyFileSync(artifact, tmp)
fs.renameSync(tmp, dest)
console.error(`uhura: built ${path.relative(root, dest)} from ${artifact}`)
