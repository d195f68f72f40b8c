'use strict'
// Compiles the Rust addon and copies it next to index.js as uhura.node.
// Runs on `npm install`, both in a clone and when installed from a tarball.
// Cargo reports the artifact's real path, so CARGO_TARGET_DIR is honoured.
const { spawnSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const root = path.join(__dirname, '..')
const debug = process.argv.includes('--debug')
const args = ['build', '--lib', '--message-format=json-render-diagnostics']
if (!debug) args.push('--release')

const res = spawnSync('cargo', args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 28 })
if (res.error) {
  console.error(`uhura: could not run cargo (${res.error.message}). Install Rust from https://rustup.rs and run \`npm rebuild uhura\`.`)
  process.exit(1)
}
if (res.status !== 0) {
  console.error('uhura: cargo build failed')
  process.exit(res.status || 1)
}
let artifact = null
for (const line of res.stdout.split('\n')) {
  if (!line.startsWith('{')) continue
  const msg = JSON.parse(line)
  if (msg.reason === 'compiler-artifact' && msg.target && msg.target.name === 'uhura' && msg.target.kind.includes('cdylib')) {
    artifact = msg.filenames.find((f) => /\.(so|dylib|dll)$/.test(f))
  }
}
if (!artifact) {
  console.error('uhura: cargo did not report a cdylib artifact')
  process.exit(1)
}
const dest = path.join(root, 'uhura.node')
// Copy to a temp name and rename, so a running process that has the old file mapped is not corrupted.
const tmp = dest + '.tmp' + process.pid
fs.copyFileSync(artifact, tmp)
fs.renameSync(tmp, dest)
console.error(`uhura: built ${path.relative(root, dest)} from ${artifact}`)
