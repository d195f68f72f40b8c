'use strict'
// index.d.ts describes the real API: typical user code compiles under
// `tsc --strict`, and misuse is rejected (`@ts-expect-error` lines).
const { test } = require('node:test')
const assert = require('node:assert')
const { spawnSync } = require('node:child_process')
const path = require('node:path')

test('index.d.ts type-checks typical usage and rejects misuse', { timeout: 120000 }, () => {
  const tsc = require.resolve('typescript/bin/tsc')
  const file = path.join(__dirname, 'fixtures', 'types-usage.ts')
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--esModuleInterop', '--module', 'commonjs', '--target', 'es2020', '--types', 'node', file], { encoding: 'utf8', timeout: 110000 })
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`)
})
