'use strict'
// Each default is written once, in Rust; JavaScript reads what it shows or
// checks from the addon (lib/defaults.js, src/node/defaults.rs) and leaves
// the others to Rust. This fails when lib/ writes a default again, or shows
// or checks a value other than Rust's.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { ROOT, useResources, installExitWatchdog } = require('./helpers')

installExitWatchdog()

const U = require('..')
const native = require('../lib/addon')
const defaults = require('../lib/defaults')

/** The ways a default's value could be written in JavaScript source. */
function spellings (v) {
  if (typeof v === 'string') return [`'${v}'`, `"${v}"`, `\`${v}\``]
  const out = [String(v)]
  for (const [unit, names] of [[1024 * 1024, [' * 1024 * 1024']], [1024, [' * 1024']], [1000, [' * 1000']], [3600, [' * 3600', ' * 60 * 60']]]) {
    if (v % unit === 0 && v > unit) for (const n of names) out.push(`${v / unit}${n}`)
  }
  return out
}

describe('defaults', () => {
  it('the addon exports every default JavaScript uses, and lib/defaults.js is exactly that', () => {
    const fromRust = native.defaults()
    assert.deepStrictEqual({ ...defaults }, fromRust)
    for (const [k, v] of Object.entries(fromRust)) {
      assert.ok(typeof v === 'string' ? v !== '' : Number.isFinite(v) && v > 0, `${k} is set: ${JSON.stringify(v)}`)
    }
  })

  it('no default is written again in index.js or lib/', () => {
    const files = ['index.js', ...fs.readdirSync(path.join(ROOT, 'lib'), { recursive: true })
      .filter((f) => f.endsWith('.js')).map((f) => path.join('lib', f))]
    const found = []
    for (const file of files) {
      // Comments may name a value; code may not.
      const code = fs.readFileSync(path.join(ROOT, file), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '')
      for (const [name, value] of Object.entries(defaults)) {
        for (const s of spellings(value)) {
          // Whole: not a part of a longer number, name or product.
          const re = new RegExp(`(?<![\\w.]|\\*\\s*)${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w.]|\\s*\\*)`)
          if (re.test(code)) found.push(`${file}: ${s} (the default ${name})`)
        }
      }
    }
    assert.deepStrictEqual(found, [], 'read these from lib/defaults.js instead')
  })

  it("what JavaScript shows and checks is Rust's default", async (t) => {
    const store = U.redisStore()
    assert.deepStrictEqual(
      { url: store.url, prefix: store.prefix, auxPrefix: store.auxPrefix, ttl: store.ttl },
      { url: defaults.redisUrl, prefix: defaults.redisPrefix, auxPrefix: defaults.redisAuxPrefix, ttl: defaults.redisTtl })

    const r = useResources(t)
    const srv = r.createServer('ours')
    assert.equal(srv.server.keepAliveInitialDelay, defaults.keepAliveInitialDelay)

    // send() refuses one argument more than maxArgs (the event name is not
    // counted) and nesting deeper than maxDepth; set() a session larger than
    // maxSessionBytes.
    const client = r.createClient('ours', { port: 1, host: '127.0.0.1' })
    client.on('error', () => {})
    assert.doesNotThrow(() => client.send('x', ...new Array(defaults.maxArgs).fill(0)))
    assert.throws(() => client.send('x', ...new Array(defaults.maxArgs + 1).fill(0)), /maxArgs/)
    const nested = (depth) => JSON.parse('['.repeat(depth) + ']'.repeat(depth))
    assert.doesNotThrow(() => client.send('x', nested(defaults.maxDepth - 1)))
    assert.throws(() => client.send('x', nested(defaults.maxDepth)), /maxDepth/)
    assert.throws(() => client.set('big', 'x'.repeat(defaults.maxSessionBytes)), /maxSessionBytes/)
  })
})
