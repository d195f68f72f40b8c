'use strict'
// A private redis-server per test on a free loopback port, and a RESP client
// for looking at what the stores wrote. The binary: $UHURA_REDIS_SERVER,
// /usr/bin/redis-server or the one on PATH. Without one, the tests that need
// it FAIL unless UHURA_SKIP_REDIS=1 (then they are skipped).

const fs = require('node:fs')
const net = require('node:net')
const { spawn, spawnSync } = require('node:child_process')
const { HOST, freePort } = require('./net')
const { waitUntil, withTimeout } = require('./wait')

const SKIP_REDIS = process.env.UHURA_SKIP_REDIS === '1'

function findRedis () {
  // UHURA_REDIS_SERVER: an explicit redis-server binary (only that one is tried).
  if (process.env.UHURA_REDIS_SERVER) return fs.existsSync(process.env.UHURA_REDIS_SERVER) ? process.env.UHURA_REDIS_SERVER : null
  if (fs.existsSync('/usr/bin/redis-server')) return '/usr/bin/redis-server'
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' })
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : null
}

/** Returns false (test skipped) or throws when redis-server is missing; true when present. */
function needRedis (t) {
  if (findRedis()) return true
  if (SKIP_REDIS) {
    t.skip('redis-server not found; skipped because UHURA_SKIP_REDIS=1')
    return false
  }
  throw new Error('redis-server is not installed (looked at $UHURA_REDIS_SERVER, /usr/bin/redis-server and PATH). ' +
    'Install it (Debian: apt-get install redis-server) or set UHURA_SKIP_REDIS=1 to skip the Redis store tests.')
}

/** One RESP command on a fresh connection; resolves with the decoded reply. */
function redisCommand (port, ...args) {
  return withTimeout(new Promise((resolve, reject) => {
    const s = net.connect(port, HOST)
    let buf = Buffer.alloc(0)
    s.on('error', reject)
    s.on('connect', () => {
      let out = `*${args.length}\r\n`
      for (const a of args) out += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`
      s.write(out)
    })
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      const nl = buf.indexOf('\r\n')
      if (nl < 0) return
      const head = buf.slice(0, nl).toString()
      const type = head[0]
      const rest = head.slice(1)
      if (type === '+') { s.destroy(); return resolve(rest) }
      if (type === '-') { s.destroy(); return reject(new Error(rest)) }
      if (type === ':') { s.destroy(); return resolve(Number(rest)) }
      if (type === '$') {
        const n = Number(rest)
        if (n < 0) { s.destroy(); return resolve(null) }
        if (buf.length < nl + 2 + n + 2) return
        s.destroy()
        return resolve(buf.slice(nl + 2, nl + 2 + n).toString('utf8'))
      }
      s.destroy()
      reject(new Error(`unexpected redis reply ${JSON.stringify(head)}`))
    })
  }), 3000, `redis ${args[0]}`)
}

async function redisGetJSON (port, key) {
  const text = await redisCommand(port, 'GET', key)
  return text == null ? null : JSON.parse(text)
}

/**
 * A redis-server on `port` (default: a free one) with `args` (default: no
 * persistence), killed in t.after. `kill()` SIGKILLs it; `start()`
 * (re)starts it on the same port.
 */
async function startRedis (t, { port, args = ['--save', '', '--appendonly', 'no'] } = {}) {
  const bin = findRedis()
  if (port === undefined) port = await freePort()
  const redis = {
    port,
    url: `redis://${HOST}:${port}`,
    proc: null,
    exited: null,
    async start () {
      const proc = spawn(bin, ['--port', String(port), '--bind', HOST, ...args], { stdio: 'ignore' })
      redis.proc = proc
      redis.exited = new Promise((resolve) => proc.on('exit', resolve))
      await waitUntil(async () => {
        if (proc.exitCode !== null) throw new Error(`redis-server exited with code ${proc.exitCode} on port ${port}`)
        return (await redisCommand(port, 'PING').catch(() => null)) === 'PONG'
      }, 5000, `redis-server on port ${port} to answer PING`)
    },
    async kill () {
      const proc = redis.proc
      if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
      if (redis.exited) await withTimeout(redis.exited, 5000, 'redis-server to exit')
    },
  }
  t.after(() => redis.kill())
  await redis.start()
  return redis
}

module.exports = { findRedis, needRedis, redisCommand, redisGetJSON, startRedis }
