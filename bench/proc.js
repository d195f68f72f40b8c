'use strict'
// The benchmark's child processes (bench/child.js) as seen from bench/run.js:
// starting one, talking to it over its stdin / stdout, and reading its memory
// from /proc while it runs.

const { spawn } = require('child_process')
const fs = require('fs')
const path = require('path')
const readline = require('readline')

const CHILD = path.join(__dirname, 'child.js')
const NOFILE = 65536

// Each child goes through bash so that its open-files limit can be raised (to
// the hard limit when 65536 is not allowed); bash execs node, so the pid of
// the spawned process is node's.
function spawnChild (role, impl, scenario, cfg) {
  const script = `ulimit -n ${NOFILE} 2>/dev/null || ulimit -n $(ulimit -Hn); exec "$0" "$@"`
  const flags = (process.env.UHURA_BENCH_NODE_FLAGS || '').split(' ').filter(Boolean)
  const args = ['-c', script, process.execPath, ...flags, '--expose-gc', '--max-old-space-size=4096', CHILD, role, impl.name, scenario, JSON.stringify(cfg)]
  const proc = spawn('bash', args, { stdio: ['pipe', 'pipe', 'pipe'] })
  const ch = {
    proc,
    role,
    msgs: [],
    waiters: [],
    last: {},
    stderr: '',
    stdoutOther: '',
    exited: null
  }
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    if (!line.startsWith('@@')) { ch.stdoutOther = (ch.stdoutOther + line + '\n').slice(-4000); return }
    let msg
    try { msg = JSON.parse(line.slice(2)) } catch { return }
    ch.last[msg.type] = msg
    // Progress reports are only read through `last`; keeping them all would
    // grow without bound over a long run.
    if (msg.type !== 'progress') ch.msgs.push(msg)
    for (const w of ch.waiters.slice()) w.check()
  })
  proc.stderr.on('data', (d) => { ch.stderr = (ch.stderr + d).slice(-4000) })
  proc.stdin.on('error', () => {})
  proc.on('exit', (code, signal) => {
    ch.exited = { code, signal }
    for (const w of ch.waiters.slice()) w.check()
  })
  // Resolves with the first message of one of `types` after index `from`,
  // or { type: 'exit' } / { type: 'timeout' }.
  ch.waitFor = (types, timeoutMs, from = 0) => new Promise((resolve) => {
    types = [].concat(types)
    let i = from
    const w = {
      check () {
        for (; i < ch.msgs.length; i++) {
          if (types.includes(ch.msgs[i].type)) return done(ch.msgs[i])
        }
        if (ch.exited) return done({ type: 'exit', ...ch.exited })
      }
    }
    const timer = setTimeout(() => done({ type: 'timeout' }), timeoutMs)
    function done (m) {
      clearTimeout(timer)
      ch.waiters.splice(ch.waiters.indexOf(w), 1)
      resolve(m)
    }
    ch.waiters.push(w)
    w.check()
  })
  ch.send = (cmd) => { if (!ch.exited) proc.stdin.write(cmd + '\n') }
  ch.ask = (cmd, type, timeoutMs = 5000) => {
    const from = ch.msgs.length
    ch.send(cmd)
    return ch.waitFor(type, timeoutMs, from)
  }
  ch.kill = async () => {
    if (ch.exited) return
    proc.kill('SIGKILL')
    await ch.waitFor([], 5000)
  }
  ch.status = () => procStatus(proc.pid)
  return ch
}

function describeExit (ch, m) {
  const tail = ch.stderr.trim().split('\n').filter((l) => !/DeprecationWarning|MaxListenersExceeded|--trace-(deprecation|warnings)/.test(l)).slice(-3).join(' | ')
  return `${ch.role} exited (${m.signal || 'code ' + m.code})` + (tail ? `: ${tail.slice(0, 300)}` : '')
}

// { rss, hwm } in bytes (VmRSS, VmHWM: the current and the peak resident set
// of the process), or null once it is gone.
function procStatus (pid) {
  let text
  try { text = fs.readFileSync(`/proc/${pid}/status`, 'utf8') } catch { return null }
  const kb = (key) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)
    return m ? Number(m[1]) * 1024 : null
  }
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

// Samples the RSS of some children every `everyMs` until stop(), which
// returns per child { peak, samples } (peak: the larger of the highest sample
// and VmHWM read at stop, so a spike between two samples counts too). VmHWM
// is reset first (clear_refs 5, Linux ≥ 4.0) so that it does not count the
// start of the process; where that is refused, the peak may include it.
function sampleRss (children, everyMs = 250) {
  for (const ch of children) {
    try { fs.writeFileSync(`/proc/${ch.proc.pid}/clear_refs`, '5') } catch {}
  }
  const acc = children.map(() => ({ peak: 0, samples: 0 }))
  const tick = () => children.forEach((ch, k) => {
    const s = ch.status()
    if (s && s.rss) {
      acc[k].peak = Math.max(acc[k].peak, s.rss)
      acc[k].samples++
    }
  })
  const timer = setInterval(tick, everyMs)
  tick()
  return {
    stop () {
      clearInterval(timer)
      tick()
      children.forEach((ch, k) => {
        const s = ch.status()
        if (s && s.hwm) acc[k].peak = Math.max(acc[k].peak, s.hwm)
      })
      return acc
    }
  }
}

module.exports = { spawnChild, describeExit, procStatus, sampleRss, NOFILE }
